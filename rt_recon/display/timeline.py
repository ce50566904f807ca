"""Which stimulus was on screen at each TR, from the marker stream's events.

Pure: events go in with their LSL timestamps, questions come back with
:class:`Truth` answers; no sockets, no clocks of its own.

The onset TR of an event is ``round(onset / tr)`` when the event carries
``onset`` (seconds from the start of its run) and the run's ``run_start``
marker gave ``tr``: the rule the offline scoring uses
(:func:`rt_recon.decode.fit.trial_samples`), so what the console pairs is what
gets scored. Without them (a live stimulus program that sends only a
``stimulus_id``), the onset TR comes from the event's LSL timestamp against
the acquisition time of a frame's volume (same clock on one machine, or
LSL-corrected). A frame of TR ``t`` shows the decoder's estimate of the
picture on screen at TR ``t - lag_trs``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Events kept per run (a run has a few hundred at most).
MAX_EVENTS = 2000


@dataclass(frozen=True)
class Truth:
    """The stimulus on screen at a TR.

    Attributes:
        stimulus_id: id in the dataset's ``stimuli/stimuli.tsv``.
        caption: the event's caption ("" when it had none).
        onset_tr: TR index of the stimulus onset.
        scored: True at ``onset_tr + lag_trs``, the TR the offline scoring uses.
    """

    stimulus_id: int
    caption: str
    onset_tr: int
    scored: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "stimulus_id": self.stimulus_id,
            "caption": self.caption,
            "onset_tr": self.onset_tr,
            "scored": self.scored,
        }


@dataclass(frozen=True)
class _Event:
    stimulus_id: int
    caption: str
    stamp: float  # LSL clock
    onset_s: float | None  # seconds from run start
    duration_s: float | None


@dataclass(frozen=True)
class FrameClock:
    """Where TRs fall on the LSL clock: TR ``tr`` was acquired at ``acquired``."""

    tr: int
    acquired: float
    interval_s: float  # seconds between volumes on the wire (tr / speed)

    def tr_at(self, stamp: float) -> int:
        return self.tr + round((stamp - self.acquired) / self.interval_s)


class StimulusTimeline:
    """Stimulus events per run, and the stimulus on screen at a given TR."""

    def __init__(self) -> None:
        self._events: dict[str, deque[_Event]] = {}
        self._run_tr: dict[str, float] = {}  # acquisition TR (s) per run, from run_start
        self._speed: dict[str, float] = {}
        self.last_run: str | None = None

    def on_marker(self, event: Mapping[str, Any], stamp: float) -> None:
        """Take one marker event (a decoded JSON object) and its LSL timestamp."""
        run = str(event.get("run", ""))
        kind = event.get("type")
        if kind == "run_start":
            self._events[run] = deque(maxlen=MAX_EVENTS)
            if _positive(event.get("tr")):
                self._run_tr[run] = float(event["tr"])
            if _positive(event.get("speed")):
                self._speed[run] = float(event["speed"])
            self.last_run = run
            return
        if "stimulus_id" not in event:
            return
        try:
            stimulus_id = int(event["stimulus_id"])
        except (TypeError, ValueError):
            return
        self._events.setdefault(run, deque(maxlen=MAX_EVENTS)).append(
            _Event(
                stimulus_id=stimulus_id,
                caption=str(event.get("caption", "")),
                stamp=float(stamp),
                onset_s=float(event["onset"]) if _number(event.get("onset")) else None,
                duration_s=float(event["duration"]) if _positive(event.get("duration")) else None,
            )
        )
        self.last_run = run

    def wire_interval(self, run: str | None = None) -> float | None:
        """Seconds between volumes on the wire (``tr / speed``) from the run's ``run_start``."""
        key = self.last_run if run is None else run
        if key is None or key not in self._run_tr:
            return None
        return self._run_tr[key] / self._speed.get(key, 1.0)

    def truth_at(
        self, tr: int, run: str | None = None, clock: FrameClock | None = None
    ) -> Truth | None:
        """The stimulus on screen at TR ``tr`` of ``run`` (None: blank, or unknown)."""
        events = self._events.get(str(run)) if run is not None else None
        if events is None:  # frames without a run id, or a run we have no events for
            events = self._events.get(self.last_run or "")
            run = self.last_run
        if not events:
            return None
        run_tr = self._run_tr.get(str(run))
        found: Truth | None = None
        for event in events:
            span = self._span(event, run_tr, clock, self._speed.get(str(run), 1.0))
            if span is None:
                continue
            onset_tr, n_trs = span
            if onset_tr <= tr < onset_tr + n_trs and (found is None or onset_tr >= found.onset_tr):
                found = Truth(event.stimulus_id, event.caption, onset_tr)
        return found

    def truth_for_frame(
        self, frame_tr: int, lag_trs: int, run: str | None = None, clock: FrameClock | None = None
    ) -> Truth | None:
        """The stimulus a frame of TR ``frame_tr`` reconstructs: the one at ``frame_tr - lag``."""
        truth = self.truth_at(frame_tr - lag_trs, run, clock)
        if truth is None:
            return None
        return Truth(
            truth.stimulus_id,
            truth.caption,
            truth.onset_tr,
            scored=frame_tr == truth.onset_tr + lag_trs,
        )

    @staticmethod
    def _span(
        event: _Event, run_tr: float | None, clock: FrameClock | None, speed: float
    ) -> tuple[int, int] | None:
        """(onset TR, TRs on screen) of an event, or None if it cannot be placed."""
        if event.onset_s is not None and run_tr is not None:
            onset_tr = round(event.onset_s / run_tr)
            n_trs = max(1, round(event.duration_s / run_tr)) if event.duration_s else 1
            return onset_tr, n_trs
        if clock is not None:
            onset_tr = clock.tr_at(event.stamp)
            acq_tr = clock.interval_s * speed  # duration is in acquisition seconds
            n_trs = max(1, round(event.duration_s / acq_tr)) if event.duration_s else 1
            return onset_tr, n_trs
        return None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _positive(value: Any) -> bool:
    return _number(value) and value > 0
