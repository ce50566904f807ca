"""Read the Siemens Trio mosaic run in ../shared/data for tests and benchmarks.

A small reader for the tests only (the project's DICOM reader lives in
``rt_recon.acquire``): nibabel's Siemens mosaic wrapper gives the
``(x, y, z)`` volume and an LPS affine; negating its first two rows gives
RAS+. The template ``epi_template.nii`` is volume 6 of this very series
(OpenNFT skipped 5 volumes), stored in another voxel order, so every volume is
compared with it in world coordinates.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import scipy.io

from tests.conftest import SHARED_DATA

TRIO_RUN = SHARED_DATA / "siemens_trio_mosaic_run"


def volume_paths(run: Path = TRIO_RUN) -> list[Path]:
    """The run's DICOM files in acquisition order (``001_000007_000001.dcm`` ...)."""
    return sorted((run / "dicom").glob("*.dcm"))


def read_mosaic(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One mosaic file -> ``(x, y, z)`` float32 volume and its RAS+ ``(4, 4)`` affine."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "DICOM readers are highly experimental"
        from nibabel.nicom.dicomwrappers import wrapper_from_file

        wrapper = wrapper_from_file(str(path))
        data = np.asarray(wrapper.get_data(), dtype=np.float32)
        affine = np.array(wrapper.affine, dtype=np.float64)
    affine[:2] *= -1.0  # LPS -> RAS
    return data, affine


def read_run(run: Path = TRIO_RUN, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(n, x, y, z)`` float32 volumes and the (shared) RAS+ affine of the first."""
    paths = volume_paths(run)[:limit]
    volumes, affine = [], None
    for path in paths:
        data, aff = read_mosaic(path)
        affine = aff if affine is None else affine
        volumes.append(data)
    return np.stack(volumes), affine


def read_template(run: Path = TRIO_RUN) -> tuple[np.ndarray, np.ndarray]:
    """The motion-correction template: ``(x, y, z)`` float32 and its RAS+ affine."""
    image = nib.load(run / "epi_template.nii")
    return np.asarray(image.get_fdata(), dtype=np.float32), np.asarray(image.affine, np.float64)


def spm_params(run: Path = TRIO_RUN) -> np.ndarray:
    """SPM (OpenNFT spm_realign_rt) parameters ``(155, 6)``, relative to volume 1."""
    return np.asarray(scipy.io.loadmat(run / "spm_realign_rt_params.mat")["mc_series_matlab"])
