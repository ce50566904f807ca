"""Trilinear sampling through torch equals scipy's order-1 interpolation."""

import numpy as np
from scipy import ndimage

from rt_recon.preprocess._trilinear import TrilinearSampler, grid_points, voxel_points
from rt_recon.preprocess.rigid import rigid_matrix

SHAPE = (13, 11, 7)


def _volume() -> np.ndarray:
    return np.random.default_rng(0).normal(100.0, 20.0, size=SHAPE).astype(np.float32)


def test_points_inside_and_outside_match_scipy_nearest_mode():
    volume = _volume()
    rng = np.random.default_rng(1)
    coords = np.stack([rng.uniform(-2.0, s + 1.0, 500) for s in SHAPE])  # some outside
    expected = ndimage.map_coordinates(volume, coords, order=1, mode="nearest", prefilter=False)
    np.testing.assert_allclose(TrilinearSampler(volume).at(coords), expected, rtol=1e-5)


def test_a_rigidly_moved_grid_matches_affine_transform():
    volume = _volume()
    to_voxel = rigid_matrix(np.array([0.7, -0.4, 0.3, 0.05, -0.03, 0.08]))
    expected = ndimage.affine_transform(
        volume, to_voxel[:3, :3], offset=to_voxel[:3, 3], order=1, mode="nearest"
    )
    out = TrilinearSampler(volume).transformed(to_voxel, grid_points(SHAPE)).reshape(SHAPE)
    np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_a_voxel_subset_gets_exactly_the_values_of_the_whole_grid():
    volume = _volume()
    to_voxel = rigid_matrix(np.array([0.2, 0.1, -0.6, 0.02, 0.01, -0.04]))
    sampler = TrilinearSampler(volume)
    whole = sampler.transformed(to_voxel, grid_points(SHAPE)).reshape(SHAPE)
    indices = np.random.default_rng(2).choice(volume.size, 200, replace=False)
    subset = sampler.transformed(to_voxel, voxel_points(indices, SHAPE))
    np.testing.assert_array_equal(subset, np.ravel(whole, order="F")[indices])
