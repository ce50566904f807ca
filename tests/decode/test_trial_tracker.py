from rt_recon.decode.trial_tracker import TrialTracker


def _event(sid):
    return {"type": "event", "stimulus_id": sid}


def test_markers_before_or_after_their_volume_get_the_nearest_tr():
    tracker = TrialTracker(lag=6, n_window=3)
    tracker.add_marker(_event(1), 10.0)  # arrives before its volume
    assert tracker.trials == []
    tracker.add_volume(0, 9.1)
    tracker.add_volume(1, 10.02)
    tracker.add_volume(2, 11.0)
    tracker.add_marker(_event(2), 11.05)  # arrives just after its volume
    tracker.add_marker({"type": "run_start"}, 11.1)  # not a trial
    assert [(t.onset_tr, t.stimulus_id) for t in tracker.trials] == [(1, 1)]
    tracker.add_volume(3, 12.0)  # the next volume tells the nearest: TR 2
    assert [(t.onset_tr, t.stimulus_id) for t in tracker.trials] == [(1, 1), (2, 2)]


def test_a_marker_waits_for_its_volume_even_when_volumes_come_close_together():
    """An asap replay (or a late push) brings volumes closer than their nominal interval."""
    tracker = TrialTracker(lag=4, n_window=2)
    tracker.add_volume(0, 10.000)
    tracker.add_volume(1, 10.020)
    tracker.add_marker(_event(5), 10.035)  # stamped with volume 2, which is still to come
    assert tracker.trials == []
    tracker.add_volume(2, 10.035)
    assert [t.onset_tr for t in tracker.trials] == [2]


def test_current_trial_begins_when_its_window_does():
    tracker = TrialTracker(lag=6, n_window=3)  # window starts 4 TRs after onset
    for tr in range(20):
        tracker.add_volume(tr, 100 + 1.5 * tr)
    tracker.add_marker(_event(7), 100 + 1.5 * 3)
    tracker.add_marker(_event(8), 100 + 1.5 * 6)
    assert tracker.current(6) is None
    assert tracker.current(7).stimulus_id == 7  # onset 3 + 4
    assert tracker.current(9).stimulus_id == 7
    assert tracker.current(10).stimulus_id == 8  # onset 6 + 4


def test_every_trial_reaches_its_complete_estimate_when_windows_overlap():
    tracker = TrialTracker(lag=8, n_window=4)  # window 4 TRs, trials every 3
    onsets = [4, 7, 10, 13]
    for tr in range(30):
        tracker.add_volume(tr, float(tr))
    for k, onset in enumerate(onsets):
        tracker.add_marker(_event(k), float(onset))
    shown = {tr: tracker.current(tr) for tr in range(30)}
    for onset in onsets:
        assert shown[onset + 8].onset_tr == onset  # shown at its completion TR
    assert shown[onsets[-1] + 8 + 5].onset_tr == onsets[-1]  # held after the last trial
    order = [t.onset_tr for t in shown.values() if t is not None]
    assert order == sorted(order)  # never goes back to an earlier trial
