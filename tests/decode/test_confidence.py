"""The per-TR confidence: its statistic and null, the bundle round trip, online == offline."""

import json

import numpy as np
import pytest
from scipy import stats

from rt_recon.decode.bundle import DecoderBundle
from rt_recon.decode.confidence import (
    ConfidenceModel,
    circular_shift_voxels,
    fit_confidence,
)
from rt_recon.decode.online import OnlineDecoder
from rt_recon.errors import BundleError
from rt_recon.protocol import trial_samples
from tests.decode.test_bundle import make_bundle
from tests.decode.test_fit import _fit, _simulate


def _noise_model(rng, n_null=2000, n_z=8, n_c=12, scales=(1.0, 3.0)) -> ConfidenceModel:
    """A model whose null is the decoder's output on Gaussian noise of known spread."""
    intercepts = {"z": rng.normal(size=n_z), "c": rng.normal(size=n_c)}
    spread = {"z": np.linspace(0.5, 2.0, n_z) * scales[0], "c": np.full(n_c, scales[1])}
    null = {h: intercepts[h] + spread[h] * rng.normal(size=(n_null, len(spread[h])))
            for h in intercepts}  # fmt: skip
    return fit_confidence(null, intercepts, use=("z", "c")), intercepts, spread


def test_confidence_of_fresh_null_samples_is_uniform():
    rng = np.random.default_rng(0)
    model, intercepts, spread = _noise_model(rng)

    def draw() -> dict:
        return {h: intercepts[h] + spread[h] * rng.normal(size=len(spread[h])) for h in intercepts}

    fresh = [model.confidence(draw()) for _ in range(600)]
    assert min(fresh) >= 0.0 and max(fresh) <= 1.0
    assert stats.kstest(fresh, "uniform").pvalue > 0.01
    assert abs(np.mean(fresh) - 0.5) < 0.05


def test_the_null_samples_themselves_get_evenly_spread_confidences():
    rng = np.random.default_rng(1)
    model, _, _ = _noise_model(rng, n_null=500)
    own = np.array([model.of_statistic(s) for s in model.null.mean(axis=1)])
    np.testing.assert_allclose(np.sort(own), np.arange(500) / 500)


def test_strong_signal_is_near_one_and_the_intercept_is_zero():
    rng = np.random.default_rng(2)
    model, intercepts, spread = _noise_model(rng)
    signal = {h: intercepts[h] + 5 * spread[h] * rng.normal(size=len(spread[h]))
              for h in intercepts}  # fmt: skip
    assert model.confidence(signal) > 0.99
    assert model.confidence(intercepts) == 0.0
    # each head's statistic averages 1 on its own null: the heads are on one scale
    np.testing.assert_allclose(model.null.mean(axis=0), 1.0, rtol=1e-6)


def test_use_picks_the_heads_the_statistic_averages():
    rng = np.random.default_rng(3)
    model, intercepts, spread = _noise_model(rng)
    c_only = model.with_use(["c"])
    loud_c = {"z": intercepts["z"], "c": intercepts["c"] + 6 * spread["c"]}
    assert c_only.confidence(loud_c) == 1.0
    expected = np.mean((6 * spread["c"] / model.scale["c"]) ** 2)  # the scale: the null's RMS
    assert c_only.statistic(loud_c) == pytest.approx(expected, rel=1e-4)
    assert model.statistic(loud_c) == pytest.approx(expected / 2, rel=1e-4)  # z adds 0
    with pytest.raises(BundleError, match=r"non-empty subset of \['z', 'c'\]"):
        model.with_use(["x"])


def test_circular_shift_keeps_each_voxel_and_the_warm_up():
    rng = np.random.default_rng(4)
    series = rng.normal(size=(50, 6))
    shifted = circular_shift_voxels(series, rng, min_shift=5, start=3)
    np.testing.assert_array_equal(shifted[:3], series[:3])
    for v in range(6):
        np.testing.assert_array_equal(np.sort(shifted[3:, v]), np.sort(series[3:, v]))
        assert not np.array_equal(shifted[3:, v], series[3:, v])


def _runs(rng):
    """Three runs of 24 trials whose 40 voxels encode 6 targets (test_fit's simulation)."""
    runs, targets, _ = _simulate(rng, n_runs=3, n_trials=24, n_vox=40, n_targets=6, noise=1.0)
    return runs, targets


def test_fit_stores_a_null_and_real_trials_stand_above_it(tmp_path):
    rng = np.random.default_rng(5)
    runs, targets = _runs(rng)
    bundle = _fit(runs[:2], targets, n_vox=40, n_targets=6)
    model = bundle.confidence
    assert model is not None and model.heads == ("z",) and model.use == ("z",)
    assert model.report["n_null"] == len(model.null) > 100
    assert bundle.report["confidence"]["n_shifts"] == model.report["n_shifts"]
    decoder = OnlineDecoder(bundle)
    held = runs[2]
    confidences = []
    for volume in held.volumes:
        decoder.update(volume)
        confidences.append(decoder.confidence)
    scored = [t for t, _ in trial_samples(held.events, len(held.volumes), 1.0, decoder.lag)]
    real = np.array([confidences[t] for t in scored])
    assert np.median(real) > 0.9  # a strong encoding stands far above the shifted null


def test_online_confidence_equals_offline_from_the_latents(tmp_path):
    rng = np.random.default_rng(6)
    runs, targets = _runs(rng)
    bundle = DecoderBundle.load(
        _fit(runs[:2], targets, n_vox=40, n_targets=6).save(tmp_path / "b.safetensors")
    )
    decoder = OnlineDecoder(bundle)
    for volume in runs[2].volumes:
        latents = decoder.update(volume)
        assert decoder.confidence == bundle.confidence.confidence(latents)
    fresh = OnlineDecoder(bundle)
    assert fresh.confidence is None  # before its first TR


def _with_confidence(bundle: DecoderBundle) -> DecoderBundle:
    rng = np.random.default_rng(7)
    head = bundle.heads["z"]
    null = head.intercept + rng.normal(size=(300, head.intercept.size)).astype(np.float32)
    bundle.confidence = fit_confidence({"z": null}, {"z": head.intercept}, report={"n": 300})
    return bundle


def test_bundle_round_trip_with_and_without_confidence(tmp_path):
    plain = DecoderBundle.load(make_bundle().save(tmp_path / "plain.safetensors"))
    assert plain.confidence is None
    assert OnlineDecoder(plain).confidence is None
    bundle = _with_confidence(make_bundle())
    loaded = DecoderBundle.load(bundle.save(tmp_path / "conf.safetensors"))
    model = loaded.confidence
    assert model is not None and model.use == ("z",) and model.report == {"n": 300}
    np.testing.assert_array_equal(model.null, bundle.confidence.null)
    np.testing.assert_array_equal(model.scale["z"], bundle.confidence.scale["z"])
    probe = {"z": np.linspace(-2, 2, 8, dtype=np.float32).reshape(2, 2, 2)}
    assert model.confidence(probe) == bundle.confidence.confidence(probe)


def test_a_confidence_entry_without_its_arrays_is_refused(tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import save_file

    path = _with_confidence(make_bundle()).save(tmp_path / "b.safetensors")
    with safe_open(str(path), "np") as f:
        meta = f.metadata()
        arrays = {k: f.get_tensor(k) for k in f.keys() if k != "confidence.null"}  # noqa: SIM118
    save_file(arrays, str(path), metadata=meta)
    with pytest.raises(BundleError, match=r"confidence lacks arrays \['confidence.null'\]"):
        DecoderBundle.load(path)
    assert json.loads(meta["rt_recon_bundle"])["confidence"]["use"] == ["z"]
