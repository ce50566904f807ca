"""The decoder node: LSL volumes in, one latents message per TR out on ZeroMQ.

Per TR (:meth:`DecoderNode.process`): give the volume its TR index from its
timestamp (:class:`~rt_recon.decode.tr_counter.TrCounter`), preprocess,
take in the markers that arrived (trial mode: the protocol's trial rule
picks the trial the TR estimates), decode, and publish a
:class:`~rt_recon.protocol.Latents` message whose header carries the TR
index, a sequence number, a CRC-32 of the volume as received (so a consumer
can prove which volume a latent came from) and the stage times
(docs/protocol.md 3.1). A per-TR summary also goes out on an LSL stream for
LabRecorder.

The node follows the contract of :mod:`rt_recon.nodes.runner`: its inputs
are opened in :meth:`~DecoderNode.open` (or handed to :meth:`~DecoderNode.start`
directly, which is how tests run the per-TR step without a socket).
"""

from __future__ import annotations

import logging
import threading
import zlib
from typing import Any, Protocol

import numpy as np
import pylsl
from threadpoolctl import threadpool_limits

from rt_recon.config import SessionConfig
from rt_recon.decode.bundle import DecoderBundle
from rt_recon.decode.online import OnlineDecoder
from rt_recon.decode.tr_counter import TrCounter
from rt_recon.decode.trial_tracker import Trial, TrialTracker
from rt_recon.errors import BundleError, DataError, ProtocolError, ShapeMismatchError, StreamError
from rt_recon.nodes.runner import Node, NodeContext, run_node
from rt_recon.protocol import (
    TOPIC_LATENTS,
    DecoderCounters,
    Latents,
    LatentsHeader,
    Times,
    TrialRef,
)
from rt_recon.transport.lsl import (
    DecodedOutlet,
    MarkerInlet,
    MarkerSource,
    VolumeInlet,
    VolumeSource,
)

log = logging.getLogger(__name__)

_MOTION_CHANNELS = ("tx_mm", "ty_mm", "tz_mm", "rx_rad", "ry_rad", "rz_rad")


class SummarySink(Protocol):
    def push(self, values: dict[str, float], timestamp: float) -> None: ...

    def close(self) -> None: ...


def _open_markers(config: SessionConfig) -> MarkerInlet | None:
    """The marker stream for trial mode, or None for continuous mode."""
    mode = config.decoder.mode
    if mode == "continuous":
        return None
    inlet = MarkerInlet.find(config.stream.markers_source_id)
    if inlet is None:
        if mode == "trial":
            raise StreamError(
                f"decoder.mode is trial but no marker stream with source_id="
                f"{config.stream.markers_source_id!r} was found; use mode continuous for "
                "sessions without markers"
            )
        log.info("no marker stream: continuous mode (sliding window)")
        return None
    log.info("trial mode: onsets from marker stream %r", config.stream.markers_source_id)
    return inlet


class DecoderNode(Node):
    """Volumes in, latents out (see the module docstring)."""

    name = "decoder"
    working_state = "streaming"

    def __init__(self, config: SessionConfig, bundle: DecoderBundle | None = None):
        self.config = config
        self.bundle = bundle
        self.counters = DecoderCounters(source_id=config.stream.source_id)
        self.ctx: NodeContext | None = None
        self.inlet: VolumeSource | None = None
        self.markers: MarkerSource | None = None
        self.summary: SummarySink | None = None

    @property
    def endpoint(self) -> str:
        return self.config.decoder.latents_endpoint

    @property
    def subscribers(self) -> tuple[str, int, float]:
        d = self.config.decoder
        return TOPIC_LATENTS, d.wait_for_subscribers, d.subscriber_timeout_s

    def prepare(self) -> None:
        if self.bundle is None:
            if self.config.decoder.bundle is None:
                raise BundleError(
                    "decoder.bundle is not set in the config; fit one with `rt-recon fit`"
                )
            self.bundle = DecoderBundle.load(self.config.decoder.bundle)
        # One BLAS thread: the projections are small, and the renderer needs the other cores.
        threadpool_limits(1)

    def open(self, ctx: NodeContext) -> None:
        stream = self.config.stream
        ctx.state = "waiting_for_stream"
        inlet = VolumeInlet.resolve(
            stream.source_id, stream.resolve_timeout_s, stream.buffer_trs, on_wait=ctx.check_stop
        )
        try:
            summary = DecodedOutlet(
                f"{stream.name}_decoded",
                f"{stream.source_id}_decoded",
                inlet.meta.sample_interval,
            )
            self.start(ctx, inlet, _open_markers(self.config), summary)
        except BaseException:
            inlet.close()
            raise

    def start(
        self,
        ctx: NodeContext,
        inlet: VolumeSource,
        markers: MarkerSource | None = None,
        summary: SummarySink | None = None,
    ) -> None:
        """Begin decoding the stream ``inlet`` reads (its geometry checked against the bundle)."""
        if self.bundle is None:
            self.prepare()
        assert self.bundle is not None
        self.ctx, self.inlet, self.markers, self.summary = ctx, inlet, markers, summary
        meta = inlet.meta
        self.bundle.check_stream(meta)
        self.decoder = OnlineDecoder(self.bundle, stream=meta)
        self.tr_counter = TrCounter(meta.sample_interval, sequential=meta.pace == "asap")
        self.tracker = TrialTracker(self.decoder.lag, len(self.decoder.weights))
        self.mode = "trial" if markers is not None else "continuous"
        self.meta = meta
        log.info(
            "decoding stream %r: %s voxels, TR %.3f s, speed %g, %s mode",
            self.config.stream.source_id, meta.shape, meta.tr_s, meta.speed, self.mode,
        )  # fmt: skip

    def step(self) -> None:
        """Pull the next volume (waiting up to 0.1 s) and decode it."""
        assert self.inlet is not None, "start() or open() first"
        stamp = self.inlet.pull(timeout=0.1)
        if stamp is not None:
            self.process(self.inlet.values, stamp, pylsl.local_clock())

    def process(self, values: np.ndarray, stamp: float, received: float) -> Latents | None:
        """One volume (``(n_channels,)``, stamped ``stamp`` on the LSL clock) -> its latents
        message, published; None when the volume gets no TR or cannot be decoded."""
        assert self.ctx is not None and self.bundle is not None
        counters = self.counters
        counters.volumes += 1
        crc = zlib.crc32(values)
        step = self.tr_counter.update(stamp, crc)
        if step.tr is None:
            if step.rejected == "duplicate":
                counters.duplicates += 1
            else:
                counters.out_of_order += 1
            log.warning(
                "volume stamped %+.3f s from TR %d's skipped (not assigned a TR): %s",
                step.dt, counters.tr,
                "a duplicate" if step.rejected == "duplicate" else "out of order",
            )  # fmt: skip
            return None
        tr = step.tr
        if step.missed:
            counters.missed += step.missed
            log.warning("%d TR(s) missing before TR %d", step.missed, tr)
        try:
            features = self.decoder.preprocess(values)
            preprocessed = pylsl.local_clock()
            self.tracker.add_volume(tr, stamp)
            self._take_markers()
            trial = self.tracker.current(tr) if self.mode == "trial" else None
            onset = None if trial is None else trial.onset_tr
            latents = self.decoder.decode(features, tr=tr, trial_onset=onset)
        except (DataError, ShapeMismatchError) as exc:
            counters.skipped += 1
            log.warning("TR %d skipped: %s", tr, exc)
            return None
        decoded = pylsl.local_clock()
        quality = self.decoder.features.quality
        motion = None if quality.params is None else [float(p) for p in quality.params]
        fd = quality.fd_mm if quality.fd_mm is not None and np.isfinite(quality.fd_mm) else None
        header = LatentsHeader(
            seq=counters.published,
            tr=tr,
            missed_before=step.missed,
            warming_up=self.decoder.warming_up,
            volume_crc32=crc,
            session=self.meta.session,
            run=self.meta.run,
            model_fingerprint=self.bundle.model.fingerprint,
            lag_trs=self.decoder.lag,
            mode=self.mode,
            trial=None if trial is None else self._trial_ref(trial, tr),
            motion=motion,
            fd=fd,
            spike=bool(quality.spike),
            times=Times(
                acquired=stamp,
                received=received,
                preprocessed=preprocessed,
                decoded=decoded,
                sent=pylsl.local_clock(),
            ),
        )
        message = Latents(header, latents["z"], latents["c"])
        self.ctx.publisher.send_frames(message.encode())
        counters.published += 1
        counters.tr = tr
        if self.summary is not None:
            self.summary.push(self._summary(tr, motion, fd, latents), stamp)
        return message

    def _take_markers(self) -> None:
        """Every marker that has arrived, into the trial tracker (a malformed one is dropped)."""
        while self.markers is not None:
            try:
                event = self.markers.pull(timeout=0.0)
            except ProtocolError as exc:
                self.counters.bad_markers += 1
                log.warning("marker dropped: %s", exc)
                continue
            if event is None:
                return
            self.tracker.add_marker(*event)

    def _trial_ref(self, trial: Trial, tr: int) -> TrialRef:
        return TrialRef(
            index=trial.index,
            stimulus_id=trial.stimulus_id,
            onset_tr=trial.onset_tr,
            complete=tr >= self.tracker.window.scored_tr(trial.onset_tr),
        )

    def _summary(
        self, tr: int, motion: list[float] | None, fd: float | None, latents: dict[str, np.ndarray]
    ) -> dict[str, float]:
        return {
            "tr": tr,
            "warming_up": float(self.decoder.warming_up),
            **dict(zip(_MOTION_CHANNELS, motion or (), strict=False)),
            "fd_mm": np.nan if fd is None else fd,
            **{f"{k}_mean": float(v.mean()) for k, v in latents.items()},
            **{f"{k}_std": float(v.std()) for k, v in latents.items()},
        }

    def close(self) -> None:
        for part in (self.summary, self.markers, self.inlet):
            if part is not None:
                part.close()
        self.summary = self.markers = self.inlet = None


def run_decoder(config: SessionConfig, stop: threading.Event) -> Any:
    """Run the decoder node until ``stop`` is set; returns its counters."""
    return run_node(DecoderNode(config), stop, config.security)
