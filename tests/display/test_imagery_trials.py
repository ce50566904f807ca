"""A cued imagery run from the presenter's side to the decoder's and the scoring's: the page
is given no picture and the server serves none; each page report becomes a ``cue`` marker
(no trial) and an ``imagery`` marker (the trial, its onset the start of the imagining); the
decoder's trial tracker and the session scoring (the protocol's trial rule) take exactly the
imagery markers as trials, at the imagining period's TR, not the cue's."""

from __future__ import annotations

import numpy as np
import pytest

from rt_recon.acquire.events import read_events
from rt_recon.decode.trial_tracker import TrialTracker
from rt_recon.display.design import DesignSpec, build_design, read_stimulus_set, write_events_tsv
from rt_recon.display.messages import PresentDesign
from rt_recon.display.presenter import Presenter
from rt_recon.evaluate.trials import collect_trials
from rt_recon.protocol import trial_samples
from tests.display._stimuli import write_stimulus_set
from tests.display.test_presenter import Sink

TR_S = 2.0
START = 100.0  # the run's start on the LSL clock
LATE_S = 0.008  # each row drawn half a 60 Hz frame after its plan
#: Cue 1 TR, imagining 3 TRs, rest 1 TR: a slot of 5 TRs, the imagining 1 TR after the cue.
SPEC = DesignSpec(task="imagery", cue_s=2.0, duration_s=6.0, isi_s=2.0, n_blank=1, seed=2)


@pytest.fixture
def played(tmp_path):
    """The presenter of a 3-picture imagery run, after a page played it all."""
    stimuli = read_stimulus_set(write_stimulus_set(tmp_path / "stim", [4, 9, 16]))
    presenter = Presenter(build_design(stimuli, SPEC), stimuli, Sink(), run="05")
    presenter.handle({"type": "start", "t": START})
    for row in presenter.design.trials:
        presenter.handle({"type": "onset", "trial": row.trial, "t": START + row.onset + LATE_S})
    presenter.handle({"type": "end", "t": START + presenter.design.total_s})
    return presenter


def test_the_page_is_given_no_picture_and_none_is_served(played):
    message = PresentDesign.model_validate(played.design_message())
    assert [t.trial_type for t in message.trials].count("imagery") == 3
    assert all(t.picture is None for t in message.trials)
    for sid in (4, 9, 16):
        assert played.picture(sid).status_code == 404


def test_each_cue_marker_is_followed_by_its_imagery_marker(played):
    events = [(m, t) for m, t in played.markers.sent if m.type == "event"]
    assert [m.trial for m, _ in events] == [r.trial for r in played.design.trials]
    cues = [k for k, (m, _) in enumerate(events) if m.trial_type == "cue"]
    assert len(cues) == 3
    for k in cues:
        (cue, cue_t), (imagery, imagery_t) = events[k], events[k + 1]
        assert cue.stimulus_id is None and cue.duration == 2.0
        assert cue.caption == f"picture {imagery.stimulus_id}"  # no cue column: the caption
        assert cue.onset == pytest.approx(cue_t - START, abs=1e-4)
        assert imagery.trial_type == "imagery" and imagery.stimulus_id in (4, 9, 16)
        assert imagery.duration == 6.0 and imagery.caption == f"picture {imagery.stimulus_id}"
        assert imagery.onset == pytest.approx(imagery_t - START, abs=1e-4)
        assert imagery_t - cue_t == pytest.approx(2.0)


def test_the_decoder_and_the_scoring_take_the_imagining_periods_as_trials(played, tmp_path):
    imagery = [r for r in played.design.trials if r.trial_type == "imagery"]
    cues = [r for r in played.design.trials if r.trial_type == "cue"]
    n_trs = int(played.design.total_s / TR_S) + 8
    # the imagining starts one TR after its cue: the two rules cannot be confused
    expected_onsets = [round(r.onset / TR_S) for r in imagery]
    assert expected_onsets == [round(r.onset / TR_S) + 1 for r in cues]

    # online: the decoder's tracker, volumes stamped every TR from the start
    lag, n_window = 3, 2
    tracker = TrialTracker(lag, n_window)
    stream = [("volume", tr, START + tr * TR_S) for tr in range(n_trs)]
    stream += [("marker", m, t) for m, t in played.markers.sent]
    for kind, item, stamp in sorted(stream, key=lambda x: x[2]):
        if kind == "volume":
            tracker.add_volume(item, stamp)
        else:
            tracker.add_marker(item, stamp)
    assert [t.stimulus_id for t in tracker.trials] == [r.stimulus_id for r in imagery]
    assert [t.event.trial_type for t in tracker.trials] == ["imagery"] * 3
    assert [t.onset_tr for t in tracker.trials] == expected_onsets
    first = tracker.trials[0]
    assert tracker.current(first.onset_tr + lag).stimulus_id == first.stimulus_id

    # afterwards: the scoring of the recorded markers, and fitting's events.tsv
    recorded = [m.to_json() for m, _ in played.markers.sent]
    expected = [(o + lag, r.stimulus_id) for o, r in zip(expected_onsets, imagery, strict=True)]
    assert trial_samples(recorded, n_trs, TR_S, lag) == expected
    rows = read_events(write_events_tsv(played.design, tmp_path / "run-05_events.tsv"))
    assert trial_samples(rows, n_trs, TR_S, lag) == expected
    rng = np.random.default_rng(0)
    frames = {tr: rng.integers(0, 255, (8, 8, 3), dtype=np.uint8) for tr in range(n_trs)}
    truths = {sid: rng.integers(0, 255, (8, 8, 3), dtype=np.uint8) for sid in (4, 9, 16)}
    ids, recons, _, missing = collect_trials(recorded, n_trs, TR_S, lag, frames, truths)
    assert ids == [r.stimulus_id for r in imagery] and missing == 0
    assert np.array_equal(recons[0], frames[expected[0][0]])
