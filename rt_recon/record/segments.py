"""A session recorded in segments: one HDF5 file per segment, read back as one session.

One recording file holds one volume grid (SWMR fixes every dataset's shape
when the file is created), and a recording is never overwritten. So a
session is recorded as a sequence of **segments**, each its own file:

* segment 1 is the configured path, e.g. ``out/recording.h5``;
* segment ``n`` >= 2 lies next to it as ``out/recording.seg-NN.h5``
  (``NN`` two digits or more: ``recording.seg-02.h5``, ``recording.seg-03.h5``,
  ..., ``recording.seg-100.h5``).

The recorder begins a new segment when it starts and finds the session's
last segment there (a restart after a crash: the files before are left as
they are) and when a run on another grid than the current segment's begins.
Each segment's ``segment`` attribute says which it is and why it began::

    {"number": 2, "reason": "recorder restart", "first": "recording.h5"}

``reason`` is one of :data:`REASONS`. :func:`session_segments` lists a
session's segments in order from the first path, and :class:`SessionReader`
reads them as one session: markers, latents, frames and status concatenated
in segment order, volumes per segment (each segment has its own grid).
"""

from __future__ import annotations

import logging
import re
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from rt_recon.errors import DataError
from rt_recon.record.recording import RecordingReader

log = logging.getLogger(__name__)

#: Why a segment began: the recorder's start, its restart after a crash, a run on another grid.
REASONS = ("start", "recorder restart", "new grid")
_GROUPS = ("volumes", "markers", "latents", "frames", "status")


def segment_path(first: str | Path, number: int) -> Path:
    """The path of segment ``number`` (1 is ``first`` itself) of the session at ``first``."""
    first = Path(first)
    if number < 1:
        raise ValueError(f"segment numbers start at 1, found {number}")
    if number == 1:
        return first
    return first.with_name(f"{first.stem}.seg-{number:02d}{first.suffix}")


def _numbered(first: Path) -> dict[int, Path]:
    """Segments 2, 3, ... of the session at ``first`` that exist, by number."""
    pattern = re.compile(rf"{re.escape(first.stem)}\.seg-(\d{{2,}}){re.escape(first.suffix)}")
    found: dict[int, Path] = {}
    if first.parent.is_dir():
        for path in first.parent.iterdir():
            match = pattern.fullmatch(path.name)
            if match and int(match.group(1)) >= 2 and path.is_file():
                found[int(match.group(1))] = path
    return found


def next_segment(first: str | Path) -> tuple[int, Path]:
    """The number and path of the segment to write next: 1 when nothing of the session is
    there, else one past the last that exists (never a file that exists)."""
    first = Path(first)
    numbers = set(_numbered(first)) | ({1} if first.exists() else set())
    number = max(numbers, default=0) + 1
    return number, segment_path(first, number)


def session_segments(first: str | Path) -> list[Path]:
    """The session's segment files in order, from the first path.

    A DataError when the first is missing, or when a segment between the first
    and the last is (a gap: a file was moved away or deleted).
    """
    first = Path(first)
    if not first.is_file():
        raise DataError(f"recording not found: {first}")
    numbered = _numbered(first)
    missing = [n for n in range(2, max(numbered, default=1) + 1) if n not in numbered]
    if missing:
        raise DataError(
            f"{first}: the session's segments are incomplete: segment(s) "
            f"{', '.join(segment_path(first, n).name for n in missing)} missing, but "
            f"{segment_path(first, max(numbered)).name} is there"
        )
    return [first, *(numbered[n] for n in sorted(numbered))]


class SessionReader:
    """The segments of the session at ``first``, read as one session (see the module doc).

    :attr:`segments` holds one :class:`~rt_recon.record.recording.RecordingReader`
    per segment, in order; :attr:`paths` their files.
    """

    def __init__(self, first: str | Path):
        self.path = Path(first)
        self.paths = session_segments(first)
        with ExitStack() as opened:
            self.segments = [opened.enter_context(RecordingReader(p)) for p in self.paths]
            opened.pop_all()

    def attr(self, key: str) -> Any:
        """Attribute ``key`` of the first segment (config, bundle model)."""
        return self.segments[0].attr(key)

    def count(self, group: str) -> int:
        """Complete entries of ``group`` over every segment."""
        return sum(segment.count(group) for segment in self.segments)

    def volumes(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(values, timestamps)`` per segment, in segment order (grids may differ)."""
        return [segment.volumes() for segment in self.segments]

    def markers(self) -> list[tuple[dict, float]]:
        return [m for segment in self.segments for m in segment.markers()]

    def latents(self) -> tuple[list[dict], np.ndarray, np.ndarray]:
        parts = [segment.latents() for segment in self.segments]
        headers = [h for part in parts for h in part[0]]
        return headers, _joined([p[1] for p in parts]), _joined([p[2] for p in parts])

    def latents_headers(self) -> list[dict]:
        """The latents' headers of every segment, in order (without the arrays)."""
        return [h for segment in self.segments for h in segment.latents_headers()]

    def frames(self) -> tuple[list[dict], np.ndarray]:
        parts = [segment.frames() for segment in self.segments]
        return [h for part in parts for h in part[0]], _joined([p[1] for p in parts])

    def status(self) -> list[dict]:
        return [s for segment in self.segments for s in segment.status()]

    def close(self) -> None:
        for segment in self.segments:
            segment.close()

    def __enter__(self) -> SessionReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _joined(arrays: list[np.ndarray]) -> np.ndarray:
    """Arrays of the same entry shape (latents and frames: from the bundle) end to end."""
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"segments hold entries of different shapes {sorted(shapes)}")
    return np.concatenate(arrays)
