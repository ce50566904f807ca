"""The realistic participant's properties, each seen in the data it generates (small grids)."""

from __future__ import annotations

import numpy as np
import pytest

from rt_recon import hrf
from rt_recon.simulators.brain import NoiseModel, SyntheticBrain
from rt_recon.simulators.realistic_brain import RealisticBrain
from rt_recon.simulators.world import BACKGROUNDS, StimulusWorld

GRID = (16, 20, 12)
STILL = NoiseModel.from_simulation(1.0, 0.0)  # no head motion: volumes stay on the grid


@pytest.fixture(scope="module")
def world() -> StimulusWorld:
    return StimulusWorld(seed=2, image_size=32)


@pytest.fixture(scope="module")
def realistic(world) -> RealisticBrain:
    return RealisticBrain(world, grid=GRID, seed=2)


@pytest.fixture(scope="module")
def easy(world) -> SyntheticBrain:
    return SyntheticBrain(world, grid=GRID, seed=2)


def _single_event(brain, tr_s=0.25, n_trs=120):
    """Noise-free ROI signals ``(n_trs, n_roi)`` after one picture shown at 2 s for 1 s."""
    _, truth = brain.simulate_run(
        np.array([7]), np.array([2.0]), np.array([1.0]), tr_s, n_trs, STILL,
        np.random.default_rng(0),
    )  # fmt: skip
    return np.hstack([truth["signal_ev"], truth["signal_hv"]])


def test_uniform_luminance_drives_early_visual_cortex_far_less_than_a_picture(realistic, world):
    size = world.image_size
    uniform = np.stack(
        [np.full((size, size, 3), colour, dtype=np.uint8) for colour in BACKGROUNDS.values()]
        + [np.full((size, size, 3), 255, dtype=np.uint8)]
    )
    pictures = world.images(np.arange(12))
    responsive = realistic.responsive["ev"]
    to_uniform = np.abs(realistic.image_responses(uniform))[:, responsive].mean()
    to_pictures = np.abs(realistic.image_responses(pictures))[:, responsive].mean()
    assert to_uniform < 0.25 * to_pictures


def test_early_visual_responses_compress_contrast(realistic, world):
    pictures = world.images(np.arange(12)).astype(np.float64)
    grey = 128.0

    def at_contrast(k: float) -> np.ndarray:
        return np.clip(np.rint(grey + k * (pictures - grey)), 0, 255).astype(np.uint8)

    responsive = realistic.responsive["ev"]
    full = np.abs(realistic.image_responses(at_contrast(1.0))[:, responsive]).mean(axis=0)
    half = np.abs(realistic.image_responses(at_contrast(0.5))[:, responsive]).mean(axis=0)
    ratio = np.median(full / half)
    # contrast energy grows as k**2; CSS exponents 0.2-0.5 leave k**0.4 to k**1
    assert 1.1 < ratio < 1.8


def test_voxel_hrf_peaks_spread_about_one_and_a_half_seconds_around_the_canonical(realistic, easy):
    tr_s = 0.25
    signal = _single_event(realistic, tr_s)
    moving = np.abs(signal).max(axis=0) > 0
    peaks = np.argmax(np.abs(signal[:, moving]), axis=0) * tr_s - 2.0
    times = np.arange(0, 30, 0.01)
    canonical = times[np.argmax(hrf.block_response(1.0, times))]
    shift = peaks - canonical
    assert np.all(np.abs(shift) <= 1.5 + tr_s)
    assert shift.max() - shift.min() >= 1.5  # voxels differ, by more than a second
    assert np.median(shift) > 0  # the participant's HRF is not the decoder's canonical one
    easy_peaks = np.argmax(np.abs(_single_event(easy, tr_s)), axis=0) * tr_s - 2.0
    assert np.ptp(easy_peaks) <= tr_s  # the easy participant: every voxel the canonical HRF


def test_a_fraction_of_roi_voxels_does_not_respond_and_gains_vary(realistic, easy):
    silent = np.abs(_single_event(realistic)).max(axis=0) == 0
    assert 0.1 < silent.mean() < 0.3  # 20% by design, on ~240 voxels
    assert not (np.abs(_single_event(easy)).max(axis=0) == 0).any()
    spread = realistic.responses(np.arange(40))["ev"].std(axis=0)
    spread = spread[spread > 0]
    assert np.percentile(spread, 90) / np.percentile(spread, 10) > 2.0  # lognormal gains
    easy_spread = easy.responses(np.arange(40))["ev"].std(axis=0)
    assert np.percentile(easy_spread, 90) / np.percentile(easy_spread, 10) < 1.5


def _repeat_amplitudes(brain, n_trials=12, spacing_s=24.0):
    """Each responsive voxel's peak |signal| in each of ``n_trials`` showings of one picture."""
    onsets = 2.0 + spacing_s * np.arange(n_trials)
    n_trs = int(onsets[-1] + spacing_s)
    _, truth = brain.simulate_run(
        np.full(n_trials, 11), onsets, np.full(n_trials, 2.0), 1.0, n_trs, STILL,
        np.random.default_rng(1),
    )  # fmt: skip
    signal = np.hstack([truth["signal_ev"], truth["signal_hv"]])
    signal = signal[:, np.abs(signal).max(axis=0) > 0]
    windows = np.stack([np.abs(signal[int(o) : int(o + spacing_s)]).max(axis=0) for o in onsets])
    return windows  # (n_trials, n_voxels)


def test_the_same_picture_evokes_a_different_amplitude_on_each_trial(realistic, easy):
    amplitudes = _repeat_amplitudes(realistic)
    cv = amplitudes.std(axis=0) / amplitudes.mean(axis=0)
    assert 0.15 < np.median(cv) < 0.45  # trial gain CV 0.3, half of it shared: few draws
    easy_amplitudes = _repeat_amplitudes(easy)
    assert np.median(easy_amplitudes.std(axis=0) / easy_amplitudes.mean(axis=0)) < 0.02


def _residual_pc_share(brain, n_pcs=3) -> float:
    """Share of ROI noise variance in its first ``n_pcs`` principal components."""
    n_trials, tr_s = 12, 1.0
    onsets = 4.0 + 3.0 * np.arange(n_trials)
    n_trs = int(onsets[-1]) + 12
    bold, truth = brain.simulate_run(
        np.arange(n_trials), onsets, np.full(n_trials, 2.0), tr_s, n_trs, STILL,
        np.random.default_rng(5),
    )  # fmt: skip
    index = np.concatenate([brain.ev_index, brain.hv_index])
    volumes = bold.transpose(3, 2, 1, 0).reshape(n_trs, -1)[:, index].astype(np.float64)
    baseline = np.ravel(brain.baseline, order="F")[index]
    psc = 100.0 * (volumes / baseline - 1.0)
    residual = psc - np.hstack([truth["signal_ev"], truth["signal_hv"]])
    keep = np.setdiff1d(np.arange(n_trs), truth["spike_trs"])
    t = np.linspace(0, 1, n_trs)[keep, None]
    drift = np.hstack([np.ones_like(t), t, np.cos(np.pi * t), np.cos(2 * np.pi * t)])
    residual = residual[keep]
    residual -= drift @ np.linalg.lstsq(drift, residual, rcond=None)[0]
    residual /= residual.std(axis=0)
    variances = np.linalg.svd(residual, compute_uv=False) ** 2
    return float(variances[:n_pcs].sum() / variances.sum())


def test_noise_has_low_rank_shared_structure(realistic, easy):
    realistic_share, easy_share = _residual_pc_share(realistic), _residual_pc_share(easy)
    assert realistic_share > easy_share + 0.15
