"""Synthetic volumes with a known rigid motion, sampled analytically (no interpolation error)."""

from __future__ import annotations

import numpy as np

from rt_recon.preprocess.rigid import rigid_matrix

SHAPE = (40, 44, 30)


def oblique_affine() -> np.ndarray:
    """An EPI-like voxel -> RAS+ affine: 3 x 3 x 3.5 mm, x flipped, tilted 15 degrees about x."""
    tilt = np.deg2rad(15.0)
    rotation = np.array(
        [[-1.0, 0.0, 0.0], [0.0, np.cos(tilt), -np.sin(tilt)], [0.0, np.sin(tilt), np.cos(tilt)]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rotation * np.array([3.0, 3.0, 3.5])
    centre = np.array(SHAPE) / 2.0
    affine[:3, 3] = -affine[:3, :3] @ centre + np.array([4.0, -10.0, 12.0])
    return affine


class BlobHead:
    """A smooth 'head': an ellipsoid of tissue with Gaussian blobs, evaluated in world mm."""

    def __init__(self, seed: int = 0, n_blobs: int = 60, centre=(4.0, -10.0, 12.0)):
        rng = np.random.default_rng(seed)
        self.centre = np.asarray(centre)
        self.radii = np.array([50.0, 58.0, 40.0])
        self.blobs = self.centre + rng.uniform(-0.8, 0.8, size=(n_blobs, 3)) * self.radii
        self.widths = rng.uniform(3.0, 9.0, size=n_blobs)
        self.heights = rng.uniform(-300.0, 500.0, size=n_blobs)

    def __call__(self, world: np.ndarray) -> np.ndarray:
        """``(n, 3)`` world points -> ``(n,)`` intensities."""
        r = np.sqrt(np.sum(((world - self.centre) / self.radii) ** 2, axis=1))
        values = 800.0 / (1.0 + np.exp((r - 1.0) / 0.04))  # soft-edged ellipsoid
        for blob, width, height in zip(self.blobs, self.widths, self.heights, strict=True):
            values += height * np.exp(-np.sum((world - blob) ** 2, axis=1) / (2.0 * width**2))
        return values


def sample(head: BlobHead, affine: np.ndarray, params=None, shape=SHAPE) -> np.ndarray:
    """The head on a grid after a rigid motion: ``volume(w) = head(Q w)``, ``Q = rigid(params)``.

    So the motion correction of this volume against ``sample(head, affine)`` should
    find ``Q``, i.e. ``params``.
    """
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    world = index @ affine[:3, :3].T + affine[:3, 3]
    if params is not None:
        q = rigid_matrix(params)
        world = world @ q[:3, :3].T + q[:3, 3]
    return head(world).reshape(shape).astype(np.float32)
