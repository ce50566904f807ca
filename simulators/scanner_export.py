"""Write a recorded series into a folder at TR pace, file by file, as a scanner's export does.

The bridge can then be tested end to end as at a real scanner: the files
appear one volume per TR (all the slice files of a volume for GE, the .par
and .rec of a Philips dump), each written in chunks through one open file
handle and closed, or written under a temporary name and renamed
(``atomic=True``, as some exports do). Pacing is by target times on the LSL
clock (``t0 + (index - first) * TR / speed``), never by sleeping a TR after
each write, so lateness does not accumulate; a gap in the recording's
volume numbers is a gap in time too. The source files are copied byte for
byte.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pylsl

from rt_recon.acquire.formats import DEFAULT_READ, ReadOptions, read_file, unit_key
from rt_recon.acquire.series import series_files
from rt_recon.acquire.slices import SliceImage
from rt_recon.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WrittenFile:
    """One file the simulator wrote (times on the LSL clock, seconds)."""

    name: str
    index: int  # the volume it belongs to
    target: float  # when its volume was due
    closed_at: float  # when the file was complete on disk (closed, or renamed)


@dataclass
class ExportReport:
    written: list[WrittenFile] = field(default_factory=list)

    def lateness(self) -> np.ndarray:
        """Seconds from each volume's target time to when its first file was complete."""
        firsts: dict[int, WrittenFile] = {}
        for w in self.written:
            firsts.setdefault(w.index, w)
        return np.array([w.closed_at - w.target for w in firsts.values()])

    def closed_at(self) -> dict[int, float]:
        """Per volume index: when its last file was complete."""
        out: dict[int, float] = {}
        for w in self.written:
            out[w.index] = max(out.get(w.index, -np.inf), w.closed_at)
        return out


def export_plan(
    source: str | Path, options: ReadOptions = DEFAULT_READ
) -> tuple[list[tuple[int, list[Path]]], float | None]:
    """The files of a recorded series grouped per volume, in acquisition order, and the TR.

    Reads every file (with the bridge's readers) to learn which volume it
    belongs to. Returns ``([(volume index, [files]), ...], header TR or None)``.
    """
    groups: dict[int, list[Path]] = defaultdict(list)
    seen_units: set[Path] = set()
    tr_s = None
    for path in series_files(Path(source)):
        unit = unit_key(path)
        if unit in seen_units:
            continue
        seen_units.add(unit)
        for item in read_file(path, options):
            if isinstance(item, SliceImage):
                groups[item.volume_index].append(path)
                tr_s = tr_s or item.tr_s
            else:
                files = list(item.sources)
                groups[item.index].extend(f for f in files if f not in groups[item.index])
                tr_s = tr_s or item.tr_s
    if not groups:
        raise DataError(f"{source}: nothing to export")
    return sorted(groups.items()), tr_s


def write_export_file(
    content: bytes, dest: Path, *, atomic: bool = False, chunk_bytes: int = 64 * 1024
) -> Path:
    """Write ``content`` to ``dest`` as a scanner's export does: in chunks through one open
    handle, then closed; or (``atomic``) under the hidden name ``.NAME.tmp`` renamed to
    ``dest`` once complete."""
    target = dest.with_name("." + dest.name + ".tmp") if atomic else dest
    with target.open("wb") as fh:
        for start in range(0, len(content), chunk_bytes):
            fh.write(content[start : start + chunk_bytes])
            fh.flush()
    if atomic:
        target.replace(dest)
    return dest


def export_series(
    source: str | Path,
    dest: str | Path,
    *,
    tr_s: float | None = None,
    speed: float = 1.0,
    chunk_bytes: int = 64 * 1024,
    atomic: bool = False,
    start_delay: float = 0.5,
    stop: threading.Event | None = None,
    options: ReadOptions = DEFAULT_READ,
) -> ExportReport:
    """Write the series in ``source`` into folder ``dest`` at TR pace (divided by ``speed``).

    Args:
        source: a recorded series (folder or file) in any format the bridge reads.
        dest: the export folder to fill (created if needed).
        tr_s: repetition time in seconds (default: from the headers).
        speed: how many times faster than real time.
        chunk_bytes: write size; a scanner's export writes a file in pieces.
        atomic: write under a hidden temporary name and rename when done.
        start_delay: seconds before the first volume (a watcher may still be starting).
        stop: set to stop after the current volume.
    """
    stop = stop or threading.Event()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    plan, header_tr_s = export_plan(source, options)
    tr_s = tr_s or options.tr_s or header_tr_s
    if tr_s is None:
        raise DataError(f"{source}: no repetition time in the headers; pass --tr SECONDS")
    interval = tr_s / speed
    first = plan[0][0]
    report = ExportReport()
    t0 = pylsl.local_clock() + start_delay
    log.info("exporting %d volumes to %s every %.3f s", len(plan), dest, interval)
    for index, files in plan:
        target = t0 + (index - first) * interval
        while (remaining := target - pylsl.local_clock()) > 0:
            if stop.wait(remaining):
                log.info("export stopped before volume %d", index)
                return report
        for src in files:
            content = src.read_bytes()
            write_export_file(content, dest / src.name, atomic=atomic, chunk_bytes=chunk_bytes)
            report.written.append(WrittenFile(src.name, index, target, pylsl.local_clock()))
        if stop.is_set():
            break
    late = report.lateness() * 1000
    if len(late):
        log.info(
            "export done: %d files, lateness median %.2f ms, max %.2f ms",
            len(report.written),
            float(np.median(late)),
            float(late.max()),
        )
    return report
