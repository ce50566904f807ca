"""A volume's acquisition time on the LSL clock, from the scanner's own clock.

The scanner stamps each volume (DICOM AcquisitionTime, enhanced
FrameAcquisitionDateTime, PAR dyn_scan_begin_time); the bridge PC has the
LSL clock. Three ways to map one to the other (``--clock``):

``anchored`` (default)
    ``stamp = scanner_time / speed + offset`` with ``offset`` the smallest
    ``complete - scanner_time / speed`` seen so far (``complete``: when the
    bridge found the file complete). Intervals between stamps are the
    scanner's own (exact TR spacing, gaps where volumes are missing); no
    stamp is ever later than its file's arrival; the absolute offset absorbs
    the scanner-PC clock difference plus the shortest reconstruction+export
    delay, which cannot be told apart without a shared clock.
``synced``
    The scanner and this PC share a clock (both on NTP): the scanner's
    date+time converted through this PC's wall clock. Needs the date in the
    header and ``speed == 1``; falls back to ``anchored`` (with a warning)
    where either is missing.
``arrival``
    ``stamp = complete``: when the file was found complete, nothing else.

Files without acquisition times (GE real-time DICOM, PAR dumps, NIfTI) get
``(index - first index) * TR`` on the scanner clock, so anchored stamps are
still TR-spaced.
"""

from __future__ import annotations

import logging
import time
from typing import Literal

import pylsl

from rt_recon.acquire.dicom import seconds_to_datetime
from rt_recon.acquire.volume import Volume

log = logging.getLogger(__name__)

ClockMode = Literal["anchored", "synced", "arrival"]
CLOCK_MODES: tuple[ClockMode, ...] = ("anchored", "synced", "arrival")

_HALF_DAY = 43200.0


class AcquisitionClock:
    """Stamps the volumes of one series (make a new one per series).

    Args:
        mode: see the module doc.
        tr_s: repetition time in seconds (for volumes without a scanner time).
        speed: how many times faster than real time the files arrive (1 at a
            scanner; >1 when a simulator writes a recorded series faster).
    """

    def __init__(self, mode: ClockMode = "anchored", tr_s: float = 1.0, speed: float = 1.0):
        if mode not in CLOCK_MODES:
            raise ValueError(f"clock mode must be one of {CLOCK_MODES}, found {mode!r}")
        self.mode = mode
        self.tr_s = tr_s
        self.speed = speed
        self._first: tuple[int, float, bool] | None = None  # index, scanner seconds, had time
        self._offset: float | None = None
        self._warned = False

    def scanner_seconds(self, volume: Volume) -> float:
        """The volume's acquisition start on the scanner clock (s), continuous across midnight."""
        if self._first is None:
            has = volume.scanner_time is not None
            self._first = (volume.index, volume.scanner_time if has else 0.0, has)  # type: ignore[arg-type]
        index0, seconds0, had_time = self._first
        if had_time and volume.scanner_time is not None:
            seconds = float(volume.scanner_time)
            if seconds < seconds0 - _HALF_DAY:
                seconds += 86400.0  # the run went past midnight
            return seconds
        return seconds0 + (volume.index - index0) * self.tr_s

    def stamp(self, volume: Volume, complete: float) -> float:
        """LSL timestamp of ``volume`` whose file was found complete at LSL time ``complete``."""
        if self.mode == "arrival":
            return complete
        seconds = self.scanner_seconds(volume)
        if self.mode == "synced":
            synced = self._synced(volume, seconds)
            if synced is not None:
                return synced
        offset = complete - seconds / self.speed
        if self._offset is None or offset < self._offset:
            self._offset = offset
        return seconds / self.speed + self._offset

    def _synced(self, volume: Volume, seconds: float) -> float | None:
        when = (
            seconds_to_datetime(volume.date, seconds) if volume.scanner_time is not None else None
        )
        if when is None or self.speed != 1.0:
            if not self._warned:
                log.warning(
                    "clock 'synced' needs the acquisition date and time in the header and "
                    "speed 1; using 'anchored' stamps for this series"
                )
                self._warned = True
            return None
        lsl_minus_wall = pylsl.local_clock() - time.time()
        return when.timestamp() + lsl_minus_wall
