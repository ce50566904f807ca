"""One classic DICOM per slice (GE's real-time export), stacked into volumes.

Geometry follows the DICOM standard (PS3.3 C.7.6.2.1.1): a pixel at row
``r``, column ``c`` of a slice lies at ``IPP + c * dc * X + r * dr * Y``
(LPS+ mm), where ``X, Y`` are the two ImageOrientationPatient vectors and
``(dr, dc)`` the PixelSpacing. A volume's voxel ``(i, j, k)`` is column
``i``, row ``j`` of the ``k``-th slice counted along the slice normal
``X x Y``; the third affine column is the step between neighbouring slice
positions, so the affine holds whatever order the scanner numbered them in.

Which volume a slice belongs to: TemporalPositionIdentifier where present;
else for GE ``(InstanceNumber - 1) // slices_per_volume + 1`` (GE numbers
slices through the run); else AcquisitionNumber.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from rt_recon.acquire.dicom import (
    acquisition_time,
    pixel_array,
    repetition_time_s,
    series_identity,
)
from rt_recon.acquire.volume import LPS_TO_RAS, Volume
from rt_recon.errors import DataError

log = logging.getLogger(__name__)

#: Tags that may hold the number of slices per volume, in order of trust.
_SLICE_COUNT_TAGS = (
    (0x0020, 0x1002),  # ImagesInAcquisition
    (0x0021, 0x104F),  # GE LocationsInAcquisition
    (0x0043, 0x1079),  # GE SlicesPerVolume (fMRI)
    (0x2001, 0x1018),  # Philips NumberOfSlicesMR
)

#: Positions closer than this (mm) along the normal are the same slice.
_SAME_POSITION_MM = 1e-3


@dataclass(frozen=True, eq=False)
class SliceImage:
    """One slice: ``pixels (columns, rows)`` and where it lies.

    ``position`` is ImagePositionPatient (LPS+ mm, centre of the first
    pixel); ``row_dir``/``col_dir`` the unit vectors along a row (increasing
    column index) and down a column; ``spacing`` (column step, row step) mm.
    """

    pixels: np.ndarray
    position: np.ndarray
    row_dir: np.ndarray
    col_dir: np.ndarray
    spacing: tuple[float, float]
    volume_index: int
    n_slices: int
    series: str
    series_label: str
    scanner_time: float | None
    date: str | None
    tr_s: float | None
    source: Path

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_dir, self.col_dir)


def _slice_count(ds: pydicom.Dataset, path: Path, override: int | None) -> int:
    if override:
        return int(override)
    for tag in _SLICE_COUNT_TAGS:
        element = ds.get(tag)
        if element is not None and element.value not in (None, "", b""):
            try:
                value = int(element.value)
            except (TypeError, ValueError):
                continue
            if value > 0:
                return value
    raise DataError(
        f"{path.name}: a single-slice DICOM without ImagesInAcquisition (0020,1002) or a "
        "vendor slice count; pass the number of slices per volume (--slices)"
    )


def _volume_index(ds: pydicom.Dataset, path: Path, n_slices: int) -> int:
    temporal = ds.get("TemporalPositionIdentifier")
    if temporal not in (None, ""):
        return int(temporal)
    instance = ds.get("InstanceNumber")
    is_ge = "GE" in str(ds.get("Manufacturer", "")).upper()
    if is_ge and instance not in (None, ""):
        return (int(instance) - 1) // n_slices + 1
    acquisition = ds.get("AcquisitionNumber")
    if acquisition not in (None, ""):
        return int(acquisition)
    if instance not in (None, ""):
        return (int(instance) - 1) // n_slices + 1
    raise DataError(
        f"{path.name}: cannot tell which volume this slice belongs to "
        "(no TemporalPositionIdentifier, AcquisitionNumber or InstanceNumber)"
    )


def read_slice(ds: pydicom.Dataset, path: Path, slices_per_volume: int | None = None) -> SliceImage:
    """One slice file (``ds`` read in full) -> :class:`SliceImage`."""
    for key in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        if key not in ds:
            raise DataError(f"{path.name}: a slice without {key}; cannot place it in space")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise DataError(f"{path.name}: expected one slice per file, found {frames} frames")
    orientation = np.asarray([float(v) for v in ds.ImageOrientationPatient])
    if orientation.shape != (6,):
        raise DataError(
            f"{path.name}: ImageOrientationPatient needs 6 numbers, found {orientation}"
        )
    row_dir, col_dir = orientation[:3], orientation[3:]
    n_slices = _slice_count(ds, path, slices_per_volume)
    series, label = series_identity(ds, path)
    date, seconds = acquisition_time(ds)
    spacing = [float(v) for v in ds.PixelSpacing]  # (row spacing, column spacing)
    return SliceImage(
        pixels=np.asarray(pixel_array(ds, path)).T,
        position=np.asarray([float(v) for v in ds.ImagePositionPatient]),
        row_dir=row_dir,
        col_dir=col_dir,
        spacing=(spacing[1], spacing[0]),
        volume_index=_volume_index(ds, path, n_slices),
        n_slices=n_slices,
        series=series,
        series_label=label,
        scanner_time=seconds,
        date=date,
        tr_s=repetition_time_s(ds),
        source=path,
    )


def stack_slices(slices: list[SliceImage]) -> Volume:
    """Slices of one volume (any order) -> a :class:`Volume` ordered along the slice normal."""
    if not slices:
        raise DataError("stack_slices(): no slices")
    first = slices[0]
    for s in slices[1:]:
        if s.pixels.shape != first.pixels.shape or not np.allclose(
            np.r_[s.row_dir, s.col_dir], np.r_[first.row_dir, first.col_dir], atol=1e-4
        ):
            raise DataError(
                f"{s.source.name}: slice shape/orientation {s.pixels.shape} differs from "
                f"{first.source.name} {first.pixels.shape} in the same volume"
            )
    normal = first.normal
    ordered = sorted(slices, key=lambda s: float(s.position @ normal))
    distances = np.array([float(s.position @ normal) for s in ordered])
    if len(ordered) > 1 and np.min(np.diff(distances)) < _SAME_POSITION_MM:
        k = int(np.argmin(np.diff(distances)))
        raise DataError(
            f"volume {first.volume_index}: slices {ordered[k].source.name} and "
            f"{ordered[k + 1].source.name} lie at the same position"
        )
    if len(ordered) > 1:
        step = (ordered[-1].position - ordered[0].position) / (len(ordered) - 1)
        gaps = np.diff(distances)
        if np.ptp(gaps) > 0.01 * max(abs(float(np.mean(gaps))), 1e-6) + 1e-3:
            log.warning(
                "volume %d: uneven slice spacing (%.3f..%.3f mm); using the mean step",
                first.volume_index,
                float(gaps.min()),
                float(gaps.max()),
            )
    else:
        step = normal  # one slice: a unit step along the normal
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = first.row_dir * first.spacing[0]
    affine_lps[:3, 1] = first.col_dir * first.spacing[1]
    affine_lps[:3, 2] = step
    affine_lps[:3, 3] = ordered[0].position
    data = np.stack([s.pixels for s in ordered], axis=2)
    times = [s.scanner_time for s in ordered if s.scanner_time is not None]
    return Volume.from_native(
        data,
        LPS_TO_RAS @ affine_lps,
        index=first.volume_index,
        series=first.series,
        series_label=first.series_label,
        scanner_time=min(times) if times else None,
        date=first.date,
        tr_s=first.tr_s,
        sources=tuple(s.source for s in ordered),
    )


class SliceStacker:
    """Collects slices as they arrive and hands out each volume once all its slices are in.

    Pure bookkeeping, no I/O: ``add(slice)`` returns the finished volume (or
    None). A volume still incomplete when ``max_open`` later volumes of its
    series have started is given up and reported by :meth:`add` raising
    nothing but logging; the sequencer then reports it missing.
    """

    def __init__(self, max_open: int = 3):
        self.max_open = max_open
        self._open: OrderedDict[tuple[str, int], dict[float, SliceImage]] = OrderedDict()
        self._done: set[tuple[str, int]] = set()
        self.duplicates: list[Path] = []  # slice files of a volume already handed out
        self.abandoned: list[tuple[str, int, int, int]] = []  # series, index, have, need

    def add(self, image: SliceImage) -> Volume | None:
        key = (image.series, image.volume_index)
        if key in self._done:
            self.duplicates.append(image.source)
            log.warning(
                "%s: a slice of volume %d, which is already complete; ignored",
                image.source.name,
                image.volume_index,
            )
            return None
        bucket = self._open.setdefault(key, {})
        position = round(float(image.position @ image.normal), 3)
        if position in bucket:
            log.warning(
                "%s: duplicate slice at %.3f mm of volume %d (already from %s); ignored",
                image.source.name,
                position,
                image.volume_index,
                bucket[position].source.name,
            )
            return None
        bucket[position] = image
        if len(bucket) >= image.n_slices:
            del self._open[key]
            self._done.add(key)
            return stack_slices(list(bucket.values()))
        self._abandon_stale(image.series)
        return None

    def _abandon_stale(self, series: str) -> None:
        keys = [k for k in self._open if k[0] == series]
        while len(keys) > self.max_open:
            stale = min(keys, key=lambda k: k[1])
            bucket = self._open.pop(stale)
            self._done.add(stale)
            need = next(iter(bucket.values())).n_slices
            self.abandoned.append((stale[0], stale[1], len(bucket), need))
            log.error(
                "volume %d of series %s: only %d of %d slices arrived; given up",
                stale[1],
                next(iter(bucket.values())).series_label,
                len(bucket),
                need,
            )
            keys.remove(stale)

    def pending_summary(self) -> list[tuple[Path, int, int, int]]:
        """(first slice file, volume index, slices so far, slices needed) of unfinished volumes."""
        out = []
        for (_, index), bucket in self._open.items():
            first = next(iter(bucket.values()))
            out.append((first.source, index, len(bucket), first.n_slices))
        return out
