"""The runs of a session as the console sees them: which run is current, which of the session
it is, when a new one began, and which of its TRs were never decoded.

Pure, like :mod:`rt_recon.display.state`, which feeds it: the decoder's heartbeats (its
``run``, ``series`` and ``runs`` counters) and the frames (their ``run``, ``tr`` and
``missed_before``), each with the time it was received (``now``, a monotonic clock).

**A new run** begins when the decoder says another ``run``, or the same ``run`` again with its
``runs`` counter up (a run on the same id: another grid), or a frame comes of a run the
console does not know. A decoder restarted after a crash (a new pid) counts its runs from 1
again: that alone begins nothing. The first run the console sees is no news; every later one
is announced (:meth:`RunTracker.new_series_alert`).

**Missed TRs** are counted per run from the frames, not from the decoder's counter: a frame of
TR ``t`` with ``missed_before`` ``k`` says TRs ``t - k`` .. ``t - 1`` never reached the
decoder, and a TR this console saw a frame of was decoded, whatever a later frame claims. So
a decoder restarted after a crash, which reports every index before the first it sees as
missed, is not counted twice: frames 0..9, then a restarted decoder's frame 15 with
``missed_before`` 15, leave TRs 10..14 missed, not 0..14.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rt_recon.display.messages import Alert
from rt_recon.protocol import FrameHeader

log = logging.getLogger(__name__)

#: The new-series banner stays at least this long (s) ...
NEW_SERIES_MIN_S = 10.0
#: ... and until this many pictures of the new run arrived ...
NEW_SERIES_FRAMES = 10
#: ... but never longer than this (s): a run that brings no picture (refused, stalled) too.
NEW_SERIES_MAX_S = 30.0

#: Runs whose TRs are kept (older ones count in the totals only).
RUNS_KEPT = 32

#: Ranges of missed TRs named in the banner (the last ones).
RANGES_SHOWN = 3


@dataclass
class RunRecord:
    """One run as the console saw it."""

    run: str
    number: int  # which run of the session (1-based, as far as this console knows)
    began: float  # monotonic time the console noticed it
    announce: bool  # a run before it was seen: its beginning is news
    series: str | None = None
    decoder_runs: int | None = None  # the decoder's ``runs`` counter while on it
    frames: int = 0
    seen: set[int] = field(default_factory=set)  # TRs with a frame
    claimed: set[int] = field(default_factory=set)  # TRs the frames said were missed

    @property
    def missing(self) -> list[int]:
        """TRs never decoded: claimed missed by a frame, and no frame of them seen."""
        return sorted(self.claimed - self.seen)


class RunTracker:
    """The session's runs (see the module doc)."""

    def __init__(self) -> None:
        self.records: list[RunRecord] = []
        self._missed_dropped = 0  # missed TRs of runs no longer kept
        self._decoder_pid: int | None = None

    @property
    def current(self) -> RunRecord | None:
        return self.records[-1] if self.records else None

    @property
    def runs(self) -> int:
        """Runs so far (the current run's number); 0 before the first."""
        current = self.current
        return current.number if current is not None else 0

    @property
    def missed_total(self) -> int:
        """TRs never decoded, over every run (see the module doc)."""
        return self._missed_dropped + sum(len(r.missing) for r in self.records)

    # ------------------------------------------------------------------ updates

    def on_decoder(self, counters: Mapping[str, Any], pid: int, now: float) -> None:
        """A decoder heartbeat's (checked) counters."""
        run, runs = counters.get("run"), counters.get("runs")
        restarted = self._decoder_pid is not None and pid != self._decoder_pid
        self._decoder_pid = pid
        if not isinstance(run, str):
            return  # no run yet
        runs = runs if isinstance(runs, int) else None
        series = counters.get("series")
        current = self.current
        if current is not None and run != current.run and self._stale(run, runs, restarted):
            return
        if current is None or run != current.run:
            record = self._begin(run, now, runs)
        elif current.decoder_runs is None or restarted or runs is None:
            record = current  # the decoder on the run a frame began, or restarted on it
        elif runs > current.decoder_runs:
            record = self._begin(run, now, runs)  # the same run id again: a new run
        else:
            record = current
        record.decoder_runs = runs
        if isinstance(series, str) and series:
            record.series = series

    def _stale(self, run: str, runs: int | None, restarted: bool) -> bool:
        """A heartbeat sent before the run a frame began (heartbeats and frames come on
        different sockets): the run before, as the same decoder counted it then."""
        if restarted or runs is None or len(self.records) < 2:
            return False
        before = self.records[-2]
        return before.run == run and before.decoder_runs == runs

    def on_frame(self, header: FrameHeader, now: float) -> RunRecord:
        """A frame: its TR seen, the TRs before it it says were missed."""
        record = self._record_of_frame(header.run, now)
        record.frames += 1
        record.seen.add(header.tr)
        if header.missed_before:
            record.claimed.update(range(max(header.tr - header.missed_before, 0), header.tr))
        return record

    def _record_of_frame(self, run: str, now: float) -> RunRecord:
        """The run a frame belongs to: the newest of the last two runs with its id (a late
        frame of the run before the current one), else a new run."""
        for record in reversed(self.records[-2:]):
            if record.run == run:
                return record
        return self._begin(run, now, None)

    def _begin(self, run: str, now: float, decoder_runs: int | None) -> RunRecord:
        previous = self.current
        number = previous.number + 1 if previous is not None else max(decoder_runs or 1, 1)
        record = RunRecord(run=run, number=number, began=now, announce=previous is not None)
        self.records.append(record)
        if len(self.records) > RUNS_KEPT:
            self._missed_dropped += len(self.records.pop(0).missing)
        if previous is not None:
            log.info("run %s began (run %d of the session)", run, number)
        return record

    # ------------------------------------------------------------------ alerts

    def new_series_alert(self, now: float, description: str | None = None) -> Alert | None:
        """The banner of a run that began after another: shown for at least
        :data:`NEW_SERIES_MIN_S` and until :data:`NEW_SERIES_FRAMES` pictures of it arrived,
        never longer than :data:`NEW_SERIES_MAX_S`."""
        record = self.current
        if record is None or not record.announce:
            return None
        age = now - record.began
        settled = age > NEW_SERIES_MIN_S and record.frames >= NEW_SERIES_FRAMES
        if settled or age > NEW_SERIES_MAX_S:
            return None
        what = f"series {record.series}" if record.series else f"run {record.run}"
        if description:
            what += f" ({description})"
        text = f"new {what}: run {record.number} of the session began; TRs count from 0 again"
        return Alert(kind="new_series", text=text)

    def missed_alert(self) -> Alert | None:
        """The current run's TRs never decoded, the last ranges named."""
        record = self.current
        if record is None:
            return None
        missing = record.missing
        if not missing:
            return None
        n = len(missing)
        ranges = tr_ranges(missing)
        shown = ", ".join(ranges[-RANGES_SHOWN:])
        if len(ranges) > RANGES_SHOWN:
            shown = "…, " + shown
        trs = "TRs" if n > 1 else "TR"
        text = f"missed: {n} {trs} never decoded in run {record.run} ({trs} {shown})"
        return Alert(kind="missed", text=text)


def tr_ranges(trs: list[int]) -> list[str]:
    """Sorted TRs as ranges: ``[3, 4, 5, 9]`` → ``["3-5", "9"]``."""
    out: list[str] = []
    start = prev = None
    for tr in trs:
        if prev is not None and tr == prev + 1:
            prev = tr
            continue
        if start is not None:
            out.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = tr
    if start is not None:
        out.append(str(start) if start == prev else f"{start}-{prev}")
    return out
