"""The console's state: heartbeats, frames and markers aggregated into what the operator sees.

Pure: no sockets and no clock of its own. Its inputs are the protocol's typed messages
(:class:`~rt_recon.protocol.Status`, :class:`~rt_recon.protocol.FrameHeader`,
:class:`~rt_recon.protocol.Marker`), each with the time it was received (``now``: seconds on
a monotonic clock) or, for a marker, its LSL timestamp, so tests drive it with plain
objects and numbers. :meth:`ConsoleState.snapshot` is the console state the page draws, a
:class:`~rt_recon.display.messages.ConsoleStateMessage` (docs/console.md lists its keys).
Which stimulus a frame is paired with is the protocol's trial rule, applied by
:class:`~rt_recon.display.timeline.StimulusTimeline`; the session's runs (current run, new
series, TRs never decoded) are :class:`~rt_recon.display.runs.RunTracker`'s; the cards of the
volume and marker streams are :mod:`rt_recon.display.sources`'.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from rt_recon.config import QualitySection
from rt_recon.display.messages import (
    ALERT_SEVERITY,
    Alert,
    AlignmentView,
    ConfidenceTrace,
    ConsoleStateMessage,
    Counts,
    LatencyPoint,
    Motion,
    NodeCounters,
    NodeView,
    Pair,
    QualityPoint,
    QualityView,
    StageSummary,
    TruthView,
)
from rt_recon.display.runs import RunTracker
from rt_recon.display.sources import (
    MarkerSource,
    VolumeSource,
    VolumeSourceReport,
    seconds,
)
from rt_recon.display.timeline import StimulusTimeline, Truth
from rt_recon.protocol import (
    AWAY_AFTER_S,
    FAILED_STATES,
    STAGE_NAMES,
    WORKING_STATES,
    DataQuality,
    FrameHeader,
    Marker,
    Status,
    TrialRef,
    VolumeStreamMeta,
)

log = logging.getLogger(__name__)

#: Nodes shown from the start; others (the recorder) appear once they speak.
EXPECTED_NODES = ("decoder", "renderer")

#: Frames listed in the snapshot's ``pairs``.
PAIRS_SHOWN = 12

#: Seconds a dropped malformed message stays among the warnings.
MALFORMED_WARN_S = 10.0

#: A streaming decoder whose last volume is older than this many TRs on the wire ...
STALL_TRS = 3
#: ... and this many seconds is stalled (amber, and a warning).
STALL_MIN_S = 5.0

#: Frame-based warnings (late, budget, motion, pairing) look at the last ``warn_window``
#: frames received within the last ``warn_window`` TRs on the wire, or this many seconds if
#: longer: a banner never stays up once the frames stop (a stream lost or ended).
RECENT_MIN_S = 20.0


@dataclass
class NodeHealth:
    """What the console knows of one node, from its heartbeats (and, for the renderer, frames)."""

    name: str
    state: str = "never_seen"
    last_seen: float | None = None  # monotonic receive time
    heard_t: float | None = None  # its last heartbeat's ``t`` (LSL clock)
    pid: int | None = None
    uptime_s: float | None = None
    #: The counters of its last heartbeat (those of a type this console reads checked).
    counters: dict[str, Any] = field(default_factory=dict)
    #: The console's connection to the node's socket: True up, False lost, None not known.
    link: bool | None = None
    #: Times the node came back as a new process (a new pid in its heartbeats).
    restarts: int = 0

    def level(self, now: float, away_after_s: float, stall_after_s: float | None = None) -> str:
        """``unknown`` (never heard), ``ok``, ``waiting``, ``failed``, ``stopped``,
        ``reconnecting`` (its socket closed: the process is gone, the console is
        connecting again) or ``away`` (silent, though its socket is still up).

        With ``stall_after_s``, a node that says it is streaming but whose last volume is
        older than that is ``waiting`` too (:meth:`stalled`)."""
        if self.last_seen is None:
            return "unknown"
        if self.state == "stopped":
            return "stopped"
        if self.link is False:
            return "reconnecting"
        if now - self.last_seen > away_after_s:
            return "away"
        if self.state in FAILED_STATES:
            return "failed"
        if self.stalled(now, stall_after_s):
            return "waiting"
        return "ok" if self.state in WORKING_STATES else "waiting"

    def volume_age(self, now: float) -> float | None:
        """Seconds since its last volume arrived: its heartbeat's ``t - last_volume_t`` (one
        clock, the node's) plus the time since that heartbeat came; None without a volume."""
        last = self.counters.get("last_volume_t")
        if not isinstance(last, int | float) or self.heard_t is None or self.last_seen is None:
            return None
        return max(self.heard_t - float(last), 0.0) + (now - self.last_seen)

    def stalled(self, now: float, stall_after_s: float | None) -> bool:
        """Streaming, but no volume for more than ``stall_after_s`` (None: never stalled)."""
        if stall_after_s is None or self.state != "streaming":
            return False
        age = self.volume_age(now)
        return age is not None and age > stall_after_s


@dataclass(frozen=True)
class Crossing:
    """One measure of one TR over its threshold."""

    measure: str  # fd, tsnr, global, dvars
    value: float
    text: str  # "DVARS z 38.2", "tSNR 12.3 in z", ...
    limit: str  # "max 5", "min 20", ...


@dataclass(frozen=True)
class FrameRecord:
    """One frame as the console saw it."""

    tr: int
    seq: int
    run: str
    received: float  # monotonic
    latency_ms: dict[str, float]  # per stage of STAGES present in the header
    fd_mm: float | None
    truth: Truth | None  # the console's pairing (the protocol's trial rule)
    trial: TrialRef | None  # the decoder's trial, as the frame carried it (trial mode)
    warming_up: bool
    quality: DataQuality | None = None  # the decoder's data quality of this TR
    #: the quality measures over their thresholds at this TR (fd, tsnr, global, dvars)
    crossed: tuple[Crossing, ...] = ()
    confidence: float | None = None  # the decoder's confidence of this TR (0..1)


class ConsoleState:
    """Aggregates heartbeats, frame headers and markers.

    Args:
        budgets_ms: per-stage budgets in ms (keys of :data:`~rt_recon.protocol.STAGE_NAMES`;
            the session's ``SessionConfig.budgets_ms()``).
        fd_threshold_mm: framewise displacement flagged as motion.
        quality: the data-quality thresholds and the stop rule (the session's ``quality``).
        history: frames kept for the plots.
        away_after_s: silence after which a node is away.
        warn_window: recent frames looked at for budget and lateness warnings.
        volume_source_id: the volume stream's ``source_id`` (its card; None: no card).
        markers_source_id: the marker stream's ``source_id`` (its card; None: no card).
        feedback: the session's feedback condition as the operator may see it
            (``feedback.label()``: real, yoked, or blinded).
    """

    def __init__(
        self,
        budgets_ms: Mapping[str, float],
        *,
        fd_threshold_mm: float = 0.5,
        quality: QualitySection | None = None,
        history: int = 200,
        away_after_s: float = AWAY_AFTER_S,
        warn_window: int = 10,
        volume_source_id: str | None = None,
        markers_source_id: str | None = None,
        feedback: str = "real",
    ):
        self.budgets_ms = dict(budgets_ms)
        self.feedback = feedback
        self.fd_threshold_mm = fd_threshold_mm
        self.quality = quality if quality is not None else QualitySection()
        self.away_after_s = away_after_s
        self.warn_window = warn_window
        self.nodes: dict[str, NodeHealth] = {name: NodeHealth(name) for name in EXPECTED_NODES}
        self.frames: deque[FrameRecord] = deque(maxlen=max(history, self.quality.stop_window_trs))
        self._rois: dict[str, None] = {}  # the tSNR's ROIs, in the order first seen
        self.timeline = StimulusTimeline()
        self.n_frames = 0
        self.late_trs = 0
        self.no_picture_trs = 0
        self.over_budget: dict[str, int] = dict.fromkeys(STAGE_NAMES, 0)
        #: Messages dropped for breaking the protocol, by kind (frame, status, marker).
        self.malformed: dict[str, int] = {}
        self._last_malformed: tuple[str, str, float] | None = None  # (kind, reason, now)
        #: Scored frames whose decoder trial is not the console's pairing (docs/console.md).
        self.pairing_mismatches = 0
        self._last_mismatch: tuple[int, str] | None = None  # (frame TR, what differed)
        self.runs = RunTracker()
        self.volume_source = VolumeSource(volume_source_id) if volume_source_id else None
        self.marker_source = MarkerSource(markers_source_id) if markers_source_id else None
        self._skipped_total = 0
        self._unjudged: list[FrameRecord] = []  # frames that arrived before the TR was known
        self._lag_trs: int | None = None
        self.session: str | None = None

    # ------------------------------------------------------------------ updates

    def on_status(self, status: Status, now: float) -> None:
        """A heartbeat from any node (docs/protocol.md 3.3)."""
        node = self.nodes.setdefault(status.node, NodeHealth(status.node))
        node.state = status.state
        node.last_seen = now
        node.heard_t = status.t
        node.link = True  # a heartbeat came over it
        if node.pid is not None and status.pid != node.pid:
            node.restarts += 1
        node.pid = status.pid
        node.uptime_s = status.uptime_s
        node.counters = _checked_counters(status)
        if status.node == "decoder":
            self.runs.on_decoder(node.counters, status.pid, now)

    def on_link(self, name: str, connected: bool, now: float) -> None:
        """The console's connection to ``name``'s socket came up or was lost.

        A node not shown yet (the recorder before it spoke) stays hidden.
        """
        node = self.nodes.get(name)
        if node is not None:
            node.link = connected

    def on_marker(self, marker: Marker, stamp: float, now: float | None = None) -> None:
        """A marker-stream event, its LSL timestamp and (if known) when it was received."""
        self.timeline.on_marker(marker, stamp)
        if self.marker_source is not None:
            self.marker_source.on_marker(now)

    def on_marker_inlet(self, present: bool, now: float) -> None:
        """The marker input opened the marker stream (True), or looked and did not find it."""
        if self.marker_source is not None:
            self.marker_source.on_inlet(present, now)

    def on_volume_source(self, report: VolumeSourceReport, now: float) -> None:
        """A look for the volume stream (:class:`~rt_recon.display.feeds.VolumeSourceFeed`)."""
        if self.volume_source is not None:
            self.volume_source.on_report(report, now)

    def on_malformed(self, kind: str, reason: str, now: float) -> None:
        """A message of ``kind`` (frame, status, marker) was dropped: it broke the protocol."""
        self.malformed[kind] = self.malformed.get(kind, 0) + 1
        self._last_malformed = (kind, reason, now)

    def on_frame(self, header: FrameHeader, now: float) -> FrameRecord:
        """A frame's header (docs/protocol.md 3.2); returns what the console keeps of it."""
        renderer = self.nodes["renderer"]
        renderer.last_seen = now  # a frame is a sign of life too
        if renderer.state in ("never_seen", "stopped"):
            renderer.state = "running"
        tr, run = header.tr, header.run
        self.session = header.session
        self._lag_trs = header.lag_trs
        self.timeline.on_volume(run, tr, header.times.acquired)
        truth = self.timeline.truth_for_frame(tr, header.lag_trs, run)
        self._check_pairing(header, truth)
        fd = header.fd
        fd = fd if fd is not None and math.isfinite(fd) else None
        self._rois.update(dict.fromkeys(header.quality.tsnr if header.quality else ()))
        record = FrameRecord(
            tr=tr,
            seq=header.seq,
            run=run,
            received=now,
            latency_ms={k: v * 1000.0 for k, v in header.times.latencies().items()},
            fd_mm=fd,
            truth=truth,
            trial=header.trial,
            warming_up=header.warming_up,
            quality=header.quality,
            crossed=self._crossings(fd, header.quality),
            confidence=header.confidence,
        )
        if self.frames and self.frames[-1].run == run and tr > self.frames[-1].tr:
            self.no_picture_trs += tr - self.frames[-1].tr - 1
        self.frames.append(record)
        self.runs.on_frame(header, now)
        self.n_frames += 1
        self._skipped_total = max(self._skipped_total, header.skipped_total)
        for stage, ms in record.latency_ms.items():
            budget = self.budgets_ms.get(stage)
            if budget is not None and ms > budget:
                self.over_budget[stage] += 1
        self._unjudged.append(record)
        self._judge_lateness()
        return record

    def _crossings(self, fd: float | None, quality: DataQuality | None) -> tuple[Crossing, ...]:
        """The measures of one TR over their thresholds (``console.fd_threshold_mm``, the
        ``quality`` section): framewise displacement, tSNR of any ROI, the global signal's
        change, the robust z of DVARS."""
        limits = self.quality
        out = []
        if fd is not None and fd > self.fd_threshold_mm:
            text = f"framewise displacement {fd:.2f} mm"
            out.append(Crossing("fd", fd, text, f"max {self.fd_threshold_mm:g} mm"))
        if quality is None:
            return tuple(out)
        low = [(v, roi) for roi, v in quality.tsnr.items() if v is not None and v < limits.min_tsnr]
        if low:
            value, roi = min(low)
            text = f"tSNR {value:.1f} in {roi}"
            out.append(Crossing("tsnr", value, text, f"min {limits.min_tsnr:g}"))
        change = quality.global_pct
        if change is not None and abs(change) > limits.max_global_pct:
            text = f"global signal {change:+.2f}%"
            out.append(Crossing("global", abs(change), text, f"max ±{limits.max_global_pct:g}%"))
        z = quality.dvars_z
        if z is not None and z > limits.max_dvars_z:
            dvars = f"{quality.dvars_pct:.2f}%, " if quality.dvars_pct is not None else ""
            text = f"DVARS {dvars}z {z:.1f}"
            out.append(Crossing("dvars", z, text, f"max z {limits.max_dvars_z:g}"))
        return tuple(out)

    def _check_pairing(self, header: FrameHeader, truth: Truth | None) -> None:
        """At a trial's scored TR the decoder's trial and the console's pairing must agree:
        both apply the protocol's trial rule to the same stamps. They differ when the console
        missed the marker, or its LSL clock is not the decoder's (another machine without
        LSL clock correction)."""
        trial = header.trial
        if trial is None or trial.onset_tr + header.lag_trs != header.tr:
            return
        if truth is not None and truth.scored:
            if (truth.onset_tr, truth.stimulus_id) == (trial.onset_tr, trial.stimulus_id):
                return
            ours = f"stimulus {truth.stimulus_id} with onset TR {truth.onset_tr}"
        else:
            ours = "no trial scored at this TR"
        self.pairing_mismatches += 1
        self._last_mismatch = (
            header.tr,
            f"the decoder scored trial {trial.index} (stimulus {trial.stimulus_id}, onset TR "
            f"{trial.onset_tr}) at TR {header.tr}; the console pairs {ours}",
        )
        log.warning("pairing differs: %s", self._last_mismatch[1])

    def _judge_lateness(self) -> None:
        interval = self.interval_s
        if interval is None:
            return
        for record in self._unjudged:
            if record.latency_ms.get("end_to_end", 0.0) > interval * 1000.0:
                self.late_trs += 1
        self._unjudged.clear()

    # ------------------------------------------------------------------ queries

    @property
    def lag_trs(self) -> int | None:
        """The decoder's lag (from the frames): a frame of TR t shows TR t - lag_trs."""
        return self._lag_trs

    @property
    def interval_s(self) -> float | None:
        """Seconds between TRs on the wire (the TR divided by the replay speed): the run's
        ``run_start`` marker, else estimated from its frames' acquisition times."""
        if not self.frames:
            return None
        return self.timeline.interval_s(self.frames[-1].run)

    @property
    def wire_interval_s(self) -> float | None:
        """Seconds between volumes on the wire: :attr:`interval_s`, else the volume stream's
        metadata (``tr / speed``); None while neither is known."""
        interval = self.interval_s
        if interval is None and self.volume_source is not None:
            meta = self.volume_source.meta
            interval = meta.sample_interval if meta is not None else None
        return interval

    def _tr_phrase(self) -> str:
        """``TR 2.0 s``; a replay's ``TR 1.0 s at speed 4: a volume every 0.25 s``."""
        interval = self.wire_interval_s
        if interval is None:
            return "TR not known yet"
        meta = self.volume_source.meta if self.volume_source is not None else None
        if meta is not None and meta.speed != 1.0:
            return (
                f"TR {seconds(meta.tr_s)} s at speed {meta.speed:g}: a volume every "
                f"{seconds(interval)} s"
            )
        return f"TR {seconds(interval)} s"

    @property
    def stall_after_s(self) -> float:
        """Seconds without a volume after which a streaming decoder is stalled:
        :data:`STALL_TRS` TRs on the wire, at least :data:`STALL_MIN_S`."""
        interval = self.wire_interval_s
        return max(STALL_TRS * interval, STALL_MIN_S) if interval else STALL_MIN_S

    def _stall_for(self, name: str) -> float | None:
        """The decoder goes amber when its volumes stall (docs/console.md); other nodes not."""
        return self.stall_after_s if name == "decoder" else None

    def node_level(self, name: str, now: float) -> str:
        node = self.nodes.get(name)
        if node is None:
            return "unknown"
        return node.level(now, self.away_after_s, self._stall_for(name))

    def renderer_present(self, now: float) -> bool:
        """True while the renderer is heard from (heartbeats or frames) and has not stopped."""
        return self.node_level("renderer", now) in ("ok", "waiting")

    @property
    def missed_trs(self) -> int:
        """TRs never decoded: those the frames said were missed, less those this console saw
        a frame of (:class:`~rt_recon.display.runs.RunTracker`); at least the decoder's own
        count while it has not restarted (a restarted one counts again what it never saw)."""
        decoder = self.nodes["decoder"]
        counted = decoder.counters.get("missed")
        if isinstance(counted, int) and decoder.restarts == 0:
            return max(counted, self.runs.missed_total)
        return self.runs.missed_total

    @property
    def skipped_trs(self) -> int:
        """Latents the renderer dropped because a newer one was waiting."""
        renderer = self.nodes["renderer"].counters
        counted = renderer.get("skipped_stale")
        return max(self._skipped_total, int(counted) if isinstance(counted, int) else 0)

    def recent_frames(self, now: float) -> list[FrameRecord]:
        """The frames the frame-based warnings look at: the last ``warn_window``, of those
        received within ``warn_window`` TRs on the wire (at least :data:`RECENT_MIN_S`)."""
        interval = self.interval_s
        window_s = max(self.warn_window * interval, RECENT_MIN_S) if interval else RECENT_MIN_S
        return [r for r in list(self.frames)[-self.warn_window :] if now - r.received <= window_s]

    def stop_window(self, now: float) -> list[FrameRecord]:
        """The frames the stop rule looks at: those of the newest frame's run among its last
        ``quality.stop_window_trs`` TRs, received within that many TRs on the wire (at least
        :data:`RECENT_MIN_S`): once the frames stop, so does the banner."""
        if not self.frames:
            return []
        newest, n = self.frames[-1], self.quality.stop_window_trs
        interval = self.interval_s
        window_s = max(n * interval, RECENT_MIN_S) if interval else RECENT_MIN_S
        return [
            r
            for r in self.frames
            if r.run == newest.run and r.tr > newest.tr - n and now - r.received <= window_s
        ]

    def _quality_alert(self, now: float) -> Alert | None:
        """The stop banner: ``quality.stop_after_trs`` or more of the run's last
        ``stop_window_trs`` TRs crossed a threshold. It names each measure crossed, its worst
        value, the TR of it, its threshold and on how many TRs it crossed."""
        window = self.stop_window(now)
        crossing = [r for r in window if r.crossed]
        if len(crossing) < self.quality.stop_after_trs:
            return None
        parts = []
        for measure in ("fd", "dvars", "global", "tsnr"):
            hits = [(c, r.tr) for r in crossing for c in r.crossed if c.measure == measure]
            if not hits:
                continue
            # the worst: the largest value, but the lowest tSNR
            pick = min if measure == "tsnr" else max
            worst, tr = pick(hits, key=lambda hit: hit[0].value)
            parts.append(f"{worst.text} at TR {tr} ({worst.limit}; {len(hits)} TRs)")
        newest = window[-1]
        text = (
            f"stop: run {newest.run} should be stopped: {len(crossing)} of its last "
            f"{self.quality.stop_window_trs} TRs crossed a data-quality threshold (at most "
            f"{self.quality.stop_after_trs - 1} may): " + "; ".join(parts)
        )
        return Alert(kind="quality", text=text)

    def quality_view(self, now: float) -> QualityView:
        """The data-quality traces and thresholds (docs/console.md)."""
        limits = self.quality
        return QualityView(
            rois=list(self._rois),
            window_trs=limits.window_trs,
            min_tsnr=limits.min_tsnr,
            max_global_pct=limits.max_global_pct,
            max_dvars_z=limits.max_dvars_z,
            stop_window_trs=limits.stop_window_trs,
            stop_after_trs=limits.stop_after_trs,
            crossing_trs=sum(1 for r in self.stop_window(now) if r.crossed),
            points=[
                QualityPoint(
                    tr=r.tr,
                    tsnr=dict(r.quality.tsnr),
                    global_pct=r.quality.global_pct,
                    dvars_pct=r.quality.dvars_pct,
                    dvars_z=r.quality.dvars_z,
                    outlier=r.quality.outlier,
                    crossed=[c.measure for c in r.crossed],
                )
                for r in self.frames
                if r.quality is not None
            ],
        )

    def warnings(self, now: float) -> list[Alert]:
        """What the operator must look at, most serious first (:data:`ALERT_SEVERITY`)."""
        out = self._node_warnings(now)
        stop = self._quality_alert(now)
        if stop is not None:
            out.append(stop)
        out += self._disk_warnings()
        out += self._run_warnings(now)
        recent = self.recent_frames(now)
        if self._last_malformed is not None and now - self._last_malformed[2] <= MALFORMED_WARN_S:
            kind, reason, _ = self._last_malformed
            text = (
                f"malformed: {sum(self.malformed.values())} messages dropped "
                f"(last, a {kind}: {reason})"
            )
            out.append(Alert(kind="malformed", text=text))
        if self._last_mismatch is not None and any(r.tr == self._last_mismatch[0] for r in recent):
            text = (
                f"pairing: {self._last_mismatch[1]} ({self.pairing_mismatches} so far; did the "
                "console miss the marker, or is its LSL clock not the decoder's?)"
            )
            out.append(Alert(kind="pairing", text=text))
        interval = self.interval_s
        if interval is not None:
            late = [r for r in recent if r.latency_ms.get("end_to_end", 0.0) > interval * 1000]
            if late:
                worst = max(late, key=lambda r: r.latency_ms["end_to_end"])
                text = (
                    f"late: {len(late)} of the last {len(recent)} pictures took longer than the "
                    f"TR ({interval * 1000:.0f} ms); worst "
                    f"{worst.latency_ms['end_to_end']:.0f} ms at TR {worst.tr}"
                )
                out.append(Alert(kind="late", text=text))
        budget = self._budget_warning(recent)
        if budget is not None:
            out.append(budget)
        moved = [r for r in recent if r.fd_mm is not None and r.fd_mm > self.fd_threshold_mm]
        if moved:
            worst = max(moved, key=lambda r: r.fd_mm or 0.0)
            text = (
                f"motion: framewise displacement {worst.fd_mm:.2f} mm at TR {worst.tr} "
                f"(threshold {self.fd_threshold_mm:g} mm)"
            )
            out.append(Alert(kind="motion", text=text))
        return sorted(out, key=lambda alert: ALERT_SEVERITY.index(alert.kind))

    def _budget_warning(self, recent: list[FrameRecord]) -> Alert | None:
        """Every stage over its budget in the recent frames, folded into one line."""
        parts = []
        for stage in STAGE_NAMES:
            budget = self.budgets_ms.get(stage)
            if budget is None:
                continue
            over = [r for r in recent if r.latency_ms.get(stage, 0.0) > budget]
            if over:
                worst = max(over, key=lambda r: r.latency_ms[stage])
                parts.append(
                    f"{stage} {len(over)} (worst {worst.latency_ms[stage]:.1f} ms > {budget:g} ms "
                    f"at TR {worst.tr})"
                )
        if not parts:
            return None
        return Alert(
            kind="budget", text=f"over budget (last {len(recent)} TRs): " + ", ".join(parts)
        )

    def _run_warnings(self, now: float) -> list[Alert]:
        """A new series began; TRs of the current run never decoded."""
        out = []
        new_series = self.runs.new_series_alert(now, self._series_description())
        if new_series is not None:
            out.append(new_series)
        missed = self.runs.missed_alert()
        if missed is not None:
            out.append(missed)
        alignment = self._alignment_alert()
        if alignment is not None:
            out.append(alignment)
        return out

    def _run_alignment(self) -> dict[str, Any] | None:
        """The decoder's ``alignment`` counter (docs/protocol.md 3.3), if it is of the current
        run (a heartbeat of the run before, or of a run the console does not show, is not)."""
        counters = self.nodes["decoder"].counters
        alignment, current = counters.get("alignment"), self.runs.current
        if not isinstance(alignment, dict) or current is None or counters.get("run") != current.run:
            return None
        return alignment

    def alignment_view(self) -> AlignmentView | None:
        """The run card's alignment line: *aligned to the bundle: 3.1 mm, 2.0 deg*, amber
        beyond the decoder's limits or when the fit did not converge."""
        alignment = self._run_alignment()
        if alignment is None:
            return None
        text = (
            f"aligned to the bundle: {alignment['translation_mm']:.1f} mm, "
            f"{alignment['rotation_deg']:.1f} deg"
        )
        if not alignment["converged"]:
            text += " (did not converge)"
        elif not alignment["within_limits"]:
            text += f" (limit {alignment['limit_mm']:g} mm, {alignment['limit_deg']:g} deg)"
        return AlignmentView(
            text=text,
            amber=not (alignment["converged"] and alignment["within_limits"]),
            tr=alignment["tr"],
            translation_mm=alignment["translation_mm"],
            rotation_deg=alignment["rotation_deg"],
            converged=alignment["converged"],
            within_limits=alignment["within_limits"],
        )

    def _alignment_alert(self) -> Alert | None:
        """The current run's head too far from the bundle's reference, or not aligned."""
        alignment = self._run_alignment()
        if alignment is None or (alignment["converged"] and alignment["within_limits"]):
            return None
        run = self.runs.current.run if self.runs.current is not None else "?"
        advice = "re-fit the bundle on this session, or re-position the participant"
        if not alignment["converged"]:
            text = (
                f"alignment: run {run} could not be aligned to the decoder bundle's reference "
                f"(the fit did not converge at TR {alignment['tr']}): the pictures cannot be "
                f"trusted; {advice}"
            )
        else:
            text = (
                f"alignment: run {run} is {alignment['translation_mm']:.1f} mm, "
                f"{alignment['rotation_deg']:.1f} deg from the decoder bundle's reference (limit "
                f"{alignment['limit_mm']:g} mm, {alignment['limit_deg']:g} deg): its masks may "
                f"miss their voxels; {advice}"
            )
        return Alert(kind="alignment", text=text)

    def _node_warnings(self, now: float) -> list[Alert]:
        """A node away, reconnecting, stopped, paused or failed."""
        out = []
        for node in self.nodes.values():
            level = node.level(now, self.away_after_s)
            if level == "away" and node.last_seen is not None:
                age = now - node.last_seen
                out.append(Alert(kind="away", text=f"{node.name} away: silent for {age:.1f} s"))
            elif level == "reconnecting" and node.last_seen is not None:
                age = now - node.last_seen
                text = f"{node.name} reconnecting: its socket closed, last heard {age:.1f} s ago"
                out.append(Alert(kind="reconnecting", text=text))
            elif level == "stopped":
                out.append(Alert(kind="stopped", text=f"{node.name} stopped"))
            elif node.state == "paused":
                taken = node.counters.get("paused")
                text = f"{node.name} paused: recording stopped at the operator's request"
                if isinstance(taken, int):
                    text += f"; {taken} items not recorded"
                out.append(Alert(kind="paused", text=text))
            elif level == "failed":
                reason = node.counters.get("error") or "no reason given"
                text = f"{node.name} {node.state.replace('_', ' ')}: {reason}"
                # a run refused for its grid (both grids named) is not a broken node
                kind = "geometry" if node.state == "refused" else "failed"
                out.append(Alert(kind=kind, text=text))
            elif node.stalled(now, self._stall_for(node.name)):
                age = node.volume_age(now) or 0.0
                text = (
                    f"{node.name}: no volume for {age:.1f} s ({self._tr_phrase()}): is the "
                    "scanner still running, and the bridge?"
                )
                out.append(Alert(kind="stalled", text=text))
        return out

    def _disk_warnings(self) -> list[Alert]:
        """A node writing to a disk that is running out (the recorder's ``disk_low``)."""
        out = []
        for node in self.nodes.values():
            counters = node.counters
            if counters.get("disk_low") is not True or node.state in FAILED_STATES:
                continue
            text = f"{node.name} disk low: {_number(counters.get('disk_free_mb'))} MB free"
            minutes = counters.get("disk_minutes_left")
            if isinstance(minutes, int | float):
                text += f", about {minutes:.0f} min of recording left"
            out.append(Alert(kind="disk", text=text))
        return out

    def message(self, now: float) -> ConsoleStateMessage:
        """Everything the console page draws, typed. ``pictures`` is False and every truth's
        ``picture`` None: the hub, which knows the stimulus pictures, fills them in."""
        frames = list(self.frames)
        last = frames[-1] if frames else None
        current = self.runs.current
        return ConsoleStateMessage(
            type="state",
            session=self.session,
            run=current.run if current else None,
            series=self._series(),
            series_description=self._series_description(),
            runs=self.runs.runs,
            tr=last.tr if last else None,
            interval_s=self.interval_s,
            lag_trs=self._lag_trs,
            nodes=[
                NodeView(
                    name=node.name,
                    level=node.level(  # type: ignore[arg-type]
                        now, self.away_after_s, self._stall_for(node.name)
                    ),
                    state=node.state,  # type: ignore[arg-type]
                    age_s=None if node.last_seen is None else round(now - node.last_seen, 2),
                    pid=node.pid,
                    uptime_s=node.uptime_s,
                    restarts=node.restarts,
                    volume_age_s=_round(node.volume_age(now)),
                    counters=NodeCounters.model_validate(node.counters),
                )
                for node in self.nodes.values()
            ],
            volume_source=self.volume_source.view(now) if self.volume_source else None,
            marker_source=self.marker_source.view(now) if self.marker_source else None,
            counts=Counts(
                frames=self.n_frames,
                missed_trs=self.missed_trs,
                skipped_trs=self.skipped_trs,
                late_trs=self.late_trs,
                no_picture_trs=self.no_picture_trs,
                over_budget=dict(self.over_budget),
                malformed=sum(self.malformed.values()),
                pairing_mismatches=self.pairing_mismatches,
            ),
            stages=list(STAGE_NAMES),
            budgets_ms=self.budgets_ms,
            latency=[LatencyPoint(tr=r.tr, ms=_rounded(r.latency_ms)) for r in frames],
            latency_summary=_summary(frames, self.budgets_ms),
            motion=Motion(
                threshold_mm=self.fd_threshold_mm,
                points=[(r.tr, round(r.fd_mm, 4)) for r in frames if r.fd_mm is not None],
            ),
            confidence=ConfidenceTrace(
                points=[(r.tr, r.confidence) for r in frames if r.confidence is not None]
            ),
            quality=self.quality_view(now),
            alignment=self.alignment_view(),
            pairs=[
                Pair(tr=r.tr, seq=r.seq, truth=truth_view(r.truth), trial=r.trial)
                for r in frames[-PAIRS_SHOWN:]
            ],
            warnings=self.warnings(now),
            pictures=False,
            feedback=self.feedback,  # type: ignore[arg-type]
        )

    def _stream_meta_of_current_run(self) -> VolumeStreamMeta | None:
        """The volume stream's metadata, if the stream now carries the current run."""
        current = self.runs.current
        meta = self.volume_source.meta if self.volume_source is not None else None
        if current is None or meta is None or meta.run != current.run:
            return None
        return meta

    def _series(self) -> str | None:
        """The current run's series number: the decoder's, else the volume stream's."""
        current = self.runs.current
        if current is not None and current.series:
            return current.series
        meta = self._stream_meta_of_current_run()
        return (meta.series or None) if meta is not None else None

    def _series_description(self) -> str | None:
        """The current run's series description, from the volume stream's metadata."""
        meta = self._stream_meta_of_current_run()
        return (meta.series_description or None) if meta is not None else None

    def snapshot(self, now: float) -> dict[str, Any]:
        """:meth:`message` as the JSON object sent."""
        return self.message(now).to_json()


def truth_view(truth: Truth | None, picture: str | None = None) -> TruthView | None:
    """A pairing as the pages get it; ``picture`` the stimulus picture's URL."""
    if truth is None:
        return None
    return TruthView(
        stimulus_id=truth.stimulus_id,
        caption=truth.caption,
        onset_tr=truth.onset_tr,
        scored=truth.scored,
        picture=picture,
    )


def _checked_counters(status: Status) -> dict[str, Any]:
    """The heartbeat's counters, those this console knows checked against their types
    (:class:`~rt_recon.display.messages.NodeCounters`); one of the wrong type is dropped with
    a warning, the rest kept."""
    try:
        counters = NodeCounters.model_validate(status.counters)
    except ValidationError as exc:
        bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
        log.warning(
            "%s heartbeat: dropped counters of the wrong type: %s",
            status.node,
            "; ".join(f"{e['loc'][0]}: {e['msg']} (found {e['input']!r})" for e in exc.errors()),
        )
        kept = {k: v for k, v in status.counters.items() if k not in bad}
        counters = NodeCounters.model_validate(kept)
    return counters.model_dump(mode="json", exclude_unset=True)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _number(value: Any) -> str:
    return f"{value:.0f}" if isinstance(value, int | float) else "?"


def _rounded(values: Mapping[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in values.items()}


def _summary(frames: Iterable[FrameRecord], budgets_ms: Mapping[str, float]) -> list[StageSummary]:
    """Per stage: latest, median and p95 over the kept frames (ms), and the budget."""
    frames = list(frames)
    rows = []
    for stage in STAGE_NAMES:
        values = np.array([r.latency_ms[stage] for r in frames if stage in r.latency_ms])
        if values.size == 0:
            continue
        latest = next(r.latency_ms[stage] for r in reversed(frames) if stage in r.latency_ms)
        rows.append(
            StageSummary(
                stage=stage,
                n=int(values.size),
                latest_ms=round(float(latest), 3),
                p50_ms=round(float(np.median(values)), 3),
                p95_ms=round(float(np.percentile(values, 95)), 3),
                budget_ms=budgets_ms.get(stage),
            )
        )
    return rows
