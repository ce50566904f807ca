"""The console's state: heartbeats, frames and markers aggregated into what the operator sees.

Pure: no sockets and no clock of its own. Every update takes the time it was
received (``now``: seconds on a monotonic clock), so tests drive it with
plain numbers. :meth:`ConsoleState.snapshot` is the JSON the console page
draws (docs/console.md lists its keys).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rt_recon.display.timeline import FrameClock, StimulusTimeline, Truth
from rt_recon.protocol import (
    AWAY_AFTER_S,
    FAILED_STATES,
    STAGES,
    WORKING_STATES,
    stage_latencies,
)

#: Nodes shown from the start; others (the recorder) appear once they speak.
EXPECTED_NODES = ("decoder", "renderer")

STAGE_NAMES = tuple(name for name, _, _ in STAGES)

_STATUS_KEYS = frozenset({"protocol", "version", "buffers", "node", "pid", "state", "seq", "t"})


@dataclass
class NodeHealth:
    """What the console knows of one node, from its heartbeats (and, for the renderer, frames)."""

    name: str
    state: str = "never_seen"
    last_seen: float | None = None  # monotonic receive time
    pid: int | None = None
    uptime_s: float | None = None
    counters: dict[str, Any] = field(default_factory=dict)
    #: The console's connection to the node's socket: True up, False lost, None not known.
    link: bool | None = None
    #: Times the node came back as a new process (a new pid in its heartbeats).
    restarts: int = 0

    def level(self, now: float, away_after_s: float) -> str:
        """``unknown`` (never heard), ``ok``, ``waiting``, ``failed``, ``stopped``,
        ``reconnecting`` (its socket closed: the process is gone, the console is
        connecting again) or ``away`` (silent, though its socket is still up)."""
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
        return "ok" if self.state in WORKING_STATES else "waiting"


@dataclass(frozen=True)
class FrameRecord:
    """One frame as the console saw it."""

    tr: int
    seq: int
    run: str | None
    received: float  # monotonic
    latency_ms: dict[str, float]  # per stage of STAGES present in the header
    fd_mm: float | None
    truth: Truth | None
    warming_up: bool


class ConsoleState:
    """Aggregates ``status``, ``frame`` and marker messages.

    Args:
        budgets_ms: per-stage budgets in ms (keys of :data:`STAGE_NAMES`).
        fd_threshold_mm: framewise displacement flagged as motion.
        history: frames kept for the plots.
        away_after_s: silence after which a node is away.
        warn_window: recent frames looked at for budget and lateness warnings.
    """

    def __init__(
        self,
        budgets_ms: Mapping[str, float],
        *,
        fd_threshold_mm: float = 0.5,
        history: int = 200,
        away_after_s: float = AWAY_AFTER_S,
        warn_window: int = 10,
    ):
        self.budgets_ms = dict(budgets_ms)
        self.fd_threshold_mm = fd_threshold_mm
        self.away_after_s = away_after_s
        self.warn_window = warn_window
        self.nodes: dict[str, NodeHealth] = {name: NodeHealth(name) for name in EXPECTED_NODES}
        self.frames: deque[FrameRecord] = deque(maxlen=history)
        self.timeline = StimulusTimeline()
        self.n_frames = 0
        self.late_trs = 0
        self.no_picture_trs = 0
        self.over_budget: dict[str, int] = dict.fromkeys(STAGE_NAMES, 0)
        self._missed_in_frames = 0
        self._skipped_total = 0
        self._unjudged: list[FrameRecord] = []  # frames that arrived before the TR was known
        self._anchor: tuple[str | None, int, float] | None = None  # (run, tr, acquired)
        self._clock: FrameClock | None = None
        self._lag_trs: int | None = None
        self.session: str | None = None

    # ------------------------------------------------------------------ updates

    def on_status(self, header: Mapping[str, Any], now: float) -> None:
        """A heartbeat from any node (docs/protocol.md 3.3)."""
        name = str(header.get("node", "unknown"))
        node = self.nodes.setdefault(name, NodeHealth(name))
        node.state = str(header.get("state", "unknown"))
        node.last_seen = now
        node.link = True  # a heartbeat came over it
        pid = header.get("pid") if isinstance(header.get("pid"), int) else None
        if node.pid is not None and pid is not None and pid != node.pid:
            node.restarts += 1
        node.pid = pid
        uptime = header.get("uptime_s")
        node.uptime_s = float(uptime) if isinstance(uptime, int | float) else None
        node.counters = {k: v for k, v in header.items() if k not in _STATUS_KEYS}

    def on_link(self, name: str, connected: bool, now: float) -> None:
        """The console's connection to ``name``'s socket came up or was lost.

        A node not shown yet (the recorder before it spoke) stays hidden.
        """
        node = self.nodes.get(name)
        if node is not None:
            node.link = connected

    def on_marker(self, event: Mapping[str, Any], stamp: float) -> None:
        """A marker-stream event and its LSL timestamp."""
        self.timeline.on_marker(event, stamp)

    def on_frame(self, header: Mapping[str, Any], now: float) -> FrameRecord:
        """A frame's header (docs/protocol.md 3.2); returns what the console keeps of it."""
        renderer = self.nodes["renderer"]
        renderer.last_seen = now  # a frame is a sign of life too
        if renderer.state in ("never_seen", "stopped"):
            renderer.state = "running"
        tr = int(header.get("tr", -1))
        run = str(header["run"]) if "run" in header else None
        self.session = str(header.get("session", self.session or "")) or None
        times = header.get("times", {})
        self._update_clock(run, tr, times.get("acquired"))
        if isinstance(header.get("lag_trs"), int):
            self._lag_trs = int(header["lag_trs"])
        truth = None
        if self._lag_trs is not None:
            truth = self.timeline.truth_for_frame(tr, self._lag_trs, run, self._clock)
        fd = header.get("fd")
        record = FrameRecord(
            tr=tr,
            seq=int(header.get("seq", -1)),
            run=run,
            received=now,
            latency_ms={k: v * 1000.0 for k, v in stage_latencies(times).items()},
            fd_mm=float(fd) if isinstance(fd, int | float) and math.isfinite(fd) else None,
            truth=truth,
            warming_up=bool(header.get("warming_up", False)),
        )
        if self.frames and self.frames[-1].run == run and tr > self.frames[-1].tr:
            self.no_picture_trs += tr - self.frames[-1].tr - 1
        self.frames.append(record)
        self.n_frames += 1
        self._missed_in_frames += int(header.get("missed_before", 0) or 0)
        self._skipped_total = max(self._skipped_total, int(header.get("skipped_total", 0) or 0))
        for stage, ms in record.latency_ms.items():
            budget = self.budgets_ms.get(stage)
            if budget is not None and ms > budget:
                self.over_budget[stage] += 1
        self._unjudged.append(record)
        self._judge_lateness()
        return record

    def _update_clock(self, run: str | None, tr: int, acquired: Any) -> None:
        """Seconds per TR on the wire: the run_start marker's, else from frame timestamps."""
        if not isinstance(acquired, int | float):
            return
        anchor = self._anchor
        if anchor is None or anchor[0] != run or tr <= anchor[1]:
            self._anchor = (run, tr, float(acquired))  # first frame of a run (or a restart)
        interval = self.timeline.wire_interval(run)
        if interval is None and self._anchor is not None and tr > self._anchor[1]:
            interval = (float(acquired) - self._anchor[2]) / (tr - self._anchor[1])
        if interval is not None and interval > 0:
            self._clock = FrameClock(tr, float(acquired), interval)

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
        """Seconds between TRs on the wire (the TR divided by the replay speed)."""
        return self._clock.interval_s if self._clock is not None else None

    def node_level(self, name: str, now: float) -> str:
        node = self.nodes.get(name)
        return node.level(now, self.away_after_s) if node is not None else "unknown"

    def renderer_present(self, now: float) -> bool:
        """True while the renderer is heard from (heartbeats or frames) and has not stopped."""
        return self.node_level("renderer", now) in ("ok", "waiting")

    @property
    def missed_trs(self) -> int:
        """Volumes that never arrived: the decoder's count, else what frames reported."""
        decoder = self.nodes["decoder"].counters
        if isinstance(decoder.get("missed"), int):
            return max(int(decoder["missed"]), self._missed_in_frames)
        return self._missed_in_frames

    @property
    def skipped_trs(self) -> int:
        """Latents the renderer dropped because a newer one was waiting."""
        renderer = self.nodes["renderer"].counters
        counted = renderer.get("skipped_stale")
        return max(self._skipped_total, int(counted) if isinstance(counted, int) else 0)

    def warnings(self, now: float) -> list[dict[str, str]]:
        """What the operator must look at, most serious first."""
        out: list[dict[str, str]] = []
        for node in self.nodes.values():
            level = node.level(now, self.away_after_s)
            if level == "away" and node.last_seen is not None:
                age = now - node.last_seen
                out.append({"kind": "away", "text": f"{node.name} away: silent for {age:.1f} s"})
            elif level == "reconnecting" and node.last_seen is not None:
                age = now - node.last_seen
                text = f"{node.name} reconnecting: its socket closed, last heard {age:.1f} s ago"
                out.append({"kind": "reconnecting", "text": text})
            elif level == "stopped":
                out.append({"kind": "stopped", "text": f"{node.name} stopped"})
            elif node.state == "paused":
                taken = node.counters.get("paused")
                text = f"{node.name} paused: recording stopped at the operator's request"
                if isinstance(taken, int):
                    text += f"; {taken} items not recorded"
                out.append({"kind": "paused", "text": text})
            elif level == "failed":
                reason = node.counters.get("error") or "no reason given"
                text = f"{node.name} {node.state.replace('_', ' ')}: {reason}"
                out.append({"kind": "failed", "text": text})
        out += self._disk_warnings()
        recent = list(self.frames)[-self.warn_window :]
        interval = self.interval_s
        if interval is not None:
            late = [r for r in recent if r.latency_ms.get("end_to_end", 0.0) > interval * 1000]
            if late:
                worst = max(late, key=lambda r: r.latency_ms["end_to_end"])
                out.append(
                    {
                        "kind": "late",
                        "text": f"late: {len(late)} of the last {len(recent)} pictures took "
                        f"longer than the TR ({interval * 1000:.0f} ms); worst "
                        f"{worst.latency_ms['end_to_end']:.0f} ms at TR {worst.tr}",
                    }
                )
        for stage in STAGE_NAMES:
            budget = self.budgets_ms.get(stage)
            if budget is None:
                continue
            over = [r for r in recent if r.latency_ms.get(stage, 0.0) > budget]
            if over:
                worst = max(over, key=lambda r: r.latency_ms[stage])
                out.append(
                    {
                        "kind": "budget",
                        "text": f"{stage} over budget: {len(over)} of the last {len(recent)} "
                        f"TRs above {budget:g} ms; worst {worst.latency_ms[stage]:.1f} ms "
                        f"at TR {worst.tr}",
                    }
                )
        moved = [r for r in recent if r.fd_mm is not None and r.fd_mm > self.fd_threshold_mm]
        if moved:
            worst = max(moved, key=lambda r: r.fd_mm or 0.0)
            out.append(
                {
                    "kind": "motion",
                    "text": f"motion: framewise displacement {worst.fd_mm:.2f} mm at TR "
                    f"{worst.tr} (threshold {self.fd_threshold_mm:g} mm)",
                }
            )
        return out

    def _disk_warnings(self) -> list[dict[str, str]]:
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
            out.append({"kind": "disk", "text": text})
        return out

    def snapshot(self, now: float) -> dict[str, Any]:
        """Everything the console page draws, as a JSON-ready dict."""
        frames = list(self.frames)
        last = frames[-1] if frames else None
        return {
            "type": "state",
            "session": self.session,
            "run": last.run if last else None,
            "tr": last.tr if last else None,
            "interval_s": self.interval_s,
            "lag_trs": self._lag_trs,
            "nodes": [
                {
                    "name": node.name,
                    "level": node.level(now, self.away_after_s),
                    "state": node.state,
                    "age_s": None if node.last_seen is None else round(now - node.last_seen, 2),
                    "pid": node.pid,
                    "uptime_s": node.uptime_s,
                    "restarts": node.restarts,
                    "counters": node.counters,
                }
                for node in self.nodes.values()
            ],
            "counts": {
                "frames": self.n_frames,
                "missed_trs": self.missed_trs,
                "skipped_trs": self.skipped_trs,
                "late_trs": self.late_trs,
                "no_picture_trs": self.no_picture_trs,
                "over_budget": dict(self.over_budget),
            },
            "stages": list(STAGE_NAMES),
            "budgets_ms": self.budgets_ms,
            "latency": [{"tr": r.tr, "ms": _rounded(r.latency_ms)} for r in frames],
            "latency_summary": _summary(frames, self.budgets_ms),
            "motion": {
                "threshold_mm": self.fd_threshold_mm,
                "points": [[r.tr, round(r.fd_mm, 4)] for r in frames if r.fd_mm is not None],
            },
            "pairs": [
                {"tr": r.tr, "seq": r.seq, "truth": r.truth.to_json() if r.truth else None}
                for r in frames[-12:]
            ],
            "warnings": self.warnings(now),
        }


def _number(value: Any) -> str:
    return f"{value:.0f}" if isinstance(value, int | float) else "?"


def _rounded(values: Mapping[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in values.items()}


def _summary(frames: Iterable[FrameRecord], budgets_ms: Mapping[str, float]) -> list[dict]:
    """Per stage: latest, median and p95 over the kept frames (ms), and the budget."""
    frames = list(frames)
    rows = []
    for stage in STAGE_NAMES:
        values = np.array([r.latency_ms[stage] for r in frames if stage in r.latency_ms])
        if values.size == 0:
            continue
        latest = next(r.latency_ms[stage] for r in reversed(frames) if stage in r.latency_ms)
        rows.append(
            {
                "stage": stage,
                "n": int(values.size),
                "latest_ms": round(float(latest), 3),
                "p50_ms": round(float(np.median(values)), 3),
                "p95_ms": round(float(np.percentile(values, 95)), 3),
                "budget_ms": budgets_ms.get(stage),
            }
        )
    return rows
