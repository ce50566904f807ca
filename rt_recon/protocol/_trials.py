"""The trial rule, in one place: which markers are trials, their onset TR, and the TR that
scores them.

Fitting (:mod:`rt_recon.decode.fit`), the decoder's online trial tracker
(:mod:`rt_recon.decode.trial_tracker`), the console's timeline
(:mod:`rt_recon.display.timeline`) and the scoring of a recording
(:mod:`rt_recon.evaluate.session_eval`) all call these functions, so they
cannot disagree about which picture a frame shows.

1. **A trial** is a marker whose ``type`` is ``"event"`` or absent and that
   carries a ``stimulus_id`` (:func:`is_trial_event`).
2. **Its onset TR** is the TR whose volume was stamped nearest the marker's
   time, on one clock; a marker exactly halfway between two volumes goes to
   the later one (:func:`onset_tr`). Live, both stamps are LSL times. Fitting
   a run from its ``events.tsv`` uses the same rule on the run's own
   timeline, where volume ``t`` starts at ``t * tr_s`` and the marker at its
   ``onset`` (:func:`onset_tr_from_seconds`). Where only some volumes'
   stamps are known (the console sees the frames it was sent), the onset is
   counted from the nearest known volume in sample intervals.
3. **Its window**: the decoder's estimate of a trial is the HRF-weighted sum
   of the ``n_window`` TRs ending ``lag_trs`` after the onset; it is complete
   at ``onset + lag_trs``, the TR at which a trial is fitted and scored
   (:class:`TrialWindow`).

A marker's ``duration`` spans ``max(1, round(duration / tr_s))`` TRs on screen
(:func:`span_trs`), rounding halves up as in 2.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rt_recon.errors import DataError
from rt_recon.protocol._markers import EVENT, Marker


def is_trial_event(marker: Marker | Mapping[str, Any]) -> bool:
    """Rule 1: ``type`` ``"event"`` or absent, and a ``stimulus_id``."""
    if isinstance(marker, Marker):
        return marker.type == EVENT and marker.stimulus_id is not None
    return marker.get("type", EVENT) == EVENT and marker.get("stimulus_id") is not None


def is_scored_tr(header: Mapping[str, Any]) -> bool:
    """Rule 3 on a per-TR message: whether a ``latents`` or ``frame`` header (as sent, a
    mapping) is its trial's scored TR, ``trial.onset_tr + lag_trs``: the one TR whose frame
    the trial is scored on (a TR without a trial, continuous mode, is none)."""
    trial = header.get("trial")
    if not isinstance(trial, Mapping) or "onset_tr" not in trial:
        return False
    return header.get("tr") == trial["onset_tr"] + header.get("lag_trs", 0)


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def onset_tr(
    stamp: float,
    trs: Sequence[int],
    stamps: Sequence[float],
    interval_s: float | None = None,
) -> int:
    """Rule 2: the TR whose volume stamp is nearest ``stamp`` (ties: the later TR).

    Args:
        stamp: the marker's time (seconds, the volumes' clock).
        trs: TR indices of the volumes known, in increasing order.
        stamps: their stamps (seconds), increasing.
        interval_s: seconds between volumes, for a caller that knows only some
            volumes (the console knows the frames it got). Given, a marker between the
            known volumes of two consecutive TRs still goes to the nearer of them;
            elsewhere (a gap in the known TRs, or past either end) the onset is counted
            from the nearest known volume in whole intervals, halves up. None: the
            nearest known volume itself.
    """
    if len(trs) == 0 or len(trs) != len(stamps):
        raise DataError(
            f"onset_tr needs one stamp per known TR and at least one, found {len(trs)} TRs "
            f"and {len(stamps)} stamps"
        )
    i = bisect_left(stamps, stamp)
    if i == len(stamps) or (i > 0 and stamp - stamps[i - 1] < stamps[i] - stamp):
        i -= 1  # the earlier volume is strictly nearer
    nearest_tr, nearest_stamp = int(trs[i]), float(stamps[i])
    j = bisect_left(stamps, stamp)
    between_consecutive = 0 < j < len(trs) and trs[j] - trs[j - 1] == 1
    if interval_s is None or between_consecutive:
        return nearest_tr
    if interval_s <= 0:
        raise DataError(f"interval_s must be positive, found {interval_s}")
    return nearest_tr + _round_half_up((stamp - nearest_stamp) / interval_s)


def onset_tr_from_seconds(onset_s: float, tr_s: float) -> int:
    """Rule 2 on a run's own timeline (volume ``t`` at ``t * tr_s``): ``round(onset_s / tr_s)``,
    halves up."""
    if tr_s <= 0:
        raise DataError(f"tr_s must be positive, found {tr_s}")
    return _round_half_up(onset_s / tr_s)


def span_trs(duration_s: float | None, tr_s: float) -> int:
    """TRs a stimulus of ``duration_s`` seconds stays on screen: at least one."""
    if not duration_s:
        return 1
    return max(1, _round_half_up(duration_s / tr_s))


@dataclass(frozen=True)
class TrialWindow:
    """Rule 3: the TRs whose volumes make a trial's estimate.

    Attributes:
        lag_trs: TRs from a trial's onset to the TR at which its estimate is complete.
        n_window: volumes in the HRF window.
    """

    lag_trs: int
    n_window: int

    def __post_init__(self) -> None:
        if self.lag_trs < 0 or self.n_window < 1:
            raise DataError(
                f"a trial window needs lag_trs >= 0 and n_window >= 1, found "
                f"{self.lag_trs} and {self.n_window}"
            )

    def scored_tr(self, onset: int) -> int:
        """The TR at which the estimate of a trial with onset TR ``onset`` is complete:
        the TR it is fitted on and scored at."""
        return onset + self.lag_trs

    def first_tr(self, onset: int) -> int:
        """The first TR whose volume enters that estimate."""
        return onset + self.lag_trs - (self.n_window - 1)

    def trs(self, onset: int) -> list[int]:
        """The window's TRs, ``[onset + lag - m for m in range(n_window)]``: weight ``m``
        of the HRF window applies to TR ``onset + lag - m``."""
        return [onset + self.lag_trs - m for m in range(self.n_window)]


def trial_samples(
    events: Iterable[Marker | Mapping[str, Any]], n_trs: int, tr_s: float, lag_trs: int
) -> list[tuple[int, int]]:
    """``(scored TR, stimulus_id)`` per trial of a run's events (onsets in run seconds).

    Trials whose scored TR falls beyond the run's ``n_trs`` are left out.
    """
    window = TrialWindow(lag_trs, 1)
    samples = []
    for event in events:
        marker = event if isinstance(event, Marker) else Marker.from_json(event)
        if not is_trial_event(marker):
            continue
        if marker.onset is None:
            raise DataError(f"trial event {marker.to_json()} has no onset (seconds from run start)")
        t = window.scored_tr(onset_tr_from_seconds(marker.onset, tr_s))
        if t < n_trs:
            samples.append((t, int(marker.stimulus_id)))  # type: ignore[arg-type]
    return samples
