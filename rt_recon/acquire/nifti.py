"""4D NIfTI runs, read into volumes in stream voxel order."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from rt_recon.acquire.events import read_events
from rt_recon.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class RecordedRun:
    """A run in memory: ``volumes (n_trs, n_voxels)`` float32, each row one volume in
    :data:`~rt_recon.protocol.VOXEL_ORDER`; ``shape (x, y, z)``; RAS+ ``affine``; TR in s."""

    volumes: np.ndarray
    shape: tuple[int, int, int]
    affine: np.ndarray
    tr: float
    events: list[dict] = field(default_factory=list)


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
    if data.ndim != 4:
        raise DataError(f"{path}: expected a 4D (x, y, z, t) image, found shape {data.shape}")
    n_trs = data.shape[3]
    # (x, y, z, t) -> (t, z, y, x) in C order: each row is one volume, x varying fastest.
    volumes = np.ascontiguousarray(data.transpose(3, 2, 1, 0).reshape(n_trs, -1), dtype=np.float32)
    return RecordedRun(
        volumes=volumes,
        shape=tuple(int(s) for s in data.shape[:3]),  # type: ignore[arg-type]
        affine=np.asarray(image.affine, dtype=np.float64),
        tr=repetition_time(path, image),
        events=read_events(events) if events is not None else [],
    )


def repetition_time(path: Path, image: nib.Nifti1Image) -> float:
    """TR in seconds from the BIDS JSON sidecar, else from pixdim[4] and the time unit."""
    sidecar = path.with_name(path.name.removesuffix(".gz").removesuffix(".nii") + ".json")
    if sidecar.is_file():
        tr = json.loads(sidecar.read_text()).get("RepetitionTime")
        if tr:
            return float(tr)
    zooms = image.header.get_zooms()
    units = image.header.get_xyzt_units()[1]
    tr = float(zooms[3]) / 1000.0 if units == "msec" else float(zooms[3])
    if tr <= 0:
        raise DataError(f"{path}: no repetition time in a JSON sidecar or the header (pixdim[4])")
    return tr


def load_mask(path: str | Path, shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """A 3D mask as channel indices ``(n,)`` int64 in stream voxel order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"mask not found: {path}")
    mask = np.asanyarray(nib.load(path).dataobj) > 0
    if shape is not None and mask.shape != tuple(shape):
        raise DataError(f"mask {path} has shape {mask.shape}, the volumes have {tuple(shape)}")
    return np.flatnonzero(np.ravel(mask, order="F"))
