"""The decoder node: LSL volumes in, one latents message per TR out on ZeroMQ.

Per TR (:meth:`DecoderNode.process`): give the volume its TR index (its
acquisition index, carried in the stream's index channel:
:class:`~rt_recon.decode.tr_counter.IndexedTrCounter`; from its timestamp for
a stream without one: :class:`~rt_recon.decode.tr_counter.TrCounter`), preprocess,
take in the markers that arrived (trial mode: the protocol's trial rule
picks the trial the TR estimates), decode, and publish a
:class:`~rt_recon.protocol.Latents` message whose header carries the TR
index, a sequence number, a CRC-32 of the volume as received (so a consumer
can prove which volume a latent came from) and the stage times
(docs/protocol.md 3.1), with the TR's motion, framewise displacement and data quality
(tSNR of each head's voxels over a sliding window, global signal, DVARS, outlier flag:
:class:`~rt_recon.preprocess.quality.QualityMonitor`, window and outlier rule from the
session's ``quality`` section) and the TR's confidence (where the latents fall in the
bundle's null of the decoder's output on noise, :mod:`rt_recon.decode.confidence`; null
for a bundle without one). A per-TR summary also goes out on an LSL stream for
LabRecorder.

**Runs.** A stream that ends (its producer sent the end of its run, or went
away) is resolved again. The same ``run`` on the same grid continues (a
restarted bridge: the TRs it missed are the gap in acquisition indices);
another ``run`` begins a new run: TR indices from 0, the z-score warmed up
again, the bundle's motion reference kept. A run whose grid is not the
bundle's is refused, not fatal: state ``refused``, ``error`` naming both
grids, its volumes counted as ``refused`` and left to the recorder, until a
run that fits begins.

**Alignment to the bundle.** The first volume of each run is aligned to the
bundle's reference before it is decoded (:class:`~rt_recon.decode.online.OnlineDecoder`):
the participant may have moved since the bundle's session (a run after a
break, another day). How far (translation length in mm, rotation angle in
degrees, the six parameters, the TR, whether the fit converged, and whether it
is within ``decoder.max_alignment_mm`` / ``max_alignment_deg``) goes into the
heartbeat's ``alignment`` counter until the next run begins, so the recording
and the console have it (docs/protocol.md 3.3); the log says it too, as a
warning beyond the limits.

The node follows the contract of :mod:`rt_recon.nodes.runner`: its inputs
are opened in :meth:`~DecoderNode.open` (or handed to :meth:`~DecoderNode.start`
directly, which is how tests run the per-TR step without a socket).
"""

from __future__ import annotations

import logging
import math
import threading
import zlib
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import pylsl
from threadpoolctl import threadpool_limits

from rt_recon.config import SessionConfig
from rt_recon.decode.bundle import DecoderBundle
from rt_recon.decode.online import OnlineDecoder
from rt_recon.decode.tr_counter import IndexedTrCounter, TrCounter
from rt_recon.decode.trial_tracker import Trial, TrialTracker
from rt_recon.errors import BundleError, DataError, ProtocolError, ShapeMismatchError, StreamError
from rt_recon.nodes.runner import Node, NodeContext, Stopped, run_node
from rt_recon.preprocess.motion import Alignment
from rt_recon.preprocess.quality import QualityMeasures
from rt_recon.protocol import (
    TOPIC_LATENTS,
    DataQuality,
    DecoderCounters,
    Latents,
    LatentsHeader,
    RunAlignment,
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
        self.reopen: Callable[[], VolumeSource] | None = None  # the stream again, once it ended
        self.refused = False  # the current run's grid is not the bundle's

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
        self.reopen = self._resolve_again
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
        """Begin decoding the stream ``inlet`` reads (see :meth:`begin_stream`)."""
        if self.bundle is None:
            self.prepare()
        self.ctx, self.markers, self.summary = ctx, markers, summary
        self.mode = "trial" if markers is not None else "continuous"
        self.begin_stream(inlet)

    def begin_stream(self, inlet: VolumeSource) -> None:
        """Read from ``inlet`` from now on: the run it carries continues the current one
        (the same ``run`` on the same grid) or begins a new run (see the module doc)."""
        assert self.ctx is not None and self.bundle is not None
        meta, previous = inlet.meta, getattr(self, "meta", None)
        self.inlet = inlet
        self.counters.stream_uid = getattr(inlet, "uid", None)  # a bridge waits for it
        if (
            previous is not None
            and (meta.session, meta.run) == (previous.session, previous.run)
            and meta.same_grid(previous)
        ):
            log.info(
                "run %s continues on a new stream (TRs missed meanwhile are flagged)", meta.run
            )
            self.meta = meta
            return
        self.meta = meta
        counters = self.counters
        counters.run, counters.series, counters.tr = meta.run, meta.series, -1
        counters.runs += 1
        counters.alignment = None  # the new run's, once its first volume is aligned
        # TRs by the acquisition index a volume carries, else by its stamp
        self.by_index = IndexedTrCounter()
        self.by_stamp = TrCounter(meta.sample_interval, sequential=meta.pace == "asap")
        try:
            self.bundle.check_stream(meta)
        except ShapeMismatchError as exc:
            counters.error = (
                f"run {meta.run} (series {meta.series or '?'}) refused, not decoded: {exc}"
            )
            log.error("%s", counters.error)
            self.ctx.state = "refused"
            self.refused = True
            return
        counters.error = None
        self.refused = False
        quality = self.config.quality
        self.decoder = OnlineDecoder(
            self.bundle,
            stream=meta,
            quality_window=quality.window_trs,
            outlier_z=quality.max_dvars_z,
        )
        self.tracker = TrialTracker(self.decoder.lag, len(self.decoder.weights))
        if self.ctx.state == "refused":
            self.ctx.state = self.working_state
        log.info(
            "run %s%s: decoding stream %r, %s, TR %.3f s, speed %g, %s mode",
            meta.run, f" (series {meta.series})" if meta.series else "",
            self.config.stream.source_id, meta.describe_grid(), meta.tr_s, meta.speed, self.mode,
        )  # fmt: skip

    def step(self) -> None:
        """Pull the next volume (waiting up to 0.1 s) and decode it; follow the stream to its
        next run when it ends."""
        assert self.inlet is not None, "start() or open() first"
        stamp = self.inlet.pull(timeout=0.1)
        if stamp is not None:
            self.process(self.inlet.values, stamp, pylsl.local_clock(), self.inlet.index)
        elif self.inlet.ended is not None:
            self._stream_ended()

    def _stream_ended(self) -> None:
        assert self.inlet is not None and self.ctx is not None
        how = self.inlet.ended
        if how == "end of run":
            log.info("run %s ended after TR %d", self.meta.run, self.counters.tr)
        else:
            log.warning(
                "the volume stream of run %s was lost after TR %d; waiting for it to come back",
                self.meta.run, self.counters.tr,
            )  # fmt: skip
        self.inlet.close()
        if self.reopen is None:
            raise Stopped  # a stream handed to start(): nothing to resolve again
        self.ctx.state = "waiting_for_stream"
        inlet = self.reopen()
        self.ctx.state = self.working_state
        self.begin_stream(inlet)

    def _resolve_again(self) -> VolumeInlet:
        """The volume stream once it is back (waits as long as it takes, until stopped)."""
        assert self.ctx is not None and isinstance(self.inlet, VolumeInlet)
        while (inlet := self.inlet.next_stream(5.0, on_wait=self.ctx.check_stop)) is None:
            self.ctx.check_stop()
        return inlet

    def process(
        self, values: np.ndarray, stamp: float, received: float, index: int | None = None
    ) -> Latents | None:
        """One volume (``(n_channels,)``, stamped ``stamp`` on the LSL clock, acquisition
        index ``index`` or None) -> its latents message, published; None when the volume
        gets no TR or cannot be decoded."""
        assert self.ctx is not None and self.bundle is not None
        counters = self.counters
        counters.volumes += 1
        counters.last_volume_t = received
        if self.refused:
            counters.refused += 1
            self._take_markers(keep=False)  # markers of a run not decoded pair with nothing
            return None
        crc = zlib.crc32(values)
        step = self.by_stamp.update(stamp, crc) if index is None else self.by_index.update(index)
        if step.tr is None:
            if step.rejected == "duplicate":
                counters.duplicates += 1
            else:
                counters.out_of_order += 1
            which = (
                f"stamped {step.dt:+.3f} s from TR {counters.tr}'s"
                if index is None
                else f"with acquisition index {index} (last TR {counters.tr})"
            )
            log.warning(
                "volume %s skipped (not assigned a TR): %s",
                which, "a duplicate" if step.rejected == "duplicate" else "out of order",
            )  # fmt: skip
            return None
        tr = step.tr
        if step.missed:
            counters.missed += step.missed
            log.warning("%d TR(s) missing before TR %d", step.missed, tr)
        try:
            aligned = self.decoder.alignment
            features = self.decoder.preprocess(values)
            preprocessed = pylsl.local_clock()
            if aligned is None and self.decoder.alignment is not None:
                counters.alignment = self._run_alignment(self.decoder.alignment, tr)
            self.tracker.add_volume(tr, stamp)
            self._take_markers()
            trial = self.tracker.current(tr) if self.mode == "trial" else None
            onset = None if trial is None else trial.onset_tr
            onsets = [t.onset_tr for t in self.tracker.trials] if trial is not None else None
            latents = self.decoder.decode(features, tr=tr, trial_onset=onset, onsets=onsets)
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
            quality=data_quality(self.decoder.measures),
            confidence=(
                None if self.decoder.confidence is None else round(self.decoder.confidence, 4)
            ),
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
            self.summary.push(summary_sample(header, latents), stamp)
        return message

    def _run_alignment(self, alignment: Alignment, tr: int) -> RunAlignment:
        """The heartbeat's view of the run's alignment to the bundle, judged against the
        config's limits (and logged: a warning beyond them or without convergence)."""
        limits = self.config.decoder
        report = RunAlignment(
            tr=tr,
            translation_mm=round(alignment.translation_mm, 3),
            rotation_deg=round(alignment.rotation_deg, 3),
            params=[round(float(p), 6) for p in alignment.params],
            converged=alignment.converged,
            limit_mm=limits.max_alignment_mm,
            limit_deg=limits.max_alignment_deg,
            within_limits=bool(
                alignment.translation_mm <= limits.max_alignment_mm
                and alignment.rotation_deg <= limits.max_alignment_deg
            ),
        )
        text = (
            f"run {self.meta.run} aligned to the bundle at TR {tr}: "
            f"{report.translation_mm:.1f} mm, {report.rotation_deg:.1f} deg"
        )
        if report.within_limits and report.converged:
            log.info("%s", text)
        else:
            log.warning(
                "%s (%slimit %g mm, %g deg): the bundle's masks may miss their voxels; re-fit "
                "the bundle on this session's data or re-position the participant",
                text, "" if report.converged else "the fit did NOT converge; ",
                report.limit_mm, report.limit_deg,
            )  # fmt: skip
        return report

    def _take_markers(self, keep: bool = True) -> None:
        """Every marker that has arrived, into the trial tracker (a malformed one is dropped;
        all are dropped unless ``keep``)."""
        while self.markers is not None:
            try:
                event = self.markers.pull(timeout=0.0)
            except ProtocolError as exc:
                self.counters.bad_markers += 1
                log.warning("marker dropped: %s", exc)
                continue
            if event is None:
                return
            if keep:
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


def summary_sample(header: LatentsHeader, latents: dict[str, np.ndarray]) -> dict[str, float]:
    """One TR of the LSL decoded-summary stream (:data:`~rt_recon.protocol.DECODED_CHANNELS`,
    docs/protocol.md 2b) from its latents message: what is unknown is left out (sent as NaN)."""
    sample = {
        "tr": header.tr,
        "warming_up": float(header.warming_up),
        **dict(zip(_MOTION_CHANNELS, header.motion or (), strict=False)),
        "fd_mm": np.nan if header.fd is None else header.fd,
        **{f"{k}_mean": float(v.mean()) for k, v in latents.items()},
        **{f"{k}_std": float(v.std()) for k, v in latents.items()},
    }
    if header.confidence is not None:
        sample["confidence"] = header.confidence
    quality = header.quality
    if quality is not None:
        sample["outlier"] = float(quality.outlier)
        for name in ("global_pct", "dvars_z"):
            value = getattr(quality, name)
            if value is not None:
                sample[name] = value
    return sample


def data_quality(measures: QualityMeasures | None) -> DataQuality | None:
    """A TR's measures as the latents header carries them (docs/protocol.md 3.1): rounded,
    and a figure that is not finite (a window of voxels that never changed) as null."""
    if measures is None:
        return None

    def number(value: float | None, digits: int) -> float | None:
        return round(value, digits) if value is not None and math.isfinite(value) else None

    return DataQuality(
        tsnr={name: number(value, 2) for name, value in measures.tsnr.items()},
        global_pct=number(measures.global_pct, 4),
        dvars_pct=number(measures.dvars_pct, 4),
        dvars_z=number(measures.dvars_z, 3),
        outlier=measures.outlier,
        outliers=measures.outliers,
        window_trs=measures.window_trs,
    )


def run_decoder(config: SessionConfig, stop: threading.Event) -> Any:
    """Run the decoder node until ``stop`` is set; returns its counters."""
    return run_node(DecoderNode(config), stop, config.security)
