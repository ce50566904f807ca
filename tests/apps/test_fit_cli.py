"""``rt-recon fit``: a bundle, a fit report beside it, and progress while it works; the
shipped model by name (``--model embedded``) or by default; too few training runs refused
before a model loads."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rt_recon.decode.bundle import DecoderBundle
from rt_recon.render.embedded import EMBEDDED_DIR, resolve_model
from rt_recon.render.model import model_fingerprint
from rt_recon.simulators.world import StimulusWorld

pytestmark = pytest.mark.slow


def _bank_file(folder: Path) -> Path:
    """Two of the world's captions, one a line: a caption bank for the tiny model."""
    world = StimulusWorld()
    bank = folder / "bank.txt"
    bank.write_text("".join(f"{world.caption(i)}\n" for i in (0, 1)), encoding="utf-8")
    return bank


def test_fit_writes_the_bundle_and_a_report_of_r2_and_alphas_per_head(
    small_dataset, tiny_model_dir, tmp_path
):
    """With the default config, which snaps c: the tiny model has no caption bank of its own,
    so one is given."""
    out = tmp_path / "sub-01.safetensors"
    done = subprocess.run(
        [sys.executable, "-m", "rt_recon", "fit", str(small_dataset.root),
         "--model", str(tiny_model_dir), "--caption-bank", str(_bank_file(tmp_path)),
         "--out", str(out)],
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


def _fit(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rt_recon", "fit", *(str(a) for a in args)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.mark.parametrize("model_args", [["--model", "embedded"], []], ids=["embedded", "default"])
def test_fit_for_the_shipped_model_by_name_or_by_default(small_dataset, tmp_path, model_args):
    out = tmp_path / "bundle.safetensors"
    done = _fit(small_dataset.root, *model_args, "--out", out)
    assert done.returncode == 0, done.stderr
    assert f"fitting for the render model in {EMBEDDED_DIR}" in done.stderr
    bundle = DecoderBundle.load(out)
    assert bundle.model.fingerprint == model_fingerprint(EMBEDDED_DIR)


def test_a_folder_named_like_the_shipped_model_is_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_model("embedded") == EMBEDDED_DIR
    assert resolve_model("./embedded") == Path("embedded")  # a folder here, not the shipped one
    assert resolve_model(tmp_path / "m") == tmp_path / "m"


def test_fit_on_one_training_run_says_two_are_needed_before_loading_a_model(
    small_dataset, tmp_path
):
    dataset = tmp_path / "one-train-run"
    shutil.copytree(small_dataset.root, dataset)
    manifest = json.loads((dataset / "dataset.json").read_text())
    train = [r for r in manifest["runs"] if r["role"] == "train"]
    manifest["runs"] = [r for r in manifest["runs"] if r not in train[1:]]
    (dataset / "dataset.json").write_text(json.dumps(manifest))
    # a model folder that does not exist: the dataset is refused before any model is read
    done = _fit(dataset, "--model", tmp_path / "no-model", "--out", tmp_path / "b.safetensors")
    assert done.returncode == 2
    assert (
        f"rt-recon: error: {dataset}: fitting needs at least 2 training runs (role 'train' in "
        "dataset.json), found 1" in done.stderr
    )
    assert "no-model" not in done.stderr
    assert not (tmp_path / "b.safetensors").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_encoding_on_a_gpu_this_machine_lacks_is_a_clear_error(small_dataset, tmp_path):
    """``--device cuda`` (or renderer.device: cuda in the config) where torch sees no GPU."""
    out = tmp_path / "bundle.safetensors"
    done = _fit(small_dataset.root, "--device", "cuda", "--out", out)
    assert done.returncode == 2, done.stderr
    assert "device 'cuda' asked for, but torch" in done.stderr and "use cpu here" in done.stderr
    assert "Traceback" not in done.stderr and not out.exists()


def test_fit_with_a_recipe_that_snaps_c_reads_the_caption_bank_it_is_given(
    small_dataset, tiny_model_dir, tmp_path
):
    config = tmp_path / "snap.yaml"
    config.write_text("fit:\n  alphas: [1.0, 100.0, 10000.0]\n  recipe:\n    snap_c: true\n")
    base = [small_dataset.root, "--config", config, "--model", tiny_model_dir]
    refused = _fit(*base, "--out", tmp_path / "no.safetensors")
    assert refused.returncode != 0
    assert f"{tiny_model_dir / 'caption_bank.txt'} does not exist" in refused.stderr
    assert "--caption-bank" in refused.stderr and "snap_c: false" in refused.stderr
    assert not (tmp_path / "no.safetensors").exists()
    bank = _bank_file(tmp_path)
    out = tmp_path / "snap.safetensors"
    done = _fit(*base, "--caption-bank", bank, "--out", out)
    assert done.returncode == 0, done.stderr
    assert f"c snaps to the nearest of 2 captions ({bank})" in done.stdout
    fitted = DecoderBundle.load(out)
    assert fitted.recipe.snap_c and len(fitted.caption_bank) == 2
