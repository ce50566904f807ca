"""One-slice-per-file DICOM (GE's export) stacked into volumes, on files built with pydicom."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from rt_recon.acquire.formats import read_file
from rt_recon.acquire.series import read_series
from rt_recon.acquire.slices import SliceStacker
from tests.acquire._enhanced_builder import oblique_affine, write_slices


@pytest.fixture
def run(tmp_path):
    rng = np.random.default_rng(11)
    data = rng.integers(-500, 3000, size=(9, 8, 6, 3)).astype(np.int16)
    affine = oblique_affine(degrees=(-15.0, 8.0, 170.0))
    folder = tmp_path / "ge"
    folder.mkdir()
    return data, affine, write_slices(folder, data, affine)


def test_slices_in_any_order_stack_into_canonical_volumes(run):
    data, affine, paths = run
    stacker = SliceStacker()
    volumes = []
    for path in np.random.default_rng(0).permutation(paths[:6]).tolist() + paths[6:]:
        (image,) = read_file(path)
        volume = stacker.add(image)
        if volume is not None:
            volumes.append(volume)
    assert [v.index for v in volumes] == [1, 2, 3]
    for t, volume in enumerate(volumes):
        expected = nib.as_closest_canonical(nib.Nifti1Image(data[..., t], affine))
        np.testing.assert_array_equal(volume.data, np.asanyarray(expected.dataobj))
        np.testing.assert_allclose(volume.affine, expected.affine, atol=1e-4)
        assert volume.tr_s == pytest.approx(1.0)


def test_a_repeated_slice_is_listed_and_an_unfinished_volume_is_given_up(run):
    _, _, paths = run
    stacker = SliceStacker(max_open=1)
    out = [stacker.add(read_file(p)[0]) for p in paths[:5]]  # volume 1 lacks its 6th slice
    assert out == [None] * 5
    out = [stacker.add(read_file(p)[0]) for p in paths[6:]]  # volumes 2 and 3 whole
    assert [v.index for v in out if v is not None] == [2, 3]
    assert stacker.abandoned[0][1:] == (1, 5, 6)
    assert stacker.add(read_file(paths[7])[0]) is None  # a slice of volume 2, again
    assert stacker.duplicates == [paths[7]]


def test_a_series_with_a_missing_slice_file_reports_it(run):
    data, _, paths = run
    paths[8].unlink()  # volume 2, slice 3
    series = read_series(paths[0].parent)
    assert series.indices == [1, 3]
    assert series.missing == [2]
    assert any("only 5 of 6 slices" in reason for _, reason in series.unreadable)
    expected = nib.as_closest_canonical(nib.Nifti1Image(data[..., 2], run[1]))
    np.testing.assert_array_equal(series.volumes[1].data, np.asanyarray(expected.dataobj))
