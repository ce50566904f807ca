"""Every decoder recipe: online == offline, what the fit fitted on is what the decoder
computes, bundles keep the recipe, and a version-1 bundle decodes as before."""

import json

import numpy as np
import pytest
from safetensors import safe_open

from rt_recon._safetensors import save_arrays
from rt_recon.config import FitSection
from rt_recon.decode.bundle import DecoderBundle, ModelSpec, StreamSpec
from rt_recon.decode.features import FeatureExtractor
from rt_recon.decode.fit import (
    DecoderPlan,
    Targets,
    TrainingRun,
    extract_runs,
    fit_decoders,
    trial_features,
)
from rt_recon.decode.hrf_library import responses, trial_design
from rt_recon.decode.online import OnlineDecoder
from rt_recon.decode.recipe import DecoderRecipe
from rt_recon.errors import BundleError, DataError
from rt_recon.protocol import onset_tr_from_seconds, trial_samples

TR_S, DURATION = 1.0, 2.0
N_HEAD, N_OUTSIDE, N_TARGETS = 48, 40, 6
HEADS = {"z": np.arange(0, 28), "c": np.arange(20, N_HEAD)}  # overlapping heads
OUTSIDE = np.arange(N_HEAD, N_HEAD + N_OUTSIDE)
_PLAIN = {"motion_correction": False, "despike": False, "detrend": "none"}

RECIPES = [
    DecoderRecipe(),
    DecoderRecipe(hrf="library"),
    DecoderRecipe(denoise_pcs=2, pool_size=20),
    DecoderRecipe(trial_estimate="lss", lss_window_trs=7),
    DecoderRecipe(select_voxels=0.5),
    DecoderRecipe(
        hrf="library", denoise_pcs=2, trial_estimate="lss", select_voxels="auto", pool_size=20
    ),
]


def _simulate(rng, n_runs=3, n_trials=30):
    """Head voxels encode the targets with HRF peaks from 4 to 6.5 s (a third of them
    nothing), every voxel carries a shared slow component; outside voxels only noise."""
    n_stim = n_runs * n_trials
    targets = rng.normal(size=(n_stim, N_TARGETS)).astype(np.float32)
    encoding = rng.normal(size=(N_TARGETS, N_HEAD)) * (rng.random(N_HEAD) > 0.33)
    peaks = rng.choice([4.0, 5.0, 6.5], N_HEAD)
    load = rng.uniform(0.5, 1.5, N_HEAD + N_OUTSIDE)
    runs = []
    for r in range(n_runs):
        ids = np.arange(r * n_trials, (r + 1) * n_trials)
        onsets = 5.0 + 3.0 * np.arange(n_trials) + rng.integers(0, 2, n_trials)
        n_trs = int(onsets[-1] + 16)
        amplitudes = targets[ids] @ encoding
        signal = np.zeros((n_trs, N_HEAD + N_OUTSIDE))
        for peak in np.unique(peaks):
            cols = np.flatnonzero(peaks == peak)
            resp = responses([peak], DURATION, TR_S)[0]
            design = trial_design(resp, [onset_tr_from_seconds(o, TR_S) for o in onsets], n_trs)
            signal[:, cols] = design @ amplitudes[:, cols]
        shared = np.convolve(rng.normal(size=n_trs), np.ones(6) / 6, "same")
        noise = np.outer(shared, load) * 3 + 0.5 * rng.normal(size=signal.shape)
        volumes = 100.0 + signal + noise
        events = [
            {"onset": float(o), "duration": DURATION, "stimulus_id": int(i)}
            for o, i in zip(onsets, ids, strict=True)
        ]
        runs.append(TrainingRun(volumes.astype(np.float32), events, TR_S))
    return runs, Targets(ids=np.arange(n_stim), values={"z": targets, "c": targets[:, ::-1]})


@pytest.fixture(scope="module")
def problem():
    return _simulate(np.random.default_rng(0))


def _fit_section(**settings) -> FitSection:
    return FitSection(
        alphas=(0.1, 10.0, 1000.0), hrf_window_trs=4, zscore_warmup_trs=3, **_PLAIN, **settings
    )


def _fit(runs, targets, recipe, **settings) -> DecoderBundle:
    n = N_HEAD + N_OUTSIDE
    return fit_decoders(
        runs,
        HEADS,
        targets,
        {"z": (N_TARGETS,), "c": (N_TARGETS,)},
        _fit_section(**settings),
        stream=StreamSpec((n, 1, 1), n, "full"),
        model=ModelSpec("t", (N_TARGETS,), (N_TARGETS,), image_size=16),
        recipe=recipe,
        noise_candidates=OUTSIDE,
    )


def _onsets(run) -> list[int]:
    return [onset_tr_from_seconds(e["onset"], run.tr_s) for e in run.events]


def _offline_latents(bundle: DecoderBundle, run) -> dict[int, dict[str, np.ndarray]]:
    """Latents at each trial's scored TR, written out with numpy from the bundle's arrays."""
    decoder = OnlineDecoder(bundle)  # for its voxel lists only
    n = run.volumes.shape[1]
    extractor = FeatureExtractor(bundle.preprocess, decoder.voxels, (n, 1, 1), np.eye(4))
    x = np.stack([extractor.update(v) for v in run.volumes]).astype(np.float64)
    decoded_cols = np.searchsorted(decoder.voxels, decoder.decoded)
    clean = x[:, decoded_cols]
    if bundle.noise is not None:
        pool = x[:, np.searchsorted(decoder.voxels, bundle.noise.pool)]
        clean = clean - pool @ bundle.noise.components @ bundle.noise.weights
    t_model = bundle.temporal_model
    group = np.zeros(clean.shape[1], int) if t_model.voxel_group is None else t_model.voxel_group
    lag, n_window = t_model.lag_trs, t_model.n_window
    onsets = _onsets(run)
    out = {}
    for scored, _ in trial_samples(run.events, len(x), run.tr_s, lag):
        onset = scored - lag
        trs = onset + lag - np.arange(n_window)
        inside = trs >= 0
        if t_model.mode == "window":
            w = t_model.window_weights.astype(np.float64)[:, inside]
            estimate = np.einsum("vm,mv->v", w[group], clean[trs[inside]]) / w.sum(axis=1)[group]
        else:
            rel = lag - np.arange(n_window)
            weights = []
            for resp in t_model.responses:
                own = np.array([resp[r] if 0 <= r < len(resp) else 0.0 for r in rel])
                other = np.zeros(n_window)
                for o in onsets:
                    if o != onset:
                        d = rel - (o - onset)
                        other += np.array([resp[r] if 0 <= r < len(resp) else 0.0 for r in d])
                design = np.column_stack([own, other])
                weights.append(np.linalg.pinv(design)[0])
            w = np.asarray(weights)[:, inside]
            estimate = np.einsum("vm,mv->v", w[group], clean[trs[inside]])
        latents = {}
        for name, head in bundle.heads.items():
            z = estimate[np.searchsorted(decoder.decoded, head.voxels)] @ head.weights
            if head.components is not None:
                z = z @ head.components
            latents[name] = z + head.intercept
        out[scored] = latents
    return out


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.name for r in RECIPES])
def test_online_equals_offline_for_every_recipe(problem, recipe, tmp_path):
    runs, targets = problem
    bundle = _fit(runs, targets, recipe)
    assert bundle.recipe == recipe and bundle.report["recipe_name"] == recipe.name
    bundle = DecoderBundle.load(bundle.save(tmp_path / "b.safetensors"))  # what a node loads
    assert bundle.recipe == recipe
    run = runs[0]
    offline = _offline_latents(bundle, run)
    decoder = OnlineDecoder(bundle)
    onsets = _onsets(run)
    online = {}
    for tr, volume in enumerate(run.volumes):
        # trial mode: the trial whose window is filling, as the tracker would say
        current = min((o for o in onsets if o + bundle.window.lag_trs >= tr), default=onsets[-1])
        out = decoder.decode(decoder.preprocess(volume), tr, trial_onset=current, onsets=onsets)
        if tr == current + bundle.window.lag_trs:
            online[tr] = out
    assert online.keys() == offline.keys() and len(online) == len(run.events)
    for tr, latents in offline.items():
        for name in ("z", "c"):
            np.testing.assert_allclose(online[tr][name], latents[name], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("recipe", RECIPES[1:], ids=[r.name for r in RECIPES[1:]])
def test_the_decoder_computes_what_the_fit_fitted_on(problem, recipe):
    runs, targets = problem
    bundle = _fit(runs, targets, recipe)
    decoder = OnlineDecoder(bundle)
    plan = DecoderPlan(
        recipe,
        {n: h.voxels for n, h in bundle.heads.items()},
        decoder.decoded,
        bundle.temporal_model,
        bundle.noise,
        bundle.window,
        {},
    )
    extracted = extract_runs(runs, decoder.voxels, _fit_section(), bundle.stream)
    fitted, ids, groups = trial_features(extracted, plan)
    first = groups == 0
    lag = bundle.window.lag_trs
    samples = [
        s for s in trial_samples(runs[0].events, len(runs[0].volumes), TR_S, lag) if s[0] >= 3
    ]
    online = {}
    for tr, volume in enumerate(runs[0].volumes):
        estimate = decoder.estimate(decoder.preprocess(volume), tr, onsets=_onsets(runs[0]))
        online[tr] = estimate
    np.testing.assert_array_equal(ids[first], [sid for _, sid in samples])
    np.testing.assert_allclose(
        np.stack([online[t] for t, _ in samples]), fitted[first], rtol=1e-5, atol=1e-5
    )


def test_recipe_reports_and_selection(problem):
    runs, targets = problem
    bundle = _fit(runs, targets, RECIPES[-1])
    report = bundle.report
    assert report["denoise"]["n_components"] == 2 and report["denoise"]["pool_voxels"] == 20
    assert set(report["hrf"]["voxels_per_peak"]) <= {f"{p:g}" for p in bundle.temporal.peaks_s}
    for name, head in bundle.heads.items():
        entry = report["select"][name]
        assert len(head.voxels) == entry["kept"] < len(HEADS[name])
        assert set(entry["cv_r2_by_fraction"]) == {"0.1", "0.25", "0.5", "0.75", "1"}
    assert np.isin(bundle.noise.pool, OUTSIDE).all()


def test_denoising_needs_pool_candidates(problem):
    runs, targets = problem
    n = N_HEAD + N_OUTSIDE
    with pytest.raises(DataError, match="no noise-pool candidates"):
        fit_decoders(
            runs,
            HEADS,
            targets,
            {"z": (N_TARGETS,), "c": (N_TARGETS,)},
            _fit_section(),
            stream=StreamSpec((n, 1, 1), n, "full"),
            model=ModelSpec("t", (N_TARGETS,), (N_TARGETS,), image_size=16),
            recipe=DecoderRecipe(denoise_pcs=2),
        )


def _as_version_1(path, out):
    """Rewrite a bundle file as rt_recon wrote it before recipes (version 1)."""
    with safe_open(str(path), framework="numpy") as fh:
        meta = json.loads(fh.metadata()["rt_recon_bundle"])
        arrays = {k: fh.get_tensor(k) for k in list(fh.keys())}
    meta = {k: v for k, v in meta.items() if k not in ("recipe", "temporal")}
    meta["version"] = 1
    save_arrays(arrays, out, metadata={"rt_recon_bundle": json.dumps(meta)})
    return out


def test_a_version_1_bundle_loads_and_decodes_as_before(problem, tmp_path):
    runs, targets = problem
    bundle = _fit(runs, targets, DecoderRecipe())
    assert bundle.temporal is not None  # written by this version with its temporal model
    old = DecoderBundle.load(
        _as_version_1(bundle.save(tmp_path / "b.safetensors"), tmp_path / "old.safetensors")
    )
    assert old.version == 1 and old.recipe == DecoderRecipe() and old.temporal is None
    assert old.noise is None
    run = runs[1]
    decoder = OnlineDecoder(old)
    online = np.stack([decoder.update(v)["z"] for v in run.volumes])
    # before recipes: each TR projected, the projections HRF-weighted over the window
    head = old.heads["z"]
    weights = np.asarray(old.window.hrf_weights, dtype=np.float32)
    n = run.volumes.shape[1]
    extractor = FeatureExtractor(old.preprocess, decoder.voxels, (n, 1, 1), np.eye(4))
    features = np.stack([extractor.update(v) for v in run.volumes])
    projections = features[:, np.searchsorted(decoder.voxels, head.voxels)] @ head.weights
    k = len(weights)
    before = (
        np.stack(
            [
                sum(weights[m] * projections[t - m] for m in range(k)) / weights.sum()
                for t in range(k - 1, len(run.volumes))
            ]
        )
        + head.intercept
    )
    np.testing.assert_allclose(online[k - 1 :], before, rtol=1e-4, atol=1e-4)
    # and the same as this version's bundle of the default recipe
    new = OnlineDecoder(bundle)
    np.testing.assert_allclose(
        online, np.stack([new.update(v)["z"] for v in run.volumes]), rtol=1e-5, atol=1e-6
    )


def test_bundle_versions_and_recipes_are_checked(problem, tmp_path):
    runs, targets = problem
    path = _fit(runs, targets, DecoderRecipe()).save(tmp_path / "b.safetensors")
    with safe_open(str(path), framework="numpy") as fh:
        meta = json.loads(fh.metadata()["rt_recon_bundle"])
        arrays = {k: fh.get_tensor(k) for k in list(fh.keys())}
    for change, message in (
        ({"version": 3}, "reads versions 1, 2"),
        ({"recipe": {"hrf": "wavelet"}}, "'canonical' or 'library'"),
        ({"recipe": {"colour": 1}}, "unknown keys"),
    ):
        bad = tmp_path / "bad.safetensors"
        save_arrays(arrays, bad, metadata={"rt_recon_bundle": json.dumps({**meta, **change})})
        with pytest.raises(BundleError, match=message):
            DecoderBundle.load(bad)


def test_recipe_names_json_and_refusals():
    recipe = DecoderRecipe(hrf="library", denoise_pcs=3, trial_estimate="lss", select_voxels=1)
    assert recipe.name == "library+pcs3+lss+select(1.0)" and DecoderRecipe().name == "today"
    assert DecoderRecipe.from_json(recipe.to_json()) == recipe
    for bad, message in (
        ({"hrf": "fir"}, "'canonical' or 'library'"),
        ({"trial_estimate": "lsa"}, "'window' or 'lss'"),
        ({"denoise_pcs": -1}, "integer >= 0"),
        ({"select_voxels": 1.5}, r"fraction in \(0, 1\]"),
        ({"select_voxels": True}, r"fraction in \(0, 1\]"),
        ({"lss_window_trs": 2}, ">= 3"),
    ):
        with pytest.raises(DataError, match=message):
            DecoderRecipe(**bad)
