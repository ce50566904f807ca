"""Siemens mosaics (F>>H, H>>F, CMRR multiband) against dcm2niix's conversions.

dcm2niix writes its own voxel order; both sides are reoriented to closest
canonical RAS+ (the stream's order) before comparing: voxel values must be
equal, affines within 1e-3 mm.
"""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from rt_recon.acquire.series import read_series
from tests.acquire._shared import shared_path

pytestmark = pytest.mark.shared_data

SERIES = ["ep2d_Asc_2", "ep2d_Int_HF_5", "cmrr_Asc_6"]


def _reference(name: str) -> nib.Nifti1Image:
    stem, number = name.rsplit("_", 1)  # In/ep2d_Asc_2 -> Ref/2_ep2d_Asc.nii
    return nib.as_closest_canonical(
        nib.load(shared_path("dcm_qa_mosaic", "Ref", f"{number}_{stem}.nii"))
    )


def test_every_input_series_has_a_reference():
    found = sorted(p.name for p in shared_path("dcm_qa_mosaic", "In").iterdir() if p.is_dir())
    assert found == sorted(SERIES)


@pytest.mark.parametrize("name", SERIES)
def test_series_equals_dcm2niix_voxel_for_voxel(name):
    series = read_series(shared_path("dcm_qa_mosaic", "In", name))
    reference = _reference(name)
    expected = np.asanyarray(reference.dataobj)
    got = series.data()
    assert got.shape == expected.shape
    assert series.indices == list(range(1, expected.shape[3] + 1))
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(series.affine, reference.affine, atol=1e-3, rtol=0)
    stem, number = name.rsplit("_", 1)
    sidecar = json.loads(shared_path("dcm_qa_mosaic", "Ref", f"{number}_{stem}.json").read_text())
    assert series.tr_s == pytest.approx(sidecar["RepetitionTime"])


@pytest.mark.slow
def test_convert_cli_writes_what_dcm2niix_wrote(tmp_path):
    name = "ep2d_Int_HF_5"  # H>>F slice numbering
    out = tmp_path / "run.nii.gz"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rt_recon",
            "convert",
            str(shared_path("dcm_qa_mosaic", "In", name)),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    written = nib.load(out)
    reference = _reference(name)
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), np.asanyarray(reference.dataobj))
    np.testing.assert_allclose(written.affine, reference.affine, atol=1e-3, rtol=0)
    assert written.header.get_zooms()[3] == pytest.approx(3.2)
    assert "6 volumes" in done.stdout
