"""Enhanced multi-frame DICOM (Siemens XA) on files built with pydicom from the standard.

Limitation, stated honestly: no real XA export is in the shared data; these
files follow PS3.3's functional groups, as XA writes them.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from rt_recon.acquire.formats import read_file
from rt_recon.acquire.series import read_series
from rt_recon.errors import DataError
from tests.acquire._enhanced_builder import oblique_affine, write_enhanced


def _truth(shape, seed=0, dtype=np.uint16):
    return np.random.default_rng(seed).integers(0, 4000, size=shape).astype(dtype)


def _canonical(data, affine):
    image = nib.as_closest_canonical(nib.Nifti1Image(data, affine))
    return np.asanyarray(image.dataobj), image.affine


@pytest.mark.parametrize("degrees", [(0.0, 0.0, 0.0), (12.0, -7.0, 20.0), (100.0, 5.0, -170.0)])
def test_one_volume_per_file_reads_back_in_canonical_order(tmp_path, degrees):
    affine = oblique_affine(degrees=degrees)
    data = _truth((12, 10, 7))
    shuffled = np.random.default_rng(1).permutation(7)  # frames need not be in slice order
    path = write_enhanced(tmp_path / "v.dcm", data, affine, frame_order=shuffled, instance=5)
    (volume,) = read_file(path)
    expected, expected_affine = _canonical(data, affine)
    np.testing.assert_array_equal(volume.data, expected)
    np.testing.assert_allclose(volume.affine, expected_affine, atol=1e-4)
    assert volume.index == 5  # XA's real-time export: the instance number counts volumes
    assert volume.tr_s == pytest.approx(0.8)
    assert volume.scanner_time == pytest.approx(10 * 3600 + 30 * 60)


def test_many_volumes_in_one_file_split_by_temporal_position(tmp_path):
    affine = oblique_affine()
    data = _truth((8, 9, 5, 3), dtype=np.int16)
    order = np.random.default_rng(2).permutation(15)
    path = write_enhanced(tmp_path / "run.dcm", data, affine, frame_order=order)
    volumes = read_file(path)
    assert [v.index for v in volumes] == [1, 2, 3]
    for t, volume in enumerate(volumes):
        expected, expected_affine = _canonical(data[..., t], affine)
        np.testing.assert_array_equal(volume.data, expected)
        np.testing.assert_allclose(volume.affine, expected_affine, atol=1e-4)
    assert volumes[1].scanner_time - volumes[0].scanner_time == pytest.approx(1.0)


def test_without_temporal_index_repeated_positions_are_later_volumes(tmp_path):
    affine = oblique_affine()
    data = _truth((6, 6, 4, 2))
    path = write_enhanced(tmp_path / "run.dcm", data, affine, temporal_index=False)
    volumes = read_file(path)
    assert len(volumes) == 2
    np.testing.assert_array_equal(volumes[1].data, _canonical(data[..., 1], affine)[0])


def test_rescale_slope_and_intercept_are_applied(tmp_path):
    affine = oblique_affine()
    data = _truth((6, 5, 4))
    path = write_enhanced(tmp_path / "v.dcm", data, affine, slope=0.5, intercept=-10.0)
    (volume,) = read_file(path)
    assert volume.data.dtype == np.float32
    expected, _ = _canonical(data.astype(np.float32) * 0.5 - 10.0, affine)
    np.testing.assert_allclose(volume.data, expected, rtol=0, atol=1e-4)


def test_a_folder_of_xa_volumes_is_a_series(tmp_path):
    affine = oblique_affine()
    uid = "1.2.3.4.5"
    data = _truth((8, 8, 6, 4), seed=4)
    for t in (3, 0, 2, 1):  # written out of order; the instance number orders them
        write_enhanced(
            tmp_path / f"xa_{t:03d}.dcm", data[..., t], affine, instance=t + 1, series_uid=uid
        )
    series = read_series(tmp_path)
    assert series.indices == [1, 2, 3, 4]
    expected, expected_affine = _canonical(data, affine)
    np.testing.assert_array_equal(series.data(), expected)
    np.testing.assert_allclose(series.affine, expected_affine, atol=1e-4)


def test_a_frame_without_position_is_named_in_the_error(tmp_path):
    affine = oblique_affine()
    path = write_enhanced(tmp_path / "v.dcm", _truth((4, 4, 3)), affine)
    import pydicom

    ds = pydicom.dcmread(path)
    del ds.PerFrameFunctionalGroupsSequence[1].PlanePositionSequence
    ds.save_as(path)
    with pytest.raises(DataError, match=r"v\.dcm: frame 2 has no PlanePositionSequence"):
        read_file(path)
