"""A recorded series on disk (any supported format) read whole, in acquisition order.

This is what ``rt-recon convert`` writes and ``rt-recon simulate replay``
streams: the same files, read by the same readers
(:func:`rt_recon.acquire.formats.read_file`), stacked by the same
:class:`~rt_recon.acquire.slices.SliceStacker`, in the same canonical RAS+
orientation as the bridge streams them. Volumes are sorted by their
acquisition number; a duplicate keeps the first file (in name order), a gap
is reported as missing and skipped, an unreadable file is reported and
skipped: exactly what the bridge does with the same folder.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rt_recon.acquire._incomplete import IncompleteFileError
from rt_recon.acquire.formats import DEFAULT_READ, ReadOptions, classify, read_file, unit_key
from rt_recon.acquire.nifti import RecordedRun
from rt_recon.acquire.slices import SliceImage, SliceStacker
from rt_recon.acquire.volume import Volume
from rt_recon.errors import DataError

log = logging.getLogger(__name__)

#: Affines of volumes in one series may differ by this much (mm) before a warning.
AFFINE_TOLERANCE_MM = 1e-3


@dataclass
class Series:
    """One series' volumes in acquisition order.

    Attributes:
        volumes: unique volumes sorted by ``index``, all of one shape.
        tr_s: repetition time in seconds.
        missing: acquisition numbers absent between the first and last volume.
        duplicates: files whose volume was already read from an earlier file.
        unreadable: ``(file, reason)`` for files that could not be read.
    """

    volumes: list[Volume]
    tr_s: float
    missing: list[int] = field(default_factory=list)
    duplicates: list[Path] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.volumes[0].shape

    @property
    def affine(self) -> np.ndarray:
        return self.volumes[0].affine

    @property
    def label(self) -> str:
        return self.volumes[0].series_label

    @property
    def indices(self) -> list[int]:
        return [v.index for v in self.volumes]

    def times(self) -> np.ndarray | None:
        """Acquisition times in seconds from the first volume, or None if any is unknown."""
        stamps = [v.scanner_time for v in self.volumes]
        if any(t is None for t in stamps):
            return None
        t = np.asarray(stamps, dtype=np.float64)
        t = np.where(t < t[0] - 43200, t + 86400, t)  # a run across midnight
        return t - t[0]

    def data(self) -> np.ndarray:
        """``(x, y, z, t)`` array of every volume, in the volumes' common dtype."""
        return np.stack([v.data for v in self.volumes], axis=-1)

    def to_run(self, events: list[dict] | None = None) -> RecordedRun:
        """As a :class:`RecordedRun` (float32 rows in stream voxel order) for replay."""
        return RecordedRun(
            volumes=np.stack([v.flat() for v in self.volumes]),
            shape=self.shape,
            affine=self.affine,
            tr_s=self.tr_s,
            events=list(events or []),
            times=self.times(),
        )


def series_files(path: Path) -> list[Path]:
    """Scanner files of a series: ``path`` itself, or the files in folder ``path`` by name."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"series not found: {path} (expected a folder of scanner files or a file)")
    files = sorted((p for p in path.iterdir() if p.is_file() and classify(p)), key=natural_key)
    if not files:
        raise DataError(
            f"{path}: no DICOM, PAR/REC or NIfTI files in this folder "
            "(expected a scanner's export of one series)"
        )
    return files


def natural_key(path: Path) -> list:
    """Sort key putting ``vol_2`` before ``vol_10`` (numbers in names compared as numbers)."""
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def read_series(
    path: str | Path, options: ReadOptions = DEFAULT_READ, series: str | None = None
) -> Series:
    """Read every volume of one series from a folder or a file.

    Args:
        path: a folder of per-volume (or per-slice) files, or one file
            (enhanced DICOM, 4D NIfTI, PAR/REC).
        options: slices per volume, Philips image type, TR override.
        series: the series label (number) to keep when the folder holds several.

    Raises:
        DataError: nothing readable, several series and none chosen, volumes of
            different shapes, or no repetition time anywhere.
    """
    files = series_files(Path(path))
    stacker = SliceStacker(max_open=1_000_000)  # offline: every volume may still complete
    by_series: dict[str, list[Volume]] = defaultdict(list)
    unreadable: list[tuple[Path, str]] = []
    duplicates: list[Path] = []
    done_units: set[Path] = set()
    for file in files:
        unit = unit_key(file)
        if unit in done_units:
            continue
        done_units.add(unit)
        try:
            items = read_file(file, options)
        except IncompleteFileError as exc:
            reason = exc.what or f"incomplete: {exc}"  # offline: nothing more will come
            unreadable.append((file, reason))
            log.error("%s", reason)
            continue
        except DataError as exc:
            unreadable.append((file, str(exc)))
            log.error("%s", exc)
            continue
        for item in items:
            volume = stacker.add(item) if isinstance(item, SliceImage) else item
            if volume is not None:
                by_series[volume.series].append(volume)
    duplicates.extend(stacker.duplicates)
    for first, index, have, need in stacker.pending_summary():
        unreadable.append((first, f"volume {index}: only {have} of {need} slices"))
    if not by_series:
        reasons = "; ".join(f"{p.name}: {r}" for p, r in unreadable[:3])
        raise DataError(f"{path}: no readable volume ({reasons})")
    chosen = _choose_series(by_series, series, path)
    volumes, more_duplicates = _unique_in_order(chosen)
    duplicates.extend(more_duplicates)
    _check_geometry(volumes)
    tr_s = _series_tr_s(volumes, options.tr_s, path)
    indices = [v.index for v in volumes]
    missing = sorted(set(range(indices[0], indices[-1] + 1)) - set(indices))
    if missing:
        log.warning("series %s: volumes %s are missing", volumes[0].series_label, missing)
    return Series(volumes, tr_s, missing, duplicates, unreadable)


def _choose_series(by_series: dict[str, list[Volume]], label: str | None, path) -> list[Volume]:
    if label is not None:
        matches = [v for v in by_series.values() if v[0].series_label == str(label)]
        if not matches:
            found = sorted({v[0].series_label for v in by_series.values()})
            raise DataError(f"{path}: no series {label!r}; found series {found}")
        return matches[0]
    if len(by_series) > 1:
        found = {v[0].series_label: len(v) for v in by_series.values()}
        raise DataError(
            f"{path}: holds {len(by_series)} series {found} (label: volumes); "
            "choose one with --series"
        )
    return next(iter(by_series.values()))


def _unique_in_order(volumes: list[Volume]) -> tuple[list[Volume], list[Path]]:
    seen: dict[int, Volume] = {}
    duplicates: list[Path] = []
    for v in volumes:  # files were read in name order: the first one wins
        if v.index in seen:
            duplicates.append(v.sources[0])
            log.warning(
                "%s: volume %d again (first from %s); ignored", v.name, v.index, seen[v.index].name
            )
            continue
        seen[v.index] = v
    return [seen[i] for i in sorted(seen)], duplicates


def _check_geometry(volumes: list[Volume]) -> None:
    first = volumes[0]
    for v in volumes[1:]:
        if v.shape != first.shape:
            raise DataError(
                f"{v.name}: volume {v.index} has shape {v.shape}, volume {first.index} "
                f"({first.name}) has {first.shape}; one series must keep one shape"
            )
        shift = float(np.abs(v.affine - first.affine).max())
        if shift > AFFINE_TOLERANCE_MM:
            log.warning(
                "%s: volume %d's affine differs from volume %d's by %.4f (prospective motion "
                "correction?); the series keeps the first volume's geometry",
                v.name,
                v.index,
                first.index,
                shift,
            )


def _series_tr_s(volumes: list[Volume], override: float | None, path) -> float:
    if override is not None:
        if override <= 0:
            raise DataError(f"the repetition time must be positive, found {override}")
        return float(override)
    values_s = {round(v.tr_s, 6) for v in volumes if v.tr_s is not None}
    if not values_s:
        raise DataError(f"{path}: no repetition time in the headers; pass --tr SECONDS")
    if len(values_s) > 1:
        log.warning("series has several repetition times %s; using the first", sorted(values_s))
    return float(next(v.tr_s for v in volumes if v.tr_s is not None))
