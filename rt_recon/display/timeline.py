"""Which stimulus was on screen at each TR, from the marker stream and the frames' volumes.

Pure: markers go in with their LSL timestamps, the frames' volumes with their TR and
acquisition time (``times.acquired``, the same LSL clock), questions come back as
:class:`Truth` answers; no sockets, no clock of its own.

The rule is the protocol's trial rule (:mod:`rt_recon.protocol._trials`, docs/protocol.md
2a), called here exactly as the decoder's trial tracker
(:mod:`rt_recon.decode.trial_tracker`) and the scoring of a recording
(:mod:`rt_recon.evaluate.session_eval`) call it, so the console pairs what they pair:

* a marker is a stimulus when :func:`~rt_recon.protocol.is_trial_event` says so (``type``
  ``event`` or absent, and a ``stimulus_id``); ``run_start`` gives the run's TR and
  replay speed; anything else is ignored;
* its onset TR is :func:`~rt_recon.protocol.onset_tr` of its stamp against the volumes of
  the run the console has frames of. Between two known volumes of consecutive TRs that is
  the nearer of the two (ties: the later), what the tracker and the scoring find from
  every volume. Where the console lacks a volume (a TR without a frame, or after the
  newest frame) the protocol counts whole wire intervals from the nearest known volume;
* it stays on screen :func:`~rt_recon.protocol.span_trs` TRs (its ``duration``);
* a frame of TR ``t`` shows the decoder's estimate of the stimulus on screen at TR
  ``t - lag_trs``, and is the scored frame of that trial when ``t`` is the trial's
  :meth:`~rt_recon.protocol.TrialWindow.scored_tr`.

Markers are grouped by their ``run`` (a marker without one belongs to no run); a frame is
paired with its own run's markers, else with those of the run that sent markers last (a
stimulus program that does not know the scanner's run ids).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import asdict, dataclass, field
from typing import Any

from rt_recon.protocol import RUN_START, Marker, TrialWindow, is_trial_event, onset_tr, span_trs

#: Stimulus markers kept per run (a run has a few hundred at most).
MAX_EVENTS = 2000

#: Volumes kept per run (frames seen).
MAX_VOLUMES = 4096

#: Runs kept (markers and volumes): the current one and a few before it.
MAX_RUNS = 8


@dataclass(frozen=True)
class Truth:
    """The stimulus on screen at a TR.

    Attributes:
        stimulus_id: id in the dataset's ``stimuli/stimuli.tsv``.
        caption: the marker's caption ("" when it had none).
        onset_tr: TR index of the stimulus onset.
        scored: True for the frame the scoring takes for this trial (``onset_tr + lag_trs``).
    """

    stimulus_id: int
    caption: str
    onset_tr: int
    scored: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Markers:
    """A run's stimulus markers and what its ``run_start`` said."""

    events: deque[tuple[Marker, float]] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    tr_s: float | None = None  # acquisition TR, seconds
    speed: float = 1.0  # replay speed: seconds on the wire are tr_s / speed apart


@dataclass
class _Volumes:
    """The TRs of a run the console has frames of, and their acquisition stamps (increasing)."""

    trs: list[int] = field(default_factory=list)
    stamps: list[float] = field(default_factory=list)

    def add(self, tr: int, acquired: float) -> None:
        if self.trs and tr <= self.trs[-1]:
            if acquired <= self.stamps[-1]:
                return  # an older frame than the newest: nothing new about the run
            self.trs.clear()  # the run again, later (a looping replay): start over
            self.stamps.clear()
        elif self.stamps and acquired <= self.stamps[-1]:
            return  # a later TR stamped no later: not a volume of this timeline
        self.trs.append(tr)
        self.stamps.append(acquired)
        if len(self.trs) > MAX_VOLUMES:
            del self.trs[0], self.stamps[0]

    def onset(self, stamp: float, interval_s: float | None) -> int:
        """The protocol's onset TR of a marker stamped ``stamp`` (see the module docstring)."""
        return onset_tr(stamp, self.trs, self.stamps, interval_s)

    def interval_s(self) -> float | None:
        """Seconds per TR between the first and the newest known volume."""
        if len(self.trs) < 2:
            return None
        return (self.stamps[-1] - self.stamps[0]) / (self.trs[-1] - self.trs[0])


class StimulusTimeline:
    """Stimulus markers per run, the volumes of the frames seen, and the stimulus at a TR."""

    def __init__(self) -> None:
        self._markers: OrderedDict[str | None, _Markers] = OrderedDict()
        self._volumes: OrderedDict[str, _Volumes] = OrderedDict()
        self.last_run: str | None = None  # the run of the newest marker

    def on_marker(self, marker: Marker, stamp: float) -> None:
        """One marker and its LSL timestamp."""
        if marker.type == RUN_START:
            self._markers[marker.run] = _Markers(tr_s=marker.tr_s, speed=marker.speed or 1.0)
            self._markers.move_to_end(marker.run)
        elif is_trial_event(marker):
            if marker.run not in self._markers:
                self._markers[marker.run] = _Markers()
            self._markers[marker.run].events.append((marker, float(stamp)))
        else:
            return
        self.last_run = marker.run
        _trim(self._markers)

    def on_volume(self, run: str, tr: int, acquired: float) -> None:
        """A frame of TR ``tr`` of ``run`` whose volume was acquired at ``acquired`` (LSL s)."""
        if run not in self._volumes:
            self._volumes[run] = _Volumes()
            _trim(self._volumes)
        self._volumes[run].add(tr, float(acquired))

    def interval_s(self, run: str | None) -> float | None:
        """Seconds between volumes on the wire: the run's ``run_start`` (``tr / speed``), else
        estimated from its frames' acquisition times."""
        markers = self._markers.get(run)
        if markers is not None and markers.tr_s is not None:
            return markers.tr_s / markers.speed
        volumes = self._volumes.get(run) if run is not None else None
        return volumes.interval_s() if volumes is not None else None

    def truth_at(self, tr: int, run: str) -> Truth | None:
        """The stimulus on screen at TR ``tr`` of ``run`` (None: blank, or not known)."""
        volumes = self._volumes.get(run)
        markers = self._markers_for(run)
        if volumes is None or not volumes.trs or markers is None:
            return None
        interval_s = self.interval_s(run)
        # a duration is in acquisition seconds; without a run_start, assume no replay speed-up
        tr_s = markers.tr_s if markers.tr_s is not None else interval_s
        found: Truth | None = None
        for marker, stamp in markers.events:
            onset = volumes.onset(stamp, interval_s)
            n_trs = span_trs(marker.duration, tr_s) if tr_s is not None else 1
            if onset <= tr < onset + n_trs and (found is None or onset >= found.onset_tr):
                caption = marker.caption or ""
                found = Truth(int(marker.stimulus_id), caption, onset)  # type: ignore[arg-type]
        return found

    def truth_for_frame(self, frame_tr: int, lag_trs: int, run: str) -> Truth | None:
        """The stimulus a frame of TR ``frame_tr`` reconstructs: the one at ``frame_tr - lag``;
        scored when ``frame_tr`` is its trial's scored TR."""
        truth = self.truth_at(frame_tr - lag_trs, run)
        if truth is None:
            return None
        scored = TrialWindow(lag_trs, 1).scored_tr(truth.onset_tr) == frame_tr
        return Truth(truth.stimulus_id, truth.caption, truth.onset_tr, scored=scored)

    def _markers_for(self, run: str) -> _Markers | None:
        """``run``'s stimulus markers, else those of the run that sent markers last."""
        own = self._markers.get(run)
        if own is not None and own.events:
            return own
        return self._markers.get(self.last_run)


def _trim(runs: OrderedDict) -> None:
    while len(runs) > MAX_RUNS:
        runs.popitem(last=False)
