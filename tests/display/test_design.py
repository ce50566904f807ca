"""Designs of training runs (rt_recon.display.design): counts, onsets, repeats, catch trials,
the seed, the stimulus table and the events.tsv they are written as."""

from __future__ import annotations

from collections import Counter

import pytest

from rt_recon.acquire.events import read_events
from rt_recon.display.design import (
    DesignSpec,
    build_design,
    read_stimulus_set,
    write_events_tsv,
)
from rt_recon.errors import DataError
from tests.display._stimuli import write_stimulus_set

IDS = [3, 5, 8, 13, 21, 34]


@pytest.fixture
def stimuli(tmp_path):
    return read_stimulus_set(write_stimulus_set(tmp_path / "stim", IDS))


def test_counts_onsets_repeats_and_catch_trials(stimuli):
    spec = DesignSpec(
        duration_s=2.0, isi_s=0.5, lead_in_s=4.0, lead_out_s=6.0,
        n_blank=3, test_ids=(5, 13), test_repeats=4, n_catch=2, seed=7,
    )  # fmt: skip
    design = build_design(stimuli, spec)
    trials = design.trials
    # 4 training pictures once, 2 test pictures 4 times, 3 blanks, 2 catch trials
    assert design.counts() == {
        "stimulus": 4 + 2 * 4, "blank": 3, "catch": 2, "cue": 0, "imagery": 0,
    }  # fmt: skip
    shown = Counter(t.stimulus_id for t in trials if t.trial_type == "stimulus")
    assert shown == {3: 1, 8: 1, 21: 1, 34: 1, 5: 4, 13: 4}
    assert [t.trial for t in trials] == list(range(len(trials)))
    assert [t.onset for t in trials] == pytest.approx([4.0 + 2.5 * k for k in range(len(trials))])
    assert all(t.duration == 2.0 for t in trials)
    assert design.total_s == pytest.approx(4.0 + 2.5 * len(trials) + 6.0)
    for k, trial in enumerate(trials):
        if trial.trial_type == "blank":
            assert trial.stimulus_id is None and trial.caption is None
        else:
            assert trial.caption == f"picture {trial.stimulus_id}"
        if trial.trial_type == "catch":  # repeats the picture trial just before it
            assert trials[k - 1].trial_type == "stimulus"
            assert trials[k - 1].stimulus_id == trial.stimulus_id


def test_the_seed_decides_the_order(stimuli):
    spec = DesignSpec(n_blank=2, n_catch=2, test_ids=(8,), test_repeats=3, seed=1)
    first, again = build_design(stimuli, spec), build_design(stimuli, spec)
    other = build_design(stimuli, spec.model_copy(update={"seed": 2}))
    assert first.trials == again.trials
    assert [t.stimulus_id for t in first.trials] != [t.stimulus_id for t in other.trials]


def test_bad_designs_are_refused_naming_what_is_wrong(stimuli):
    with pytest.raises(DataError, match=r"test_ids \[99\] are not in the stimulus set"):
        build_design(stimuli, DesignSpec(test_ids=(99,)))
    with pytest.raises(DataError, match="n_catch 7 is more than the 6 picture trials"):
        build_design(stimuli, DesignSpec(n_catch=7))
    with pytest.raises(ValueError, match="test_ids must be distinct"):
        DesignSpec(test_ids=(3, 3))
    with pytest.raises(ValueError, match="greater than 0"):
        DesignSpec(duration_s=0)


def test_the_events_tsv_reads_back_as_a_runs_events(stimuli, tmp_path):
    design = build_design(stimuli, DesignSpec(duration_s=1.5, isi_s=0.5, n_blank=1, n_catch=1))
    rows = read_events(write_events_tsv(design, tmp_path / "run-01_events.tsv"))
    assert len(rows) == len(design.trials)
    for row, trial in zip(rows, design.trials, strict=True):
        assert row["onset"] == pytest.approx(trial.onset)
        assert row["duration"] == pytest.approx(1.5)
        assert row["trial_type"] == trial.trial_type
        assert row.get("stimulus_id") == trial.stimulus_id  # absent (n/a) for the blank
        assert int(row["trial"]) == trial.trial


def test_stimulus_tables_are_checked(tmp_path):
    folder = write_stimulus_set(tmp_path / "stim", [1, 2])
    table = folder / "stimuli.tsv"
    # a dataset's blank screen (id -1) is skipped
    table.write_text(table.read_text() + "-1\tblank\tblank.png\n")
    assert sorted(read_stimulus_set(folder)) == [1, 2]
    table.write_text("stimulus_id\tfile\n1\tpics/1.png\n")
    with pytest.raises(DataError, match=r"stimuli.tsv: expected columns .*missing \['caption'\]"):
        read_stimulus_set(folder)
    table.write_text("stimulus_id\tcaption\tfile\n1\ta\tpics/9.png\n")
    with pytest.raises(DataError, match=r"line 2: picture .*9.png does not exist"):
        read_stimulus_set(folder)
    table.write_text("stimulus_id\tcaption\tfile\nx\ta\tpics/1.png\n")
    with pytest.raises(DataError, match="line 2: expected an integer stimulus_id, found 'x'"):
        read_stimulus_set(folder)
    with pytest.raises(DataError, match="no stimulus table"):
        read_stimulus_set(tmp_path / "nowhere")
