"""Noise components from a pool outside the ROIs remove a shared component and keep the task."""

import numpy as np
import pytest

from rt_recon.decode.denoise import Denoiser, NoiseModel, fit_noise_model, task_r2
from rt_recon.decode.hrf_library import responses, trial_design
from rt_recon.errors import BundleError, DataError

TR_S = 1.5


def _runs(rng, n_runs=4, n_trs=150, n_roi=40, n_pool=80, shared_scale=2.0):
    """ROI voxels: trial responses + a shared slow component + white noise; pool voxels: the
    shared component + noise, and a few that respond to the task (to be kept out of the pool)."""
    response = responses([5.0], 3.0, TR_S)[0]
    roi_load = rng.uniform(0.5, 1.5, n_roi)
    pool_load = rng.uniform(0.5, 1.5, n_pool)
    runs, truths = [], []
    for _ in range(n_runs):
        onsets = list(range(6, n_trs - 20, 3))
        task = trial_design(response, onsets, n_trs) @ rng.normal(1.0, 1.0, (len(onsets), n_roi))
        shared = np.convolve(rng.normal(size=n_trs + 20), np.ones(8) / 8, "same")[10:-10]
        shared = shared_scale * shared / shared.std()
        roi = task + np.outer(shared, roi_load) + 0.3 * rng.normal(size=(n_trs, n_roi))
        pool = np.outer(shared, pool_load) + 0.3 * rng.normal(size=(n_trs, n_pool))
        k = min(5, n_pool)
        pool[:, :k] += task[:, :k]  # task-driven voxels among the candidates
        runs.append((pool.astype(np.float32), roi.astype(np.float32), onsets))
        truths.append((task, shared))
    return runs, truths, response


def test_noise_components_remove_an_injected_shared_component():
    rng = np.random.default_rng(0)
    runs, truths, response = _runs(rng)
    candidates = np.arange(100, 180)
    model, report = fit_noise_model(runs, candidates, response, 1, pool_size=60)
    assert report["pool_voxels"] == 60 and not np.isin(candidates[:5], model.pool).any()
    extracted = np.concatenate([np.arange(40), candidates])
    denoiser = Denoiser(model, extracted, np.arange(40))
    for (pool, roi, _), (task, shared) in zip(runs, truths, strict=True):
        clean = denoiser.apply(np.hstack([roi, pool]))
        # each voxel's loading on the shared component, with the task partialled out
        design = np.column_stack([shared, np.ones(len(shared))])
        before = np.abs(np.linalg.lstsq(design, roi - task, rcond=None)[0][0])
        after = np.abs(np.linalg.lstsq(design, clean - task, rcond=None)[0][0])
        assert after.mean() < 0.05 * before.mean()
        fit_before = np.mean([np.corrcoef(roi[:, v], task[:, v])[0, 1] for v in range(40)])
        fit_after = np.mean([np.corrcoef(clean[:, v], task[:, v])[0, 1] for v in range(40)])
        assert fit_after > fit_before + 0.1  # the task signal is kept, and clearer
    # one TR at a time gives the rows of the whole-run result
    row = denoiser.apply(np.concatenate([runs[0][1][7], runs[0][0][7]]))
    np.testing.assert_allclose(row, denoiser.apply(np.hstack([runs[0][1], runs[0][0]]))[7])


def test_task_r2_finds_the_task_driven_voxels():
    rng = np.random.default_rng(1)
    runs, _, response = _runs(rng, n_runs=1, shared_scale=0.0)
    r2 = task_r2(runs[0][0], response, runs[0][2])
    assert r2[:5].min() > np.percentile(r2[5:], 95)


def test_noise_model_checks():
    rng = np.random.default_rng(2)
    runs, _, response = _runs(rng, n_runs=2, n_pool=3)
    with pytest.raises(DataError, match="fewer than the 5 components"):
        fit_noise_model(runs, np.arange(3), response, 5, pool_size=10)
    with pytest.raises(DataError, match="at least 1 component"):
        fit_noise_model(runs, np.arange(3), response, 0, pool_size=10)
    with pytest.raises(BundleError, match="must be"):
        NoiseModel(np.arange(3), np.zeros((4, 2)), np.zeros((2, 5)))
    model = NoiseModel(np.arange(3), np.zeros((3, 2)), np.zeros((2, 5)))
    with pytest.raises(BundleError, match="the heads read 4"):
        Denoiser(model, np.arange(10), np.arange(3, 7))
    assert NoiseModel.from_arrays({}) is None
    with pytest.raises(BundleError, match="lacks"):
        NoiseModel.from_arrays({"denoise.pool": np.arange(3)})
