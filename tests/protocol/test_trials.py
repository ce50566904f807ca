"""The trial rule: which markers are trials, their onset TR, the TR that scores them."""

from __future__ import annotations

import pytest

from rt_recon.errors import DataError
from rt_recon.protocol import (
    Marker,
    TrialWindow,
    is_scored_tr,
    is_trial_event,
    onset_tr,
    onset_tr_from_seconds,
    span_trs,
    trial_samples,
)


@pytest.mark.parametrize(
    ("event", "trial"),
    [
        ({"stimulus_id": 4}, True),  # no type: an event
        ({"type": "event", "stimulus_id": 4}, True),
        ({"type": "event"}, False),  # no stimulus
        ({"type": "run_start", "stimulus_id": 4}, False),
        ({"type": "fixation", "stimulus_id": 4}, False),
    ],
)
def test_a_trial_is_an_event_with_a_stimulus_with_or_without_type(event, trial):
    assert is_trial_event(event) is trial
    assert is_trial_event(Marker.from_json(event)) is trial


def test_onset_is_the_nearest_volume_and_a_tie_goes_to_the_later_one():
    trs, stamps = [0, 1, 2, 3], [10.0, 11.0, 12.0, 13.0]
    assert onset_tr(11.4, trs, stamps) == 1
    assert onset_tr(11.6, trs, stamps) == 2
    assert onset_tr(11.5, trs, stamps) == 2  # halfway: the later
    assert onset_tr(10.5, trs, stamps) == 1
    assert onset_tr(5.0, trs, stamps) == 0  # before the first known volume
    assert onset_tr(99.0, trs, stamps) == 3  # after the last


def test_onset_counts_intervals_from_the_nearest_known_volume():
    # a console that saw only the frames of TRs 4 and 9 (the others were skipped)
    trs, stamps = [4, 9], [104.0, 109.0]
    assert onset_tr(106.0, trs, stamps, interval_s=1.0) == 6
    assert onset_tr(106.5, trs, stamps, interval_s=1.0) == 7  # halfway: the later
    assert onset_tr(100.0, trs, stamps, interval_s=1.0) == 0
    assert onset_tr(111.2, trs, stamps, interval_s=1.0) == 11


def test_between_known_volumes_of_consecutive_trs_the_nearer_wins_whatever_the_interval():
    # volumes 1 s apart on a nominal 0.8 s wire interval (a late scanner): counting intervals
    # from TR 3 would give 11.3 -> TR 5; the marker lies between TRs 3 and 4, nearer to 4
    trs, stamps = [2, 3, 4, 9], [9.0, 10.0, 11.0, 16.0]
    assert onset_tr(10.6, trs, stamps, interval_s=0.8) == 4
    assert onset_tr(10.4, trs, stamps, interval_s=0.8) == 3
    assert onset_tr(10.5, trs, stamps, interval_s=0.8) == 4  # halfway: the later
    # between TRs 4 and 9 (not consecutive) intervals are counted from the nearer known one
    assert onset_tr(12.7, trs, stamps, interval_s=0.8) == 6
    assert onset_tr(12.7, trs, stamps, interval_s=0.8) != onset_tr(12.7, trs, stamps)


def test_seconds_rule_is_the_stamp_rule_on_the_runs_own_timeline():
    tr_s = 1.5
    trs = list(range(40))
    stamps = [t * tr_s for t in trs]
    for onset in [0.0, 0.7, 0.75, 0.8, 9.0, 9.74, 9.75, 20.1, 33.3]:
        assert onset_tr_from_seconds(onset, tr_s) == onset_tr(onset, trs, stamps)
    assert onset_tr_from_seconds(0.75, 1.5) == 1  # half up, not Python's round-half-even
    assert onset_tr_from_seconds(2.25, 1.5) == 2  # 1.5 TRs: half up


def test_window_and_scored_tr():
    window = TrialWindow(lag_trs=6, n_window=3)
    assert window.scored_tr(10) == 16
    assert window.first_tr(10) == 14
    assert window.trs(10) == [16, 15, 14]
    with pytest.raises(DataError, match="n_window >= 1"):
        TrialWindow(lag_trs=2, n_window=0)


def test_trial_samples_take_markers_without_type_and_leave_out_the_rest():
    events = [
        {"type": "run_start", "tr": 1.0},
        {"onset": 3.0, "duration": 2.0, "stimulus_id": 7},  # no type
        {"type": "event", "onset": 6.0, "stimulus_id": 8},
        {"type": "event", "onset": 7.0},  # no stimulus: no trial
        {"type": "event", "onset": 18.0, "stimulus_id": 9},  # scored TR beyond the run
    ]
    assert trial_samples(events, n_trs=20, tr_s=1.0, lag_trs=4) == [(7, 7), (10, 8)]
    with pytest.raises(DataError, match="no onset"):
        trial_samples([{"stimulus_id": 1}], n_trs=5, tr_s=1.0, lag_trs=0)


def test_span_of_a_stimulus_on_screen():
    assert span_trs(None, 1.5) == 1
    assert span_trs(0.2, 1.5) == 1
    assert span_trs(3.0, 1.5) == 2
    assert span_trs(3.75, 1.5) == 3  # 2.5 TRs: half up


def test_onset_needs_known_volumes():
    with pytest.raises(DataError, match="at least one"):
        onset_tr(1.0, [], [])


def test_the_scored_tr_of_a_per_tr_header_is_its_trials_onset_plus_the_lag():
    trial = {"index": 3, "stimulus_id": 9, "onset_tr": 10, "complete": True}
    assert is_scored_tr({"tr": 13, "lag_trs": 3, "trial": trial})
    assert not is_scored_tr({"tr": 14, "lag_trs": 3, "trial": trial})  # complete, but later
    assert not is_scored_tr({"tr": 12, "lag_trs": 3, "trial": {**trial, "complete": False}})
    assert not is_scored_tr({"tr": 13, "lag_trs": 3, "trial": None})  # continuous mode
    assert not is_scored_tr({"tr": 13, "lag_trs": 3})
