"""The HRF library: its canonical member is the canonical HRF, and each voxel gets the HRF
that generated it (a time-stretched canonical HRF, not a library member) within one step."""

import numpy as np
import pytest

from rt_recon.config import FitSection
from rt_recon.decode.bundle import ModelSpec, StreamSpec
from rt_recon.decode.fit import Targets, TrainingRun, fit_decoders
from rt_recon.decode.hrf_library import (
    CANONICAL_PEAK_S,
    LIBRARY_PEAKS_S,
    choose,
    library_hrf,
    pool_neighbours,
    responses,
    trial_design,
)
from rt_recon.decode.recipe import DecoderRecipe
from rt_recon.errors import DataError
from rt_recon.hrf import block_response, double_gamma

STEP_S = LIBRARY_PEAKS_S[1] - LIBRARY_PEAKS_S[0]


def test_the_library_spans_its_peaks_and_holds_the_canonical_hrf():
    t = np.arange(0, 30, 0.01)
    for peak in LIBRARY_PEAKS_S:
        assert t[np.argmax(library_hrf(peak, t))] == pytest.approx(peak, abs=0.011)
    np.testing.assert_allclose(library_hrf(CANONICAL_PEAK_S, t), double_gamma(t), atol=1e-12)
    np.testing.assert_allclose(
        responses([CANONICAL_PEAK_S], 3.0, 1.5)[0],
        block_response(3.0, np.arange(22) * 1.5),
        atol=1e-12,
    )


def _stretched_design(onsets_s, duration, tr_s, n_trs, peak_s):
    """Design of the canonical HRF stretched in time so that its peak is at ``peak_s``
    (the realistic participant's HRFs: not members of the library)."""
    s = peak_s / CANONICAL_PEAK_S
    frame = np.arange(n_trs) * tr_s
    out = np.empty((n_trs, len(onsets_s)))
    for j, onset in enumerate(onsets_s):
        out[:, j] = block_response(duration / s, (frame - onset) / s)
    return out


#: Generating peaks, each in a block of 8 neighbouring voxels (a flat grid: neighbours
#: along x), the realistic participant's range (canonical +-1.5 s).
TRUE_PEAKS = np.repeat([3.6, 4.3, 5.0, 5.6, 6.4], 8)


def _library_problem(rng, n_runs=4, n_trials=40, tr_s=1.0, duration=2.0, noise=0.3):
    n_vox, n_targets = len(TRUE_PEAKS), 5
    targets = rng.normal(size=(n_runs * n_trials, n_targets)).astype(np.float32)
    encoding = rng.normal(size=(n_targets, n_vox))
    runs = []
    for r in range(n_runs):
        ids = np.arange(r * n_trials, (r + 1) * n_trials)
        onsets = 6.0 + 3.0 * np.arange(n_trials)
        n_trs = int(onsets[-1] + 20)
        amplitudes = targets[ids] @ encoding
        signal = np.empty((n_trs, n_vox))
        for v, peak in enumerate(TRUE_PEAKS):
            signal[:, v] = _stretched_design(onsets, duration, tr_s, n_trs, peak) @ amplitudes[:, v]
        volumes = 100.0 + signal + noise * rng.normal(size=signal.shape)
        events = [
            {"onset": float(o), "duration": duration, "stimulus_id": int(i)}
            for o, i in zip(onsets, ids, strict=True)
        ]
        runs.append(TrainingRun(volumes.astype(np.float32), events, tr_s))
    return runs, Targets(ids=np.arange(len(targets)), values={"z": targets})


@pytest.mark.parametrize("estimate", ["window", "lss"])
def test_each_voxel_gets_the_generating_peak_within_one_library_step(estimate):
    runs, targets = _library_problem(np.random.default_rng(0))
    n_vox = len(TRUE_PEAKS)
    bundle = fit_decoders(
        runs,
        {"z": np.arange(n_vox)},
        targets,
        {"z": (5,)},
        FitSection(
            alphas=(0.1, 10.0, 1000.0),
            zscore_warmup_trs=3,
            motion_correction=False,
            despike=False,
            detrend="none",
        ),
        stream=StreamSpec((n_vox, 1, 1), n_vox, "full"),
        model=ModelSpec("t", (5,), (1, 1), image_size=16),
        recipe=DecoderRecipe(hrf="library", trial_estimate=estimate),
    )
    temporal = bundle.temporal
    chosen = np.asarray(temporal.peaks_s)[temporal.voxel_group]
    error = np.abs(chosen - TRUE_PEAKS)
    # a voxel's choice pools its neighbours': at a block's edge, the next block's count too
    edge = np.zeros(len(TRUE_PEAKS), bool)
    edge[7:-1:8] = edge[8::8] = True
    # a stretched HRF is wider (narrower) than the library member of its peak: a few
    # voxels land one step further out; none beyond two steps
    assert np.mean(error[~edge] <= STEP_S + 1e-9) >= 0.75 and error[~edge].mean() <= 0.15
    assert error.max() <= 2 * STEP_S + 1e-9


def test_choose_takes_the_best_score_and_pools_gains_over_neighbours():
    scores = np.array([[0.1, 0.5, 0.1], [0.3, 0.2, 0.25]])
    np.testing.assert_array_equal(choose(scores), [1, 0, 1])
    coords = np.array([[0, 0, 0], [1, 0, 0], [9, 0, 0]])
    # against member 0: gains 0.2, -0.3, 0.15; the first two are neighbours (mean -0.05)
    np.testing.assert_array_equal(choose(scores, coords, reference=0), [0, 0, 1])
    with pytest.raises(DataError, match="K >= 1"):
        choose(np.zeros((0, 3)))


def test_trial_design_places_each_response_at_its_onset_and_clips_the_run():
    response = np.array([0.0, 1.0, 2.0, 1.0])
    design = trial_design(response, [0, 5, 8], n_trs=10)
    np.testing.assert_array_equal(design[:4, 0], response)
    np.testing.assert_array_equal(design[5:9, 1], response)
    np.testing.assert_array_equal(design[8:, 2], response[:2])  # the run ends first
    assert design.sum() == pytest.approx(2 * response.sum() + 1.0)


def test_pool_neighbours_averages_over_the_box_around_each_voxel():
    coords = np.array([[0, 0, 0], [1, 0, 0], [3, 0, 0], [1, 1, 1]])
    values = np.array([[1.0, 2.0, 4.0, 8.0]])
    pooled = pool_neighbours(values, coords, 3)
    np.testing.assert_allclose(pooled[0], [(1 + 2 + 8) / 3, (1 + 2 + 8) / 3, 4.0, (1 + 2 + 8) / 3])
    with pytest.raises(DataError, match=r"coords must be \(4, 3\)"):
        pool_neighbours(values, coords[:, :2], 3)
