"""The decoder node: LSL volumes in, one latents message per TR out on ZeroMQ.

Per TR: pull the volume into a preallocated buffer, preprocess, decode,
publish ``[b"latents", header, z, c]``. The header carries the TR index, a
sequence number, a CRC-32 of the volume as received (so a consumer can prove
which volume a latent came from) and the stage times (docs/protocol.md).
"""

from __future__ import annotations

import logging
import threading
import zlib
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pylsl
from threadpoolctl import threadpool_limits

from rt_recon.config import SessionConfig
from rt_recon.decode.bundle import DecoderBundle
from rt_recon.decode.online import OnlineDecoder
from rt_recon.decode.trial_tracker import TrialTracker
from rt_recon.errors import BundleError, DataError, ShapeMismatchError, StreamError
from rt_recon.nodes._signals import waiting
from rt_recon.nodes._status import StatusPublisher
from rt_recon.protocol import TOPIC_LATENTS
from rt_recon.transport.lsl import DecodedOutlet, MarkerInlet, VolumeInlet, resolve_stream
from rt_recon.transport.zmq import Publisher

log = logging.getLogger(__name__)

_MOTION_CHANNELS = ("tx_mm", "ty_mm", "tz_mm", "rx_rad", "ry_rad", "rz_rad")


@dataclass(frozen=True)
class TrStep:
    """What :meth:`TrCounter.update` made of one volume's timestamp."""

    tr: int | None  # its TR index; None: not assigned one (``rejected`` says why)
    missed: int = 0  # TRs that never arrived between the last assigned one and this one
    rejected: Literal["duplicate", "out_of_order"] | None = None
    dt: float = 0.0  # seconds (LSL clock) since the last volume that was assigned a TR


class TrCounter:
    """TR index from timestamps: the first volume is 0; a gap of k intervals advances by k.

    A volume stamped less than ``duplicate_below`` intervals from the last
    assigned one (either side) is a duplicate if it carries the same data
    (the same CRC-32), or if no CRC is given; one stamped earlier than that,
    or earlier and with other data, is out of order. Neither is assigned a
    TR nor moves the count. A volume with other data stamped just after the
    last one is the next TR: an ``asap`` replay stamps volumes with their push
    time, which can be any time after the last one (simulators/replay.py).

    With ``sequential`` (a stream paced ``asap``, which drops nothing), every
    volume that is neither a duplicate nor out of order is the next TR,
    whatever the gap: gaps there are the consumer's own stalls, not lost TRs.

    Args:
        interval: seconds between volumes on the wire (the TR divided by the replay speed).
        duplicate_below: the duplicate window, in intervals (0 < value <= 0.5).
        sequential: count one TR per accepted volume instead of reading gaps.
    """

    def __init__(self, interval: float, duplicate_below: float = 0.5, sequential: bool = False):
        if interval <= 0 or not 0 < duplicate_below <= 0.5:
            raise StreamError(
                f"TrCounter needs a sample interval > 0 s and 0 < duplicate_below <= 0.5, "
                f"found {interval} s and {duplicate_below}"
            )
        self.interval = interval
        self.duplicate_below = duplicate_below
        self.sequential = sequential
        self._last: tuple[int, float, int | None] | None = None  # (TR, timestamp, CRC)

    def update(self, timestamp: float, crc: int | None = None) -> TrStep:
        """The TR of a volume stamped ``timestamp`` (seconds, LSL clock) whose data have
        CRC-32 ``crc`` (None: judge by the timestamp alone)."""
        if self._last is None:
            self._last = (0, timestamp, crc)
            return TrStep(0)
        index, last, last_crc = self._last
        dt = timestamp - last
        steps = dt / self.interval
        if abs(steps) < self.duplicate_below and (crc is None or crc == last_crc):
            return TrStep(None, rejected="duplicate", dt=dt)
        if steps < 0:
            return TrStep(None, rejected="out_of_order", dt=dt)
        step = 1 if self.sequential else max(1, round(steps))
        self._last = (index + step, timestamp, crc)
        return TrStep(index + step, missed=step - 1, dt=dt)


def _open_markers(config: SessionConfig) -> MarkerInlet | None:
    """The marker stream for trial mode, or None for continuous mode."""
    mode = config.decoder.mode
    if mode == "continuous":
        return None
    try:
        inlet = MarkerInlet(resolve_stream("source_id", config.stream.markers_source_id, 2.0))
    except StreamError:
        if mode == "trial":
            raise StreamError(
                f"decoder.mode is trial but no marker stream with source_id="
                f"{config.stream.markers_source_id!r} was found; use mode continuous for "
                "sessions without markers"
            ) from None
        log.info("no marker stream: continuous mode (sliding window)")
        return None
    log.info("trial mode: onsets from marker stream %r", config.stream.markers_source_id)
    return inlet


@dataclass
class DecoderStats:
    volumes: int = 0  # received, whatever became of them
    published: int = 0
    skipped: int = 0  # assigned a TR but not decodable (DataError, ShapeMismatchError)
    missed: int = 0  # TRs that never arrived
    duplicates: int = 0  # the last volume again (its stamp and data): not assigned a TR
    out_of_order: int = 0  # volumes stamped before the last one: not assigned a TR


def run_decoder(config: SessionConfig, stop: threading.Event) -> DecoderStats:
    """Run until ``stop`` is set; returns what happened."""
    if config.decoder.bundle is None:
        raise BundleError("decoder.bundle is not set in the config; fit one with `rt-recon fit`")
    bundle = DecoderBundle.load(config.decoder.bundle)
    # One BLAS thread: the projections are small, and the renderer needs the other cores.
    threadpool_limits(1)
    stats = DecoderStats()
    with Publisher(config.decoder.latents_endpoint, curve=config.security) as pub:
        log.info("publishing latents and status on %s", pub.endpoint)
        status = StatusPublisher(pub, "decoder")
        pub.wait_for_subscribers(
            config.decoder.wait_for_subscribers,
            TOPIC_LATENTS,
            config.decoder.subscriber_timeout_s,
            on_wait=waiting(stop, lambda: status.beat("waiting_for_subscribers")),
        )
        inlet = VolumeInlet.resolve(
            config.stream.source_id,
            config.stream.resolve_timeout_s,
            config.stream.buffer_trs,
            on_wait=waiting(
                stop, lambda: status.beat("waiting_for_stream", source_id=config.stream.source_id)
            ),
        )
        summary = DecodedOutlet(
            f"{config.stream.name}_decoded",
            f"{config.stream.source_id}_decoded",
            inlet.meta.sample_interval,
        )
        with inlet:
            meta = inlet.meta
            bundle.check_stream(meta)
            decoder = OnlineDecoder(bundle, stream=meta)
            counter = TrCounter(meta.sample_interval, sequential=meta.pace == "asap")
            markers = _open_markers(config)
            tracker = TrialTracker(meta.sample_interval, decoder.lag, len(decoder.weights))
            mode = "trial" if markers is not None else "continuous"
            log.info(
                "decoding stream %r: %s voxels, TR %.3f s, speed %g",
                config.stream.source_id,
                meta.shape,
                meta.tr,
                meta.speed,
            )
            tr = -1
            while not stop.is_set():
                status.beat("streaming", source_id=config.stream.source_id, tr=tr, **asdict(stats))
                stamp = inlet.pull(timeout=0.1)
                if stamp is None:
                    continue
                received = pylsl.local_clock()
                stats.volumes += 1
                crc = zlib.crc32(inlet.values)
                step = counter.update(stamp, crc)
                if step.tr is None:
                    if step.rejected == "duplicate":
                        stats.duplicates += 1
                    else:
                        stats.out_of_order += 1
                    log.warning(
                        "volume stamped %+.3f s from TR %d's skipped (not assigned a TR): %s",
                        step.dt,
                        tr,
                        "a duplicate" if step.rejected == "duplicate" else "out of order",
                    )
                    continue
                tr, missed = step.tr, step.missed
                if missed:
                    stats.missed += missed
                    log.warning("%d TR(s) missing before TR %d", missed, tr)
                try:
                    features = decoder.preprocess(inlet.values)
                    preprocessed = pylsl.local_clock()
                    tracker.add_volume(tr, stamp)
                    while markers is not None and (event := markers.pull(timeout=0.0)):
                        tracker.add_marker(*event)
                    trial = tracker.current(tr)
                    onset = None if trial is None else trial.onset_tr
                    latents = decoder.decode(features, tr=tr, trial_onset=onset)
                except (DataError, ShapeMismatchError) as exc:
                    stats.skipped += 1
                    log.warning("TR %d skipped: %s", tr, exc)
                    continue
                decoded = pylsl.local_clock()
                quality = decoder.features.quality
                motion = None if quality.params is None else [float(p) for p in quality.params]
                header = {
                    "seq": stats.published,
                    "tr": tr,
                    "missed_before": missed,
                    "warming_up": decoder.warming_up,
                    "motion": motion,
                    "fd": quality.fd_mm,
                    "spike": quality.spike,
                    "volume_crc32": crc,
                    "session": meta.session,
                    "run": meta.run,
                    "model_fingerprint": bundle.model["fingerprint"],
                    "lag_trs": decoder.lag,
                    "mode": mode,
                    "trial": None
                    if trial is None
                    else {
                        "index": trial.index,
                        "stimulus_id": trial.stimulus_id,
                        "onset_tr": trial.onset_tr,
                        "complete": tr >= trial.onset_tr + decoder.lag,
                    },
                    "times": {
                        "acquired": stamp,
                        "received": received,
                        "preprocessed": preprocessed,
                        "decoded": decoded,
                        "sent": pylsl.local_clock(),
                    },
                }
                pub.send(TOPIC_LATENTS, header, latents)
                stats.published += 1
                summary.push(
                    {
                        "tr": tr,
                        "warming_up": float(decoder.warming_up),
                        **dict(zip(_MOTION_CHANNELS, motion or (), strict=False)),
                        "fd_mm": np.nan if quality.fd_mm is None else quality.fd_mm,
                        **{f"{k}_mean": float(v.mean()) for k, v in latents.items()},
                        **{f"{k}_std": float(v.std()) for k, v in latents.items()},
                    },
                    stamp,
                )
        summary.close()
        if markers is not None:
            markers.close()
        status.beat("stopped", tr=tr, **asdict(stats))
    log.info("decoder stopped: %s", stats)
    return stats
