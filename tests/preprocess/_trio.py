"""Read the Siemens Trio mosaic run in ../shared/data for tests and benchmarks.

A small reader for the tests only (the project's DICOM reader lives in
``rt_recon.acquire``): nibabel's Siemens mosaic wrapper gives the
``(x, y, z)`` volume and an LPS affine; negating its first two rows gives
RAS+. The template ``epi_template.nii`` is volume 6 of this very series
(OpenNFT skipped 5 volumes), stored in another voxel order, so every volume is
compared with it in world coordinates.

Also here: the template's brain mask and brain-surface points (the motion tests
measure displacements there) and the world SPM's reference parameters are in
(:func:`opennft_world_shift`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import scipy.io
from scipy import ndimage

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


def slice_thickness(run: Path = TRIO_RUN) -> float:
    """The slices' thickness in mm (DICOM SliceThickness: 3 mm, slices every 3.75 mm)."""
    return float(pydicom.dcmread(volume_paths(run)[0], stop_before_pixels=True).SliceThickness)


def brain_mask(volume: np.ndarray, fraction: float = 0.2) -> np.ndarray:
    """Voxels above ``fraction`` of the maximum: the largest connected part, holes filled."""
    above = volume > fraction * float(volume.max())
    labels, n = ndimage.label(above)
    if n == 0:
        raise ValueError(f"no voxel above {fraction} of the maximum {float(volume.max())}")
    sizes = ndimage.sum_labels(above, labels, np.arange(1, n + 1))
    return ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))


def surface_points(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``(n, 3)`` world mm of the mask's surface voxels (in the mask, not in its erosion)."""
    surface = mask & ~ndimage.binary_erosion(mask)
    return np.argwhere(surface).astype(np.float64) @ affine[:3, :3].T + affine[:3, 3]


def opennft_world_shift(template_affine: np.ndarray, pad_slices: int = 3) -> np.ndarray:
    """Where a point of the template's world lies in the world of ``spm_params``: ``w + shift``.

    Read from the code that wrote ``spm_realign_rt_params.mat``, pyOpenNFT's
    ``tests/pyspm/matlab/mc_series_dcm.m`` (it names the variable ``mc_series_matlab``
    and runs OpenNFT's ``spm_realign_rt``), not fitted to the data:

    * the template's and every volume's ``mat`` is ``niftiinfo(template).Transform.T'``,
      the NIfTI header's affine, which maps 0-based voxel indices (NIfTI-1 standard;
      pyOpenNFT's Python port of the same script, ``tests/pyspm/test_mc_dcm.py``, uses
      nibabel's ``affine`` there);
    * SPM reads ``mat`` as mapping 1-based indices ("the first voxel is at coordinate
      (1,1,1)", the header of ``spm_realign_rt.m``; ``spm_vol`` itself would have
      shifted the affine by one voxel to keep the world);
    * the script pads the template and each volume with ``pad_slices`` = 3 empty
      slices in front of the first slice (``cat(3, zeroPadVol, vol, zeroPadVol)``)
      and keeps ``mat``.

    So template voxel ``v`` (0-based, unpadded) lies at ``mat @ (v + 1 + (0, 0, 3))``
    there: the template's world shifted by the template's voxel axes times
    ``(1, 1, 1 + pad_slices)``. OpenNFT proper (``setupProcParams.m``) reads the template
    with ``spm_vol``, which would leave only the padding's ``(0, 0, 3)``.
    """
    voxels = np.array([1.0, 1.0, 1.0 + pad_slices])
    return np.asarray(template_affine, dtype=np.float64)[:3, :3] @ voxels
