"""NIfTI runs and volumes, read into stream voxel order.

Every array leaves this module in closest canonical RAS+ voxel order
(``nibabel.as_closest_canonical``; see :mod:`rt_recon.acquire.volume`), the
order every rt_recon stream uses, so a run, its masks and a scanner bridge's
stream of the same acquisition index the same voxels. For an image that is
already canonical (every synthetic session) this changes nothing.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from rt_recon.acquire._incomplete import IncompleteFileError
from rt_recon.acquire.events import read_events
from rt_recon.acquire.masks import load_mask as load_mask  # re-exported: read with runs
from rt_recon.acquire.volume import Volume, to_canonical
from rt_recon.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class RecordedRun:
    """A run in memory: ``volumes (n_trs, n_voxels)`` float32, each row one volume in
    :data:`~rt_recon.protocol.VOXEL_ORDER`; ``shape (x, y, z)``; RAS+ ``affine``; TR in s.

    ``times`` (optional, ``(n_trs,)`` seconds from the first volume) holds the
    acquisition times where the recording has them (DICOM, XDF); replay then
    paces by them instead of ``i * tr_s``.
    """

    volumes: np.ndarray
    shape: tuple[int, int, int]
    affine: np.ndarray
    tr_s: float
    events: list[dict] = field(default_factory=list)
    times: np.ndarray | None = None


def load_nifti_run(path: str | Path, events: str | Path | None = None) -> RecordedRun:
    """Read a 4D NIfTI run (and optionally its events.tsv); TR from a BIDS sidecar or the header."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"run not found: {path} (expected a 4D NIfTI file)")
    try:
        image = nib.load(path)
        data = np.asanyarray(image.dataobj)
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise DataError(f"{path}: not a readable NIfTI file: {exc}") from None
    if data.ndim == 4:
        data, affine = to_canonical(data, np.asarray(image.affine, dtype=np.float64))
    if data.ndim != 4:
        raise DataError(f"{path}: expected a 4D (x, y, z, t) image, found shape {data.shape}")
    n_trs = data.shape[3]
    # (x, y, z, t) -> (t, z, y, x) in C order: each row is one volume, x varying fastest.
    volumes = np.ascontiguousarray(data.transpose(3, 2, 1, 0).reshape(n_trs, -1), dtype=np.float32)
    return RecordedRun(
        volumes=volumes,
        shape=tuple(int(s) for s in data.shape[:3]),  # type: ignore[arg-type]
        affine=affine,
        tr_s=repetition_time(path, image),
        events=read_events(events) if events is not None else [],
    )


def repetition_time(path: Path, image: nib.Nifti1Image) -> float:
    """TR in seconds from the BIDS JSON sidecar, else from pixdim[4] and the time unit."""
    sidecar = path.with_name(path.name.removesuffix(".gz").removesuffix(".nii") + ".json")
    if sidecar.is_file():
        tr_s = json.loads(sidecar.read_text()).get("RepetitionTime")
        if tr_s:
            return float(tr_s)
    zooms = image.header.get_zooms()
    units = image.header.get_xyzt_units()[1]
    tr_s = float(zooms[3]) / 1000.0 if units == "msec" else float(zooms[3])
    if tr_s <= 0:
        raise DataError(f"{path}: no repetition time in a JSON sidecar or the header (pixdim[4])")
    return tr_s


def read_nifti_volumes(path: Path, tr_s: float | None = None) -> list[Volume]:
    """Each volume of a 3D or 4D NIfTI file as a :class:`~rt_recon.acquire.volume.Volume`.

    A 3D file (one volume per file, as some real-time exports write) takes
    its volume index from the last number in its name (``vol_0007.nii`` ->
    7); a 4D file numbers its volumes 1..n. The series is the file name with
    that number removed.

    Raises:
        IncompleteFileError: the file is shorter than its header announces.
        DataError: not a readable 3D/4D NIfTI.
    """
    try:
        image = nib.load(path)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise IncompleteFileError(f"{path.name}: the header ends early ({exc})") from None
    except Exception as exc:
        if path.stat().st_size < 352:
            raise IncompleteFileError(f"{path.name}: shorter than a NIfTI header") from None
        raise DataError(f"{path.name}: not a readable NIfTI file: {exc}") from None
    header = image.header
    if not path.name.endswith(".gz"):
        needed = int(header.get_data_offset()) + int(
            np.prod(header.get_data_shape()) * header.get_data_dtype().itemsize
        )
        size = path.stat().st_size
        if size < needed:
            raise IncompleteFileError(
                f"{path.name}: {size} of the {needed} bytes its header announces "
                "(still being written?)"
            )
    try:
        data = np.asanyarray(image.dataobj)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise IncompleteFileError(f"{path.name}: compressed data ends early ({exc})") from None
    except Exception as exc:
        raise DataError(f"{path.name}: cannot read the voxel data: {exc}") from None
    if data.ndim not in (3, 4):
        raise DataError(f"{path.name}: expected a 3D or 4D image, found shape {data.shape}")
    _, match = _stem_number(path)
    series, series_label = nifti_series(path, data.ndim)
    header_tr_s = None
    if data.ndim == 4:
        try:
            header_tr_s = repetition_time(path, image)
        except DataError:
            header_tr_s = None
    common = {
        "series": series,
        "series_label": series_label,
        "scanner_time": None,
        "date": None,
        "tr_s": tr_s if tr_s is not None else header_tr_s,
        "sources": (path,),
    }
    affine = np.asarray(image.affine, dtype=np.float64)
    if data.ndim == 3:
        if match is None:
            raise DataError(
                f"{path.name}: a single-volume NIfTI needs its volume number in its name "
                "(e.g. vol_0007.nii)"
            )
        return [Volume.from_native(data, affine, index=int(match.group(1)), **common)]
    return [
        Volume.from_native(data[..., t], affine, index=t + 1, **common)
        for t in range(data.shape[3])
    ]


def _stem_number(path: Path) -> tuple[str, re.Match | None]:
    stem = path.name.removesuffix(".gz").removesuffix(".nii")
    return stem, re.search(r"(\d+)\D*$", stem)


def nifti_series(path: Path, ndim: int) -> tuple[str, str]:
    """(series key, label) of a NIfTI file of ``ndim`` axes, as its volumes carry them.

    A 3D file's series is its name without the volume number
    (``run1_vol_0007.nii`` -> ``run1_vol``); a 4D file is a series of its own.
    """
    stem, match = _stem_number(path)
    label = stem[: match.start(1)].rstrip("_-.") if match and ndim == 3 else stem
    return f"{path.parent}/{label}", label or stem
