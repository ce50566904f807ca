"""Region-of-interest masks onto the EPI grid, from whatever grid and space they were drawn in.

A mask drawn on an anatomical scan (1 mm), taken from an atlas already in the subject's
space, or written by another tool on another EPI grid is resampled onto the run's grid by
the two images' affines (nilearn's :func:`~nilearn.image.resample_img`): the mask is
interpolated linearly at each EPI voxel's centre and the voxel is in the mask when that
value is at least one half, so a 1 mm mask becomes the EPI voxels whose centre lies inside
it. Both grids must describe one space (scanner RAS+ mm): masks in a template space
(MNI) must first be brought into the subject's space; no registration happens here.

A mask that covers no voxel of the EPI field of view is an error naming both extents in mm;
one that the field of view cuts is kept, with a warning saying how much of it lies outside.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np

from rt_recon.acquire.volume import to_canonical
from rt_recon.errors import DataError

log = logging.getLogger(__name__)

#: Affines closer than this (mm) are one grid: no resampling.
_SAME_GRID_MM = 1e-3


def load_mask(
    path: str | Path,
    shape: tuple[int, int, int] | None = None,
    affine: np.ndarray | None = None,
) -> np.ndarray:
    """A 3D mask as channel indices ``(n,)`` int64 in stream voxel order.

    ``shape``/``affine``: the EPI grid, in stream (closest canonical RAS+) voxel order.
    Given the affine, a mask on another grid is resampled onto it; without one, the mask
    must be on the EPI grid already (same shape), as a dataset's own masks are.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"mask not found: {path}")
    try:
        image = nib.load(path)
        data = np.asanyarray(image.dataobj)
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise DataError(f"mask {path}: not a readable NIfTI file: {exc}") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"mask {path}: expected a 3D image, found shape {data.shape}")
    mask, mask_affine = to_canonical(data > 0, np.asarray(image.affine, float))
    if not mask.any():
        raise DataError(f"mask {path} is empty (no voxel above 0)")
    if (
        shape is not None
        and affine is not None
        and not _same_grid(mask, mask_affine, shape, affine)
    ):
        mask = _resampled(path, mask, mask_affine, shape, np.asarray(affine, float))
    elif shape is not None and mask.shape != tuple(shape):
        raise DataError(
            f"mask {path} has shape {mask.shape}, the volumes have {tuple(shape)} (give the "
            "volumes' affine to resample it)"
        )
    return np.flatnonzero(np.ravel(mask, order="F"))


def _same_grid(mask: np.ndarray, mask_affine: np.ndarray, shape, affine) -> bool:
    return mask.shape == tuple(shape) and bool(
        np.abs(mask_affine - np.asarray(affine, float)).max() < _SAME_GRID_MM
    )


def _resampled(
    path: Path,
    mask: np.ndarray,
    mask_affine: np.ndarray,
    shape: tuple[int, int, int],
    affine: np.ndarray,
) -> np.ndarray:
    """``mask`` (on its own grid) on the EPI grid ``shape``/``affine``."""
    from nilearn.image import resample_img  # imported here: only a fit resamples masks

    source = nib.Nifti1Image(mask.astype(np.float32), mask_affine)
    with warnings.catch_warnings():  # linear on a binary image, thresholded: on purpose
        warnings.filterwarnings("ignore", message="Resampling binary images")
        resampled = resample_img(
            source,
            target_affine=affine,
            target_shape=tuple(shape),
            interpolation="continuous",
            fill_value=0.0,
            force_resample=True,
            copy_header=True,
        )
    out = np.asanyarray(resampled.dataobj) >= 0.5
    if not out.any():
        raise DataError(
            f"mask {path} does not overlap the volumes: it spans {_extent(mask, mask_affine)} "
            f"mm, the EPI field of view {_extent(np.ones(shape, bool), affine)} mm (RAS+); "
            "is it in the subject's space?"
        )
    inside = _fraction_inside(mask, mask_affine, shape, affine)
    if inside < 0.99:
        log.warning(
            "mask %s: %.0f%% of it lies outside the EPI field of view; using the part inside",
            path, 100 * (1 - inside),
        )  # fmt: skip
    log.info(
        "mask %s resampled from %s to the EPI grid %s: %d voxels",
        path.name, mask.shape, tuple(shape), int(out.sum()),
    )  # fmt: skip
    return out


def _world(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``(n, 3)`` RAS+ mm of the mask's voxel centres."""
    ijk = np.argwhere(mask)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def _extent(mask: np.ndarray, affine: np.ndarray) -> str:
    points = _world(mask, affine)
    lo, hi = points.min(axis=0), points.max(axis=0)
    return "x {:.0f}..{:.0f}, y {:.0f}..{:.0f}, z {:.0f}..{:.0f}".format(
        *np.column_stack([lo, hi]).ravel()
    )


def _fraction_inside(mask: np.ndarray, mask_affine: np.ndarray, shape, affine) -> float:
    """Share of the mask's voxel centres that fall inside the EPI grid's voxels."""
    points = _world(mask, mask_affine)
    ijk = (points - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
    inside = np.all((ijk > -0.5) & (ijk < np.asarray(shape) - 0.5), axis=1)
    return float(inside.mean())
