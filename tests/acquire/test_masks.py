"""ROI masks from other grids onto the EPI grid: a 1 mm sphere drawn in another voxel order
lands on the EPI voxels whose centres lie in it; no overlap is an error naming both extents."""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import pytest

from rt_recon.acquire.masks import load_mask
from rt_recon.errors import DataError

#: The EPI grid: 3 mm voxels, RAS+, centred near the origin.
EPI_SHAPE = (20, 24, 16)
EPI_AFFINE = np.array([[3.0, 0, 0, -30.0], [0, 3.0, 0, -36.0], [0, 0, 3.0, -24.0], [0, 0, 0, 1.0]])
CENTRE_MM = np.array([4.0, -5.0, 2.0])
RADIUS_MM = 12.0


def _epi_centres() -> np.ndarray:
    """``(n, 3)`` RAS+ mm of every EPI voxel centre, in stream order (x fastest)."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in EPI_SHAPE], indexing="ij"), axis=-1)
    ijk = ijk.reshape(-1, 3, order="F")
    return ijk @ EPI_AFFINE[:3, :3].T + EPI_AFFINE[:3, 3]


def _sphere_on_1mm_lps_grid(path, centre=CENTRE_MM, radius=RADIUS_MM) -> None:
    """A sphere drawn on a 1 mm grid in LPS voxel order (x and y flipped), as an
    anatomical scan's mask often is."""
    shape = (80, 90, 70)
    affine = np.array([[-1.0, 0, 0, 40.0], [0, -1.0, 0, 45.0], [0, 0, 1.0, -35.0], [0, 0, 0, 1.0]])
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    inside = np.linalg.norm(world - centre, axis=-1) <= radius
    nib.save(nib.Nifti1Image(inside.astype(np.uint8), affine), path)


def test_a_fine_mask_in_another_voxel_order_lands_on_the_epi_voxels_inside_it(tmp_path):
    path = tmp_path / "roi_1mm.nii.gz"
    _sphere_on_1mm_lps_grid(path)
    voxels = load_mask(path, EPI_SHAPE, EPI_AFFINE)
    distance = np.linalg.norm(_epi_centres() - CENTRE_MM, axis=1)
    # voxels whose centre is clearly inside are in, clearly outside are out; at the
    # boundary (within one 1 mm source voxel) interpolation decides
    assert set(np.flatnonzero(distance < RADIUS_MM - 1.0)) <= set(voxels)
    assert not set(voxels) & set(np.flatnonzero(distance > RADIUS_MM + 1.0))
    expected = np.flatnonzero(distance <= RADIUS_MM)
    jaccard = len(np.intersect1d(voxels, expected)) / len(np.union1d(voxels, expected))
    assert jaccard > 0.95


def test_a_mask_on_the_epi_grid_is_read_as_it_is(tmp_path):
    rng = np.random.default_rng(0)
    mask = rng.random(EPI_SHAPE) < 0.1
    path = tmp_path / "same.nii"
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), EPI_AFFINE), path)
    expected = np.flatnonzero(mask.ravel(order="F"))
    np.testing.assert_array_equal(load_mask(path, EPI_SHAPE, EPI_AFFINE), expected)
    np.testing.assert_array_equal(load_mask(path, EPI_SHAPE), expected)


def test_a_mask_that_misses_the_field_of_view_names_both_extents(tmp_path):
    path = tmp_path / "elsewhere.nii.gz"
    _sphere_on_1mm_lps_grid(path, centre=np.array([0.0, 0.0, 31.0]), radius=3.0)  # above it
    with pytest.raises(DataError) as error:
        load_mask(path, EPI_SHAPE, EPI_AFFINE)
    text = str(error.value)
    assert "elsewhere.nii.gz does not overlap the volumes" in text
    assert "EPI field of view x -30..27, y -36..33, z -24..21 mm" in text
    assert "subject's space" in text


def test_a_mask_the_field_of_view_cuts_is_kept_with_a_warning(tmp_path, caplog):
    path = tmp_path / "cut.nii.gz"
    _sphere_on_1mm_lps_grid(path, centre=np.array([0.0, 0.0, 24.0]), radius=8.0)  # top edge
    with caplog.at_level(logging.WARNING, logger="rt_recon.acquire.masks"):
        voxels = load_mask(path, EPI_SHAPE, EPI_AFFINE)
    assert voxels.size > 0
    (record,) = [r for r in caplog.records if "outside the EPI field of view" in r.getMessage()]
    percent = float(record.getMessage().split(":")[1].split("%")[0])
    assert 20 < percent < 80


def test_bad_masks_are_named(tmp_path):
    with pytest.raises(DataError, match="mask not found"):
        load_mask(tmp_path / "none.nii.gz", EPI_SHAPE, EPI_AFFINE)
    empty = tmp_path / "empty.nii"
    nib.save(nib.Nifti1Image(np.zeros(EPI_SHAPE, np.uint8), EPI_AFFINE), empty)
    with pytest.raises(DataError, match=r"empty\.nii is empty"):
        load_mask(empty, EPI_SHAPE, EPI_AFFINE)
    other = tmp_path / "other.nii"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), np.eye(4)), other)
    with pytest.raises(DataError, match=r"shape \(4, 4, 4\), the volumes have \(20, 24, 16\)"):
        load_mask(other, EPI_SHAPE)
    text = tmp_path / "text.nii"
    text.write_text("not an image")
    with pytest.raises(DataError, match="not a readable NIfTI"):
        load_mask(text, EPI_SHAPE, EPI_AFFINE)
