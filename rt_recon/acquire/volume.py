"""One acquired volume, in the orientation every rt_recon stream uses.

Every reader (Siemens mosaic, enhanced DICOM, slice DICOM, PAR/REC, NIfTI)
returns :class:`Volume` objects built with :func:`Volume.from_native`, which
reorients the scanner's voxel order to the closest canonical RAS+ order
(``nibabel.as_closest_canonical``'s rule): the first voxel axis points as
near as possible to Right, the second to Anterior, the third to Superior.
Reorientation only permutes and flips axes (no resampling), so voxel values
are exactly those of the file; an oblique acquisition keeps its obliquity in
the affine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

from rt_recon.errors import DataError

#: Diagonal that turns DICOM's LPS+ patient coordinates into NIfTI's RAS+ (and back).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def to_canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y, z)`` data and its RAS+ affine -> the same voxels in closest canonical order.

    Returns the reoriented data (a view where numpy allows) and its affine.
    """
    ornt = io_orientation(affine)
    if np.array_equal(ornt, [[0, 1], [1, 1], [2, 1]]):
        return data, affine
    out = apply_orientation(data, ornt)
    return out, affine @ inv_ornt_aff(ornt, data.shape[:3])


def is_canonical(affine: np.ndarray) -> bool:
    """True when ``affine`` already maps voxel axes to (closest) R, A, S."""
    return bool(np.array_equal(io_orientation(affine), [[0, 1], [1, 1], [2, 1]]))


@dataclass(frozen=True, eq=False)
class Volume:
    """One volume as the bridge streams it.

    Attributes:
        data: ``(x, y, z)`` voxel values in closest canonical RAS+ order, in the
            file's own numeric type after any rescale (int16/uint16 for most
            scanners, float32/float64 where a rescale slope applies).
        affine: ``(4, 4)`` voxel -> RAS+ millimetres.
        index: acquisition number within its series, 1-based (the order the
            scanner acquired it in).
        series: identity of the series (SeriesInstanceUID, or a file stem);
            volumes of different series never share a stream.
        series_label: short human name of the series (the series number),
            used as the stream's run id.
        scanner_time: start of the volume's acquisition, seconds since
            midnight on the scanner's clock, or None where the file has none.
        date: acquisition date ``YYYYMMDD`` on the scanner's clock, or None.
        tr_s: repetition time in seconds from the header, or None if absent.
        sources: the file(s) it was read from.
    """

    data: np.ndarray
    affine: np.ndarray
    index: int
    series: str
    series_label: str
    scanner_time: float | None
    date: str | None
    tr_s: float | None
    sources: tuple[Path, ...]

    @classmethod
    def from_native(cls, data: np.ndarray, affine: np.ndarray, **fields) -> Volume:
        """Build from data in the scanner's voxel order and its RAS+ affine."""
        if data.ndim != 3:
            sources = ", ".join(p.name for p in fields.get("sources", ()))
            raise DataError(f"{sources}: a volume needs 3 axes (x, y, z), found shape {data.shape}")
        canonical, canonical_affine = to_canonical(data, np.asarray(affine, dtype=np.float64))
        return cls(data=np.ascontiguousarray(canonical), affine=canonical_affine, **fields)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def name(self) -> str:
        """The first source file's name (for messages)."""
        return self.sources[0].name if self.sources else "<memory>"

    def flat(self) -> np.ndarray:
        """``(n_voxels,)`` float32 in :data:`~rt_recon.protocol.VOXEL_ORDER` (x fastest)."""
        return np.ravel(self.data, order="F").astype(np.float32, copy=False)
