"""The live participant: volume t from the pictures shown before it, reproducible from the seed."""

from __future__ import annotations

import numpy as np
import pytest

from rt_recon.errors import DataError
from rt_recon.simulators.brain import NoiseModel
from rt_recon.simulators.live_participant import LiveParticipant, reference_noise_std
from rt_recon.simulators.session import build_brain
from tests.conftest import SMALL_SIM

TR_S = 0.5
N_TRS = 24


@pytest.fixture(scope="module", params=["easy", "realistic"])
def brain_and_sim(request):
    sim = SMALL_SIM.model_copy(update={"participant": request.param, "tr_s": TR_S})
    return build_brain(sim), sim


def _participant(
    brain_and_sim, seed: int = 0, run: int = 1, motion: float | None = None
) -> LiveParticipant:
    brain, sim = brain_and_sim
    return LiveParticipant(
        brain,
        NoiseModel.from_simulation(sim.snr, sim.motion if motion is None else motion),
        reference_noise_std(brain, sim),
        tr_s=TR_S,
        n_trs=N_TRS,
        seed=seed,
        run=run,
    )


def _volumes(participant: LiveParticipant) -> np.ndarray:
    return np.stack([participant.volume(t) for t in range(N_TRS)])


def test_same_seed_and_pictures_give_the_same_volumes_bit_for_bit(brain_and_sim):
    brain, _ = brain_and_sim
    ids = brain.world.training_ids()[:2]
    runs = []
    for _ in range(2):
        p = _participant(brain_and_sim)
        p.show(int(ids[0]), 1.3, 2.0)
        p.show(int(ids[1]), 4.1, 2.0)
        runs.append(_volumes(p))
    assert runs[0].dtype == np.int16 and runs[0].shape == (N_TRS, *brain.grid)
    np.testing.assert_array_equal(runs[0], runs[1])
    other_run = _volumes(_participant(brain_and_sim, run=2))
    other_seed = _volumes(_participant(brain_and_sim, seed=1))
    assert not np.array_equal(runs[0][0], other_run[0])  # each run draws its own noise
    assert not np.array_equal(runs[0][0], other_seed[0])


def test_a_picture_changes_only_the_volumes_acquired_after_its_onset(brain_and_sim):
    brain, _ = brain_and_sim
    onset = 3.0  # volume 6 is acquired at its onset: the HRF is 0 there
    # no head motion: the two runs' volumes then differ by the response alone
    seen, unseen = _participant(brain_and_sim, motion=0.0), _participant(brain_and_sim, motion=0.0)
    seen.show(int(brain.world.training_ids()[0]), onset, 2.0)
    before = int(onset / TR_S)
    a, b = _volumes(seen), _volumes(unseen)
    np.testing.assert_array_equal(a[: before + 1], b[: before + 1])
    # 5 s after the onset, early visual cortex responds: the difference is the response
    later = before + 10
    diff = np.ravel(a[later], order="F").astype(float) - np.ravel(b[later], order="F")
    ev = brain.ev_index
    expected = np.ravel(brain.baseline, order="F")[ev] * seen.signal(later)["ev"] / 100.0
    assert np.abs(expected).max() > 3.0  # intensity units: well above the int16 rounding
    assert np.abs(diff[ev] - expected).max() <= 1.0  # two roundings apart at most
    others = np.setdiff1d(np.arange(diff.size), np.concatenate([ev, brain.hv_index]))
    assert not diff[others].any()  # outside the visual ROIs, nothing changed


def test_a_picture_the_world_does_not_have_is_refused(brain_and_sim):
    brain, _ = brain_and_sim
    with pytest.raises(DataError, match="no picture of the synthetic world"):
        _participant(brain_and_sim).show(brain.world.n_stimuli, 1.0, 1.0)


def test_an_imagined_picture_gives_the_brains_imagery_response(brain_and_sim):
    """An ``imagery`` trial: the realistic brain's imagery amplitudes through the same HRF and
    trial gain as seeing it (weaker in early visual cortex); the easy brain refuses it."""
    brain, _ = brain_and_sim
    sid = int(brain.world.training_ids()[0])
    if brain_and_sim[1].participant == "easy":
        with pytest.raises(DataError, match="cannot imagine"):
            _participant(brain_and_sim).show(sid, 1.0, 2.0, imagined=True)
        return
    seen, imagined = _participant(brain_and_sim), _participant(brain_and_sim)
    seen.show(sid, 1.0, 2.0)
    shown = imagined.show(sid, 1.0, 2.0, imagined=True)
    assert shown.imagined and not seen.shown[0].imagined
    t = 12  # 5 s after the onset: the responses' peak
    vision, imagery = seen.signal(t), imagined.signal(t)
    ratio = {roi: np.abs(imagery[roi]).sum() / np.abs(vision[roi]).sum() for roi in vision}
    assert ratio["ev"] < 0.75 * ratio["hv"]  # early visual weakened more than higher visual
    # the same draws (trial gain, HRF): higher visual is vision's scaled by hv_gain
    np.testing.assert_allclose(imagery["hv"], vision["hv"] * brain.params.imagery.hv_gain)
