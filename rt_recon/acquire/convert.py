"""Write a recorded series as one 4D NIfTI: the volumes and geometry the bridge streams.

``rt-recon convert SERIES OUT.nii.gz`` reads the series with
:func:`rt_recon.acquire.series.read_series` (the readers the bridge uses),
writes the volumes in acquisition order, in closest canonical RAS+ voxel
order, with the stream's affine as both sform and qform, and a BIDS-style
JSON sidecar (``RepetitionTime`` plus what was missing, duplicated or
unreadable), so the conversion can be checked against other tools offline.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np

from rt_recon.acquire.series import Series
from rt_recon.errors import DataError

log = logging.getLogger(__name__)

_INTEGER_TYPES = (np.int16, np.uint16, np.int8, np.uint8, np.int32, np.uint32)


def sidecar_path(nifti: Path) -> Path:
    return nifti.with_name(nifti.name.removesuffix(".gz").removesuffix(".nii") + ".json")


def write_series_nifti(series: Series, out: str | Path) -> tuple[Path, Path]:
    """Write ``series`` to ``out`` (``.nii`` or ``.nii.gz``) and its JSON sidecar.

    The voxel type is the scanner's integer type where every volume has it
    (values unchanged), else float32. Returns (NIfTI path, sidecar path).
    """
    out = Path(out)
    if not out.name.endswith((".nii", ".nii.gz")):
        raise DataError(f"output must end in .nii or .nii.gz, found {out.name!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    data = series.data()
    if not np.issubdtype(data.dtype, np.integer) or data.dtype.type not in _INTEGER_TYPES:
        data = data.astype(np.float32)
    image = nib.Nifti1Image(data, series.affine)
    header = image.header
    header.set_xyzt_units("mm", "sec")
    zooms = header.get_zooms()
    header.set_zooms((*zooms[:3], series.tr_s))
    image.set_sform(series.affine, code=1)
    image.set_qform(series.affine, code=1)
    header["scl_slope"] = 1.0
    header["scl_inter"] = 0.0
    tmp = out.with_name(".part-" + out.name)  # hidden, same extension (nibabel reads it)
    nib.save(image, tmp)
    tmp.replace(out)  # a reader never sees half a file
    sidecar = sidecar_path(out)
    sidecar.write_text(json.dumps(_sidecar(series), indent=2))
    log.info(
        "wrote %s: %s x %d volumes, TR %.3f s", out, series.shape, len(series.volumes), series.tr_s
    )
    return out, sidecar


def _sidecar(series: Series) -> dict:
    times = series.times()
    return {
        "RepetitionTime": series.tr_s,
        "rt_recon": {
            "orientation": "closest canonical RAS+ (voxel axes toward R, A, S)",
            "series": series.label,
            "volume_indices": series.indices,
            "acquisition_times_s": None if times is None else [round(float(t), 6) for t in times],
            "missing": series.missing,
            "duplicates": [p.name for p in series.duplicates],
            "unreadable": [{"file": p.name, "reason": r} for p, r in series.unreadable],
            "sources": [v.sources[0].name for v in series.volumes],
        },
    }
