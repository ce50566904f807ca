import numpy as np
import pytest

from rt_recon.errors import DataError, ShapeMismatchError
from rt_recon.preprocess.mask import VoxelSelection


def test_mask_indices_follow_the_stream_voxel_order():
    mask = np.zeros((3, 4, 2), dtype=bool)
    mask[1, 2, 0] = mask[2, 0, 1] = True
    stage = VoxelSelection.from_mask(mask)
    # x fastest: index = x + 3 * (y + 4 * z)
    np.testing.assert_array_equal(stage.indices, [1 + 3 * 2, 2 + 3 * 4 * 1])
    volume = np.arange(24, dtype=np.float32).reshape((3, 4, 2), order="F")
    np.testing.assert_array_equal(stage.update(volume), [volume[1, 2, 0], volume[2, 0, 1]])
    np.testing.assert_array_equal(stage.update(np.ravel(volume, order="F")), [7.0, 14.0])


def test_nan_outside_the_mask_is_harmless_inside_it_is_an_error():
    stage = VoxelSelection(np.array([0, 5]), (2, 3, 1))
    volume = np.ones(6)
    volume[3] = np.nan
    np.testing.assert_array_equal(stage.update(volume), [1.0, 1.0])
    volume[5] = np.inf
    with pytest.raises(DataError, match="1 NaN/Inf"):
        stage.update(volume)


def test_wrong_volume_and_bad_indices_are_refused():
    stage = VoxelSelection(np.array([0, 5]), (2, 3, 1))
    with pytest.raises(ShapeMismatchError, match=r"\(2, 3, 1\) or \(6,\), found \(7,\)"):
        stage.update(np.zeros(7))
    with pytest.raises(DataError, match=r"\[0, 6\)"):
        VoxelSelection(np.array([0, 6]), (2, 3, 1))
    with pytest.raises(DataError, match="unique"):
        VoxelSelection(np.array([1, 1]), (2, 3, 1))
    with pytest.raises(DataError, match="empty"):
        VoxelSelection(np.array([], dtype=int), (2, 3, 1))
