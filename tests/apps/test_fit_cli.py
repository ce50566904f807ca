"""``rt-recon fit``: a bundle, a fit report beside it, and progress while it works."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rt_recon.decode.bundle import DecoderBundle

pytestmark = pytest.mark.slow


def test_fit_writes_the_bundle_and_a_report_of_r2_and_alphas_per_head(
    small_dataset, tiny_model_dir, tmp_path
):
    out = tmp_path / "sub-01.safetensors"
    done = subprocess.run(
        [sys.executable, "-m", "rt_recon", "fit", str(small_dataset.root),
         "--model", str(tiny_model_dir), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    bundle = DecoderBundle.load(out)
    report = json.loads((tmp_path / "sub-01.report.json").read_text())
    assert report == json.loads(json.dumps(bundle.report))
    assert set(report["heads"]) == {"z", "c"}
    for head, entry in report["heads"].items():
        assert sum(entry["alphas_chosen"].values()) == entry["n_targets"]
        assert f"{head}: {entry['n_voxels']} voxels" in done.stdout
        assert f"CV R^2 mean {entry['cv_r2_mean']:.3f}" in done.stdout
    n_train = len(small_dataset.runs("train"))
    assert f"{n_train + 2}/{n_train + 2}" in done.stderr  # the progress bar reached its end
