"""The realistic participant imagining a picture: weaker, blurrier early visual responses, higher
visual ones nearer vision's; seeing stays what it was (small grids)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from rt_recon.errors import ConfigError, DataError
from rt_recon.simulators.brain import NoiseModel
from rt_recon.simulators.participant import Imagery, RealisticParticipant
from rt_recon.simulators.realistic_brain import RealisticBrain
from rt_recon.simulators.world import StimulusWorld

GRID = (16, 20, 12)
STILL = NoiseModel.from_simulation(1.0, 0.0)
IDS = np.arange(80)


@pytest.fixture(scope="module")
def world() -> StimulusWorld:
    return StimulusWorld(seed=2, image_size=32)


@pytest.fixture(scope="module")
def brain(world) -> RealisticBrain:
    return RealisticBrain(world, grid=GRID, seed=2)


def _per_voxel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Correlation over pictures of each column of ``a`` with the same column of ``b``."""
    a, b = a - a.mean(axis=0), b - b.mean(axis=0)
    return (a * b).sum(axis=0) / np.sqrt((a**2).sum(axis=0) * (b**2).sum(axis=0))


def _spread_ratio(imagined: np.ndarray, seen: np.ndarray) -> float:
    return float(np.median(imagined.std(axis=0) / seen.std(axis=0)))


@pytest.mark.parametrize("ev_gain", [0.3, 0.6])
def test_imagined_early_visual_responses_are_weaker_by_the_set_gain(world, ev_gain):
    brain = RealisticBrain(
        world, grid=GRID, seed=2, params=RealisticParticipant(imagery=Imagery(ev_gain=ev_gain))
    )
    seen, imagined = brain.responses(IDS), brain.imagery_responses(IDS)
    on = brain.responsive["ev"]
    # both are normalised over the world's pictures, these 80 are a sample of them
    assert _spread_ratio(imagined["ev"][:, on], seen["ev"][:, on]) == pytest.approx(
        ev_gain, rel=0.1
    )
    assert np.all(imagined["ev"][:, ~on] == 0)  # a voxel that does not respond to seeing


def test_imagined_early_visual_responses_follow_the_blurred_picture(brain, world):
    """Lower spatial frequency and broader pooling: imagery resembles seeing the picture
    blurred more than seeing it sharp."""
    on = brain.responsive["ev"]
    pictures = world.images(IDS)
    sigma = brain.params.imagery.lowpass_sigma_px * world.image_size / 64
    blurred = np.rint(gaussian_filter(pictures.astype(float), (0, sigma, sigma, 0)))
    imagined = brain.imagery_responses(IDS)["ev"][:, on]
    to_sharp = _per_voxel(imagined, brain.image_responses(pictures)[:, on])
    to_blurred = _per_voxel(imagined, brain.image_responses(blurred.astype(np.uint8))[:, on])
    assert np.median(to_blurred) > np.median(to_sharp) + 0.02
    assert np.mean(to_blurred > to_sharp) > 0.8
    assert np.median(to_sharp) < 0.97  # imagery is not vision scaled down


def test_higher_visual_imagery_is_closer_to_vision_than_early_visual(brain):
    seen, imagined = brain.responses(IDS), brain.imagery_responses(IDS)
    closeness = {}
    for roi in ("ev", "hv"):
        on = brain.responsive[roi]
        ratio = _spread_ratio(imagined[roi][:, on], seen[roi][:, on])
        closeness[roi] = (ratio, np.median(_per_voxel(imagined[roi][:, on], seen[roi][:, on])))
    assert closeness["hv"][0] == pytest.approx(brain.params.imagery.hv_gain)
    assert closeness["hv"][0] > closeness["ev"][0] and closeness["hv"][1] > closeness["ev"][1]


def _run(brain, imagery, seed=0):
    ids, onsets = np.array([3, 9, 14, 20]), np.array([4.0, 10.0, 16.0, 22.0])
    return brain.simulate_run(
        ids, onsets, np.full(4, 2.0), 1.0, 34, STILL, np.random.default_rng(seed),
        day=brain.scan_day(2), imagery=imagery,
    )  # fmt: skip


def test_a_run_of_seen_trials_is_the_vision_run_bit_for_bit(brain):
    bold, truth = _run(brain, None)
    seen_bold, seen_truth = _run(brain, np.zeros(4, dtype=bool))
    assert np.array_equal(bold, seen_bold) and "imagery" not in truth
    assert np.array_equal(truth["signal_ev"], seen_truth["signal_ev"])


def test_imagined_trials_stand_weaker_against_the_noise_of_the_run_seen(brain):
    _, seen = _run(brain, None)
    _, imagined = _run(brain, np.ones(4, dtype=bool))
    assert imagined["noise_std"][0] == pytest.approx(seen["noise_std"][0])
    ratio = {}
    for roi in ("ev", "hv"):
        on = brain.responsive[roi]
        ratio[roi] = imagined[f"signal_{roi}"][:, on].std() / seen[f"signal_{roi}"][:, on].std()
    # HV is vision's response scaled; EV's spread over pictures is scaled by ev_gain, but its
    # response to any picture against the blank (the on/off part of the signal) by more
    assert ratio["hv"] == pytest.approx(brain.params.imagery.hv_gain, rel=1e-4)
    assert ratio["ev"] < 0.55 < ratio["hv"]
    assert list(imagined["imagery"]) == [1, 1, 1, 1]


def test_bad_imagery_input_is_refused_with_what_was_expected(brain):
    with pytest.raises(DataError, match=r"one bool per trial, shape \(4,\)"):
        _run(brain, np.ones(3, dtype=bool))
    with pytest.raises(ConfigError, match="ev_gain"):
        Imagery(ev_gain=-0.1)
