"""The offline fit recovers a known linear encoding, and the online decoder applies it."""

import numpy as np
import pytest

from rt_recon.config import FitSection
from rt_recon.decode.bundle import ModelSpec, StreamSpec
from rt_recon.decode.fit import Targets, TrainingRun, feature_series, fit_decoders
from rt_recon.decode.online import OnlineDecoder
from rt_recon.errors import DataError
from rt_recon.hrf import regressors
from rt_recon.protocol import trial_samples


def test_trial_samples_are_lag_trs_after_each_onset():
    events = [
        {"onset": 2.0, "duration": 2.0, "stimulus_id": 5},
        {"onset": 6.1, "duration": 1.0, "stimulus_id": 9},
        {"onset": 7.0, "duration": 1.0, "trial_type": "fixation"},
        {"onset": 8.0, "duration": 1.0, "stimulus_id": 4},
    ]
    assert trial_samples(events, n_trs=11, tr_s=1.0, lag_trs=3) == [(5, 5), (9, 9)]  # 11: beyond


#: These tests are about fitting and applying linear maps to flat voxel vectors (no
#: geometry, noise-free baselines), so the preprocessing is the running z-score alone;
#: tests/decode/test_features.py covers the full chain.
_PLAIN = {"motion_correction": False, "despike": False, "detrend": "none"}


def _simulate(rng, n_runs=4, n_trials=40, n_vox=120, n_targets=10, tr_s=1.0, noise=0.5):
    """Runs whose voxels linearly encode each stimulus's target vector, HRF-convolved."""
    n_stim = n_runs * n_trials
    targets = rng.normal(size=(n_stim, n_targets)).astype(np.float32)
    encoding = rng.normal(size=(n_targets, n_vox))
    runs = []
    for r in range(n_runs):
        ids = np.arange(r * n_trials, (r + 1) * n_trials)
        onsets = 4.0 + 3.0 * np.arange(n_trials)
        n_trs = int(onsets[-1] + 16)
        design = regressors(onsets, np.full(n_trials, 2.0), tr_s, n_trs)
        signal = design @ (targets[ids] @ encoding)
        volumes = 100.0 + signal + noise * rng.normal(size=signal.shape)
        events = [
            {"onset": o, "duration": 2.0, "stimulus_id": int(i)}
            for o, i in zip(onsets, ids, strict=True)
        ]
        runs.append(TrainingRun(volumes.astype(np.float32), events, tr_s))
    return runs, Targets(ids=np.arange(n_stim), values={"z": targets}), targets


def _fit(runs, targets, n_vox=120, n_targets=10, **settings):
    return fit_decoders(
        runs,
        {"z": np.arange(n_vox)},
        targets,
        {"z": (n_targets,)},
        FitSection(
            alphas=(0.1, 10.0, 1000.0),
            hrf_window_trs=4,
            zscore_warmup_trs=3,
            **{**_PLAIN, **settings},
        ),
        stream=StreamSpec((n_vox, 1, 1), n_vox, "full"),
        model=ModelSpec("t", (n_targets,), (1, 1), image_size=16),
    )


def _held_out_estimates(bundle, run) -> np.ndarray:
    decoder = OnlineDecoder(bundle)
    estimates = np.array([decoder.update(v)["z"] for v in run.volumes])
    samples = trial_samples(run.events, len(run.volumes), 1.0, bundle.window.lag_trs)
    return estimates[[t for t, _ in samples]]


def test_rescaling_restores_the_spread_ridge_shrinks_away():
    rng = np.random.default_rng(3)
    runs, targets, truth = _simulate(rng, noise=6.0)
    shrunk = _fit(runs[:3], targets, rescale_predictions=False)
    stretched = _fit(runs[:3], targets, rescale_predictions=True)
    report = stretched.report["heads"]["z"]
    assert report["rescaled_outputs"] > 0 and report["median_scale"] > 1.0
    spread = {
        name: _held_out_estimates(b, runs[3]).std(axis=0).mean()
        for name, b in (("shrunk", shrunk), ("stretched", stretched))
    }
    target_spread = truth.std(axis=0).mean()
    assert spread["shrunk"] < spread["stretched"]
    assert abs(spread["stretched"] - target_spread) < abs(spread["shrunk"] - target_spread)


def test_fit_recovers_a_linear_encoding_and_reports_it():
    rng = np.random.default_rng(0)
    runs, targets, _ = _simulate(rng)
    bundle = _fit(runs[:3], targets)
    report = bundle.report["heads"]["z"]
    assert report["cv_r2_mean"] > 0.5
    assert sum(report["alphas_chosen"].values()) == 10
    # decode the held-out run online and compare with the truth at each trial's peak
    held_out = runs[3]
    decoder = OnlineDecoder(bundle)
    estimates = np.array([decoder.update(v)["z"] for v in held_out.volumes])
    samples = trial_samples(held_out.events, len(held_out.volumes), 1.0, bundle.window.lag_trs)
    truth = targets.lookup("z", np.array([sid for _, sid in samples]))
    est = estimates[[t for t, _ in samples]]
    r = np.corrcoef(est.ravel(), truth.ravel())[0, 1]
    assert r > 0.7


def test_online_decoding_equals_offline_features_times_weights():
    rng = np.random.default_rng(1)
    runs, targets, _ = _simulate(rng, n_runs=2)
    bundle = _fit(runs, targets)
    head = bundle.heads["z"]
    features = feature_series(
        runs[0].volumes,
        head.voxels,
        bundle.preprocess,
        np.asarray(bundle.window.hrf_weights),
    )
    offline = features @ head.weights + head.intercept
    decoder = OnlineDecoder(bundle)
    online = np.array([decoder.update(v)["z"] for v in runs[0].volumes])
    full = len(bundle.window.hrf_weights) - 1  # first TR whose window is complete
    np.testing.assert_allclose(online[full:], offline[full:], rtol=1e-4, atol=1e-4)


def test_fit_refuses_too_few_runs_and_missing_targets():
    rng = np.random.default_rng(2)
    runs, targets, _ = _simulate(rng, n_runs=2)
    with pytest.raises(DataError, match="at least 2 runs"):
        _fit(runs[:1], targets)
    partial = Targets(ids=targets.ids[:5], values={"z": targets.values["z"][:5]})
    with pytest.raises(DataError, match="no 'z' target for stimulus ids"):
        _fit(runs, partial)


def test_online_decoder_flags_bad_volumes():
    rng = np.random.default_rng(3)
    runs, targets, _ = _simulate(rng, n_runs=2)
    decoder = OnlineDecoder(_fit(runs, targets))
    volume = runs[0].volumes[0].copy()
    with pytest.raises(Exception, match=r"expects \(120,\)"):
        decoder.preprocess(volume[:100])
    volume[3] = np.nan
    with pytest.raises(DataError, match="1 NaN/Inf"):
        decoder.preprocess(volume)


def _fit_low_rank(runs, targets, rank, n_vox=120, n_targets=10):
    return _fit(runs, targets, n_vox, n_targets, low_rank={"z": rank})


def test_low_rank_head_predicts_through_target_components():
    rng = np.random.default_rng(4)
    # targets that live in a 3-dimensional subspace of 10
    runs, targets, _ = _simulate(rng)
    basis = rng.normal(size=(3, 10)).astype(np.float32)
    targets.values["z"] = (targets.values["z"][:, :3] @ basis).astype(np.float32)
    full = _fit(runs[:3], targets)
    low = _fit_low_rank(runs[:3], targets, rank=3)
    head = low.heads["z"]
    assert head.rank == 3 and head.weights.shape == (120, 3) and head.components.shape == (3, 10)
    assert low.report["heads"]["z"]["target_variance_kept"] > 0.999
    full_est = np.array([OnlineDecoder(full).update(v)["z"] for v in runs[3].volumes])
    decoder = OnlineDecoder(low)
    low_est = np.array([decoder.update(v)["z"] for v in runs[3].volumes])
    samples = trial_samples(runs[3].events, len(runs[3].volumes), 1.0, low.window.lag_trs)
    rows = [t for t, _ in samples]
    truth = targets.lookup("z", np.array([sid for _, sid in samples]))
    r_low = np.corrcoef(low_est[rows].ravel(), truth.ravel())[0, 1]
    r_full = np.corrcoef(full_est[rows].ravel(), truth.ravel())[0, 1]
    assert r_low > 0.7 and r_low >= r_full - 0.05


def test_low_rank_online_equals_offline_features():
    rng = np.random.default_rng(5)
    runs, targets, _ = _simulate(rng, n_runs=2)
    bundle = _fit_low_rank(runs, targets, rank=4)
    head = bundle.heads["z"]
    features = feature_series(
        runs[0].volumes,
        head.voxels,
        bundle.preprocess,
        np.asarray(bundle.window.hrf_weights),
    )
    offline = features @ head.weights @ head.components + head.intercept
    decoder = OnlineDecoder(bundle)
    online = np.array([decoder.update(v)["z"] for v in runs[0].volumes])
    full = len(bundle.window.hrf_weights) - 1
    np.testing.assert_allclose(online[full:], offline[full:], rtol=1e-4, atol=1e-4)


def test_rank_beyond_the_targets_is_refused():
    rng = np.random.default_rng(6)
    runs, targets, _ = _simulate(rng, n_runs=2)
    with pytest.raises(DataError, match="rank 11 exceeds"):
        _fit_low_rank(runs, targets, rank=11)


def test_trial_mode_estimates_grow_into_the_continuous_estimate_at_the_trials_tr():
    rng = np.random.default_rng(7)
    runs, targets, _ = _simulate(rng, n_runs=2)
    bundle = _fit(runs, targets)
    run = runs[0]
    lag, k = bundle.window.lag_trs, len(bundle.window.hrf_weights)
    onset = round(run.events[5]["onset"])  # tr_s = 1
    continuous, trial = OnlineDecoder(bundle), OnlineDecoder(bundle)
    by_tr_cont, by_tr_trial = {}, {}
    for tr, volume in enumerate(run.volumes):
        by_tr_cont[tr] = continuous.decode(continuous.preprocess(volume))["z"]
        by_tr_trial[tr] = trial.decode(trial.preprocess(volume), trial_onset=onset)["z"]
    final = onset + lag
    np.testing.assert_allclose(by_tr_trial[final], by_tr_cont[final], rtol=1e-6)
    # before its window starts, a trial has no evidence: only the intercept
    np.testing.assert_allclose(by_tr_trial[final - k], bundle.heads["z"].intercept, rtol=1e-6)
    # after completion the estimate stays complete (no TR beyond the window counts)
    np.testing.assert_allclose(by_tr_trial[final + 3], by_tr_trial[final], rtol=1e-6)
    truth = targets.lookup("z", np.array([run.events[5]["stimulus_id"]]))[0]
    errors = [np.linalg.norm(by_tr_trial[t] - truth) for t in range(final - k + 1, final + 1)]
    assert errors[-1] < errors[0]  # more of the response seen, a better estimate


def test_missed_trs_are_left_out_of_the_window_not_misassigned():
    rng = np.random.default_rng(8)
    runs, targets, _ = _simulate(rng, n_runs=2)
    bundle = _fit(runs, targets)
    volumes = runs[0].volumes
    complete, gappy = OnlineDecoder(bundle), OnlineDecoder(bundle)
    lag = bundle.window.lag_trs
    t_end = 40
    for tr in range(t_end + 1):
        features = complete.preprocess(volumes[tr])
        out_complete = complete.decode(features, tr=tr)
        if tr == t_end - lag:  # this TR never arrives at the second decoder
            continue
        out_gappy = gappy.decode(gappy.preprocess(volumes[tr]), tr=tr)
    # the gappy estimate at t_end uses the same TRs minus the missing one: close, not equal
    assert not np.allclose(out_gappy["z"], out_complete["z"])
    assert np.linalg.norm(out_gappy["z"] - out_complete["z"]) < np.linalg.norm(out_complete["z"])
