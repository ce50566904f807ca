"""Voxel selection (mask / ROI) as a stage: a volume in, the selected voxels out."""

from __future__ import annotations

import math

import numpy as np

from rt_recon.errors import DataError, ShapeMismatchError
from rt_recon.preprocess._checks import check_volume


class VoxelSelection:
    """Keep the voxels at ``indices``: ``update(volume) -> (n_selected,)``.

    Indices are positions in the flattened volume in the stream's voxel order,
    x fastest (Fortran order; :data:`rt_recon.protocol.VOXEL_ORDER`, the
    convention of :func:`rt_recon.acquire.nifti.load_mask`). ``update``
    accepts the volume flattened ``(n_voxels,)`` or as ``(x, y, z)``.

    Args:
        indices: ``(n_selected,)`` voxel indices, unique, in ``[0, n_voxels)``.
        shape: ``(x, y, z)`` of the volumes.
    """

    def __init__(self, indices: np.ndarray, shape: tuple[int, int, int]):
        self.shape: tuple[int, int, int] = tuple(int(s) for s in shape)
        self.n_voxels = math.prod(self.shape)
        indices = np.asarray(indices)
        if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
            raise DataError(f"voxel indices must be a 1-D integer array, found {indices.dtype} "
                            f"of shape {indices.shape}")  # fmt: skip
        if indices.size == 0:
            raise DataError("the voxel selection is empty: expected at least one voxel")
        if indices.min() < 0 or indices.max() >= self.n_voxels:
            raise DataError(
                f"voxel indices must lie in [0, {self.n_voxels}) for a {self.shape} volume, "
                f"found [{indices.min()}, {indices.max()}]"
            )
        if np.unique(indices).size != indices.size:
            raise DataError("voxel indices must be unique")
        self.indices = indices.astype(np.int64)

    @classmethod
    def from_mask(cls, mask: np.ndarray) -> VoxelSelection:
        """The nonzero voxels of an ``(x, y, z)`` mask, in x-fastest order."""
        mask = np.asarray(mask)
        if mask.ndim != 3:
            raise ShapeMismatchError(f"expected an (x, y, z) mask, found shape {mask.shape}")
        return cls(np.flatnonzero(np.ravel(mask, order="F")), mask.shape)

    @property
    def n_selected(self) -> int:
        return int(self.indices.size)

    def update(self, volume: np.ndarray) -> np.ndarray:
        """``(n_voxels,)`` or ``(x, y, z)`` volume -> ``(n_selected,)`` values (same dtype)."""
        volume = np.asarray(volume)
        if volume.ndim == 3 and volume.shape == self.shape:
            volume = np.ravel(volume, order="F")
        elif volume.shape != (self.n_voxels,):
            raise ShapeMismatchError(
                f"VoxelSelection.update() expected a volume of shape {self.shape} or "
                f"({self.n_voxels},), found {volume.shape}"
            )
        # Only the selected voxels must be finite: NaN outside the mask is harmless.
        return check_volume(volume[self.indices], (self.n_selected,), "VoxelSelection")
