"""Which trial each TR belongs to, from marker events and volume timestamps (no I/O).

A marker (a stimulus event) and the volumes are stamped on one clock (LSL).
A trial's onset TR is the TR whose volume timestamp is nearest the marker's;
markers may arrive just before or just after that volume.

At TR ``t`` the current trial is the earliest one whose estimate window has
begun (``onset + lag - (n_window - 1) <= t``) and is not complete yet
(``t <= onset + lag``); when none is in progress, the last begun trial is
held. So every trial is shown up to and including its complete estimate,
even when windows are longer than the time between trials.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Trial:
    index: int
    onset_tr: int
    event: dict[str, Any]

    @property
    def stimulus_id(self) -> int | None:
        sid = self.event.get("stimulus_id")
        return None if sid is None else int(sid)


class TrialTracker:
    """Feed ``add_volume(tr, t)`` and ``add_marker(event, t)``; ask ``current(tr)``.

    Args:
        interval: seconds between volumes on the wire (``tr / speed``).
        lag: the decoder's lag in TRs; ``n_window``: its HRF window length.
    """

    def __init__(self, interval: float, lag: int, n_window: int, history: int = 64):
        self.interval = interval
        self.lag = lag
        self.first_tr_offset = lag - (n_window - 1)  # the window begins this many TRs after onset
        self._volumes: deque[tuple[int, float]] = deque(maxlen=history)
        self._pending: list[tuple[dict[str, Any], float]] = []
        self.trials: list[Trial] = []

    @staticmethod
    def is_trial_event(event: dict[str, Any]) -> bool:
        return event.get("type", "event") == "event" and "stimulus_id" in event

    def add_marker(self, event: dict[str, Any], timestamp: float) -> None:
        if not self.is_trial_event(event):
            return
        self._pending.append((event, timestamp))
        self._assign()

    def add_volume(self, tr: int, timestamp: float) -> None:
        self._volumes.append((tr, timestamp))
        self._assign()

    def _assign(self) -> None:
        if not self._volumes:
            return
        newest = self._volumes[-1][1]
        still = []
        for event, t in self._pending:
            if t > newest + self.interval / 2:  # its volume has not arrived yet
                still.append((event, t))
                continue
            onset = min(self._volumes, key=lambda v: abs(v[1] - t))[0]
            self.trials.append(Trial(len(self.trials), onset, event))
        self._pending = still

    def current(self, tr: int) -> Trial | None:
        """The trial to estimate at TR ``tr`` (see the module docstring), or None."""
        begun = [t for t in self.trials if t.onset_tr + self.first_tr_offset <= tr]
        in_progress = [t for t in begun if tr <= t.onset_tr + self.lag]
        if in_progress:
            return in_progress[0]
        return begun[-1] if begun else None
