"""Offline scoring of a run's trials: nothing to score is said as such, with how many trials."""

from __future__ import annotations

import numpy as np
import pytest

from rt_recon.errors import DataError
from rt_recon.evaluate.trials import collect_trials, score
from tests.display._helpers import pattern

TR_S, LAG, N_TRS = 1.0, 2, 20


def _events(ids: list[int]) -> list[dict]:
    """One trial every 3 s from 2 s: scored TRs 4, 7, 10, ... at lag 2."""
    return [{"onset": 2.0 + 3 * k, "duration": 1.0, "stimulus_id": i} for k, i in enumerate(ids)]


def test_events_without_a_trial_are_nothing_to_score():
    events = [{"onset": 2.0, "duration": 1.0, "caption": "fixation"}]
    with pytest.raises(DataError, match=r"no trial events .*: nothing to score"):
        collect_trials(events, N_TRS, TR_S, LAG, {}, {})


def test_one_trial_with_a_frame_names_how_many_were_shown():
    truths = {sid: pattern(sid, 16) for sid in (1, 2, 3)}
    frames = {4: truths[1]}  # only the first trial's scored TR (onset 2 + lag 2) was rendered
    with pytest.raises(DataError, match="only 1 of the 3 trials shown have a frame"):
        collect_trials(_events([1, 2, 3]), N_TRS, TR_S, LAG, frames, truths)


def test_missing_frames_are_counted_and_are_failures_over_all_shown():
    truths = {sid: pattern(sid, 16) for sid in (1, 2, 3, 4)}
    frames = {4: truths[1], 7: truths[2], 10: truths[3]}  # the fourth trial's TR 13 skipped
    ids, recons, truth_arr, missing = collect_trials(
        _events([1, 2, 3, 4]), N_TRS, TR_S, LAG, frames, truths
    )
    assert ids == [1, 2, 3] and missing == 1
    scores = score(recons, truth_arr, missing)
    assert (scores.n_trials, scores.n_missing, scores.n_shown) == (3, 1, 4)
    assert scores.identification == 1.0
    assert scores.identification_shown == pytest.approx(0.75)
    np.testing.assert_array_equal(recons, truth_arr)
