"""``benchmarks.bench_imagery`` end to end on a tiny realistic participant, and its parts."""

from __future__ import annotations

import numpy as np
import pytest

from rt_recon.config import SessionConfig


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory, tiny_model_dir) -> SessionConfig:
    root = tmp_path_factory.mktemp("bench_imagery")
    return SessionConfig.model_validate(
        {
            "paths": {"output_dir": str(root / "run"), "cache_dir": str(root / "cache")},
            "simulation": {
                "participant": "realistic",
                "seed": 0,
                "tr_s": 1.0,
                "image_size": 32,
                "grid": [16, 20, 12],
                "n_train_runs": 2,
                "trials_per_run": 8,
                "stimulus_trs": 2,
                "lead_in_trs": 4,
                "lead_out_trs": 8,
                "motion": 0.0,
                "snr": 3.0,
            },
            "renderer": {"model": str(tiny_model_dir)},
            "fit": {"alphas": [10.0, 1000.0]},
        }
    ).resolved()


@pytest.mark.slow
def test_the_bench_reports_every_condition_with_spread_and_baselines(tiny_config):
    from benchmarks.bench_imagery import CONDITIONS, run

    # one condition of each run kind (vision; imagery, c only; imagery in continuous mode)
    conditions = [c for c in CONDITIONS if c[0] in (CONDITIONS[0][0], "imagery, c only")]
    conditions.append(CONDITIONS[-1])
    result = run(tiny_config, seeds=(0,), render_seeds=(0,), role="test", conditions=conditions)
    assert list(result["results"]) == [c[0] for c in conditions]
    assert "chosen_preset" not in result  # nothing is chosen on the test runs
    lines = result["summary_table"].splitlines()
    for label, _, _, _, _ in conditions:
        (row,) = [line for line in lines if line.startswith(f"| {label} |")]
        assert "%" in row
    for entry in result["results"].values():
        ident = entry["summary"]["model"]["identification"]
        assert 0.0 <= ident["mean"] <= 1.0 and entry["n_trials"] == 8
        assert "true picture, wrong shape" in entry["summary"]
    w = result["window"]
    assert w["lag_s"] == w["lag_trs"] * w["tr_s"] and w["n_window"] >= 1


def test_continuous_mode_is_the_sliding_window_and_trial_mode_uses_the_onsets(tiny_config):
    from benchmarks.bench_imagery import _session, decode_trials, onset_trs
    from rt_recon.acquire.nifti import load_nifti_run
    from rt_recon.apps.demo import ensure_bundle
    from rt_recon.decode.bundle import DecoderBundle
    from rt_recon.evaluate.offline import decode_run
    from rt_recon.render.embedded import resolve_model_path
    from rt_recon.simulators.imagery_runs import ensure_imagery_runs

    sim, vision = _session(tiny_config, 0)
    bundle = DecoderBundle.load(ensure_bundle(vision, resolve_model_path(tiny_config), tiny_config))
    files = ensure_imagery_runs(vision, sim).runs("validation")[0]
    run = load_nifti_run(files.bold, files.events)
    onsets, _ = onset_trs(run.events, len(run.volumes), run.tr_s)
    lag = bundle.window.lag_trs
    kept, continuous = decode_trials(bundle, run.volumes, onsets, continuous=True)
    every_tr = decode_run(bundle, run.volumes)
    assert kept == [o for o in onsets if o + lag < len(run.volumes)] and kept
    for k, onset in enumerate(kept):
        np.testing.assert_allclose(continuous["c"][k], every_tr[onset + lag]["c"], atol=1e-5)
    _, trial = decode_trials(bundle, run.volumes, onsets)
    if bundle.temporal_model.mode == "lss":  # the imagery schedule is not the fitted one
        assert not np.allclose(trial["c"], continuous["c"])


def test_batched_rendering_gives_the_one_at_a_time_pictures(tiny_model_dir):
    from benchmarks.bench_accuracy import render_batch
    from rt_recon.render.img2img import Img2ImgRenderer
    from rt_recon.render.model import load_render_model

    model = load_render_model(tiny_model_dir, with_text=True)
    renderer = Img2ImgRenderer(model, steps=4, strength=0.5, seed=1)
    rng = np.random.default_rng(0)
    z = rng.normal(size=(3, *model.latent_shape)).astype(np.float32)
    c = rng.normal(size=(3, *model.cond_shape)).astype(np.float32)
    single = np.stack([renderer.render(zi, ci) for zi, ci in zip(z, c, strict=True)])
    batched = render_batch(renderer, z, c)
    assert batched.shape == single.shape
    assert np.abs(batched.astype(int) - single).max() <= 2
    assert not np.array_equal(batched[0], batched[1])


def test_the_imagery_preset_is_the_scanner_config_with_the_chosen_renderer():
    from benchmarks.bench_imagery import CHOSEN_PRESET
    from rt_recon.config import load_config
    from tests.conftest import REPO

    imagery = load_config(REPO / "configs" / "imagery.yaml")
    scanner = load_config(REPO / "configs" / "scanner.yaml")
    assert (imagery.renderer.steps, imagery.renderer.strength) == CHOSEN_PRESET
    assert imagery.decoder.mode == "trial"  # the imagery markers carry each trial's onset
    same = {"session": {"id"}, "decoder": {"mode"}, "renderer": {"strength", "steps"}}
    for section, fields in scanner.model_dump().items():
        ours = imagery.model_dump()[section]
        changed = {k for k in fields if ours[k] != fields[k]} if isinstance(fields, dict) else set()
        assert changed <= same.get(section, set()), section
