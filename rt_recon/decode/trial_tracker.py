"""Which trial each TR belongs to, online, from marker events and volume timestamps (no I/O).

A marker and the volumes are stamped on one clock (LSL). Which markers are
trials and which TR is a trial's onset is the protocol's trial rule
(:func:`rt_recon.protocol.is_trial_event`, :func:`rt_recon.protocol.onset_tr`:
the volume stamped nearest the marker, ties to the later), the same rule
fitting, the console and the scoring use. A marker may arrive before or
after the volume of its onset; it is placed once a volume stamped at or
after it has arrived, so both volumes it could be nearest are known. (Waiting
only until a volume within half a sample interval had arrived placed markers
too early whenever volumes came closer together than their nominal interval:
an ``asap`` replay, or a real-time source that pushed a volume late.)

At TR ``t`` the current trial is the earliest one whose estimate window has
begun (``onset + lag - (n_window - 1) <= t``) and is not complete yet
(``t <= onset + lag``); when none is in progress, the last begun trial is
held. So every trial is shown up to and including its complete estimate,
even when windows are longer than the time between trials.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rt_recon.protocol import Marker, TrialWindow, is_trial_event, onset_tr


@dataclass(frozen=True)
class Trial:
    index: int
    onset_tr: int
    event: Marker

    @property
    def stimulus_id(self) -> int | None:
        return self.event.stimulus_id


class TrialTracker:
    """Feed ``add_volume(tr, t)`` and ``add_marker(event, t)``; ask ``current(tr)``.

    Args:
        lag: the decoder's lag in TRs; ``n_window``: its HRF window length.
        history: volumes remembered for late markers.
    """

    def __init__(self, lag: int, n_window: int, history: int = 64):
        self.window = TrialWindow(lag, n_window)
        self._volumes: deque[tuple[int, float]] = deque(maxlen=history)
        self._pending: list[tuple[Marker, float]] = []
        self.trials: list[Trial] = []

    def add_marker(self, event: Marker | Mapping[str, Any], timestamp: float) -> None:
        marker = event if isinstance(event, Marker) else Marker.from_json(event)
        if not is_trial_event(marker):
            return
        self._pending.append((marker, timestamp))
        self._assign()

    def add_volume(self, tr: int, timestamp: float) -> None:
        self._volumes.append((tr, timestamp))
        self._assign()

    def _assign(self) -> None:
        if not self._volumes:
            return
        newest = self._volumes[-1][1]
        trs = [tr for tr, _ in self._volumes]
        stamps = [t for _, t in self._volumes]
        still = []
        for marker, t in self._pending:
            if t > newest:  # the volume after it has not arrived: its nearest may be to come
                still.append((marker, t))
                continue
            self.trials.append(Trial(len(self.trials), onset_tr(t, trs, stamps), marker))
        self._pending = still

    def current(self, tr: int) -> Trial | None:
        """The trial to estimate at TR ``tr`` (see the module docstring), or None."""
        begun = [t for t in self.trials if self.window.first_tr(t.onset_tr) <= tr]
        in_progress = [t for t in begun if tr <= self.window.scored_tr(t.onset_tr)]
        if in_progress:
            return in_progress[0]
        return begun[-1] if begun else None
