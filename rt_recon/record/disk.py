"""Free space where the recording is written, and how long it will last at the current rate.

A full disk is handled when a write fails (:class:`rt_recon.errors.StorageError`),
but by then the session is no longer recorded. The recorder therefore looks
ahead: it puts the free space and the minutes of recording left on every
heartbeat, and says ``disk_low`` once either falls under the configured
threshold, so the operator is warned while there is still time to act.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import deque
from pathlib import Path

log = logging.getLogger(__name__)

_MB = 1024 * 1024


class DiskWatch:
    """Samples the free space of the recording's file system and the file's growth.

    Args:
        path: the recording file (it need not exist yet; its folder must).
        low_free_mb: free space under which the disk is low.
        low_minutes: minutes of recording left (at the growth rate over the
            last ``window_s`` seconds) under which the disk is low.
        every_s: seconds between looks (statvfs and stat are cheap, but the
            heartbeat only needs one a second).
        window_s: seconds of file growth the rate is measured over.
    """

    def __init__(
        self,
        path: Path,
        *,
        low_free_mb: float,
        low_minutes: float,
        every_s: float = 1.0,
        window_s: float = 30.0,
    ):
        self.path = Path(path)
        self.low_free_mb = low_free_mb
        self.low_minutes = low_minutes
        self.every_s = every_s
        self.window_s = window_s
        self._growth: deque[tuple[float, int]] = deque()
        self._next = -float("inf")
        self._fields: dict[str, float | bool | None] = {}
        self.low = False

    def fields(self, now: float) -> dict[str, float | bool | None]:
        """Heartbeat fields: ``disk_free_mb``, ``disk_minutes_left`` (None until the
        file grows), ``disk_low``. Looked up at most every ``every_s`` seconds."""
        if now < self._next:
            return self._fields
        self._next = now + self.every_s
        try:
            free = shutil.disk_usage(self.path.parent).free
        except OSError as exc:
            log.warning("cannot read the free space of %s: %s", self.path.parent, exc)
            return self._fields
        minutes = self._minutes_left(now, free)
        low = free < self.low_free_mb * _MB or (minutes is not None and minutes < self.low_minutes)
        if low and not self.low:
            left = "" if minutes is None else f", about {minutes:.0f} min of recording left"
            log.warning(
                "the recording's disk is low: %.0f MB free at %s%s",
                free / _MB,
                self.path.parent,
                left,
            )
        self.low = low
        self._fields = {
            "disk_free_mb": round(free / _MB, 1),
            "disk_minutes_left": None if minutes is None else round(minutes, 1),
            "disk_low": low,
        }
        return self._fields

    def _minutes_left(self, now: float, free: int) -> float | None:
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            return None
        self._growth.append((now, size))
        while len(self._growth) > 2 and now - self._growth[0][0] > self.window_s:
            self._growth.popleft()
        (t0, s0), (t1, s1) = self._growth[0], self._growth[-1]
        if t1 <= t0 or s1 <= s0:
            return None
        rate = (s1 - s0) / (t1 - t0)
        return free / rate / 60.0
