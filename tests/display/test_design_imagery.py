"""Cued imagery designs (rt_recon.display.design, task ``imagery``): a cue row then an imagery
row per picture, their onsets and durations, the cue's words, the events.tsv they are
written as, and the options an imagery run refuses."""

from __future__ import annotations

import csv
from collections import Counter

import pytest

from rt_recon.acquire.events import read_events
from rt_recon.display.design import (
    EVENT_COLUMNS,
    DesignSpec,
    build_design,
    read_stimulus_set,
    write_events_tsv,
)
from rt_recon.errors import DataError
from tests.display._stimuli import write_stimulus_set

IDS = [3, 5, 8, 13, 21, 34]
#: The cue column's words for some stimuli; the others fall back to their caption.
CUES = {3: "red kite", 13: "two dogs"}


def with_cues(folder, cues: dict[int, str]):
    """Add a ``cue`` column to ``folder/stimuli.tsv`` (empty where ``cues`` has no entry)."""
    table = folder / "stimuli.tsv"
    lines = table.read_text().splitlines()
    out = [lines[0] + "\tcue"]
    for line in lines[1:]:
        out.append(f"{line}\t{cues.get(int(line.split(chr(9))[0]), '')}")
    table.write_text("\n".join(out) + "\n")
    return folder


@pytest.fixture
def stimuli(tmp_path):
    return read_stimulus_set(with_cues(write_stimulus_set(tmp_path / "stim", IDS), CUES))


SPEC = DesignSpec(
    task="imagery", cue_s=1.5, duration_s=4.0, isi_s=1.0, lead_in_s=2.0, lead_out_s=3.0,
    n_blank=2, test_ids=(5,), test_repeats=2, seed=4,
)  # fmt: skip


def test_each_picture_is_a_cue_row_then_an_imagery_row_one_slot_per_trial(stimuli):
    design = build_design(stimuli, SPEC)
    rows = design.trials
    # 5 pictures once and the test picture twice: 7 cued trials, and 2 blanks
    assert design.counts() == {"stimulus": 0, "blank": 2, "catch": 0, "cue": 7, "imagery": 7}
    assert Counter(r.stimulus_id for r in rows if r.trial_type == "imagery") == {
        3: 1, 8: 1, 13: 1, 21: 1, 34: 1, 5: 2,
    }  # fmt: skip
    assert [r.trial for r in rows] == list(range(len(rows)))
    assert SPEC.slot_s == pytest.approx(1.5 + 4.0 + 1.0)
    assert design.n_slots == 9
    assert design.total_s == pytest.approx(2.0 + 9 * 6.5 + 3.0)
    assert not any(r.shows_picture for r in rows)  # the page is never given a picture

    slot = 0
    k = 0
    while k < len(rows):
        row = rows[k]
        start = 2.0 + slot * 6.5
        assert row.onset == pytest.approx(start), row
        if row.trial_type == "blank":  # fixation for the time a cue and its imagining take
            assert (row.duration, row.stimulus_id, row.caption) == (5.5, None, None)
            k += 1
        else:
            imagery = rows[k + 1]
            assert row.trial_type == "cue" and imagery.trial_type == "imagery"
            sid = imagery.stimulus_id
            assert row.stimulus_id is None and row.duration == 1.5
            assert row.caption == CUES.get(sid, f"picture {sid}")  # the cue column, else caption
            assert imagery.onset == pytest.approx(start + 1.5)  # the imagining starts
            assert imagery.duration == 4.0 and imagery.caption == f"picture {sid}"
            k += 2
        slot += 1
    assert slot == 9


def test_the_seed_cues_the_pictures_a_vision_run_of_that_seed_shows(stimuli):
    imagery = build_design(stimuli, SPEC)
    vision = build_design(stimuli, DesignSpec(**SPEC.model_dump(exclude={"task", "cue_s"}))).trials
    slots = [r for r in imagery.trials if r.trial_type != "cue"]
    assert [r.stimulus_id for r in slots] == [t.stimulus_id for t in vision]
    assert [r.trial_type for r in slots] == [
        "imagery" if t.trial_type == "stimulus" else t.trial_type for t in vision
    ]


def test_the_events_tsv_of_an_imagery_run(stimuli, tmp_path):
    design = build_design(stimuli, SPEC)
    path = write_events_tsv(design, tmp_path / "run-02_events.tsv")
    with path.open(newline="") as fh:
        assert tuple(next(csv.reader(fh, delimiter="\t"))) == EVENT_COLUMNS
    rows = read_events(path)
    assert len(rows) == len(design.trials)
    for row, planned in zip(rows, design.trials, strict=True):
        assert row["trial_type"] == planned.trial_type
        assert row["onset"] == pytest.approx(planned.onset)
        assert row["duration"] == pytest.approx(planned.duration)
        assert int(row["trial"]) == planned.trial
        if planned.trial_type == "imagery":
            assert row["stimulus_id"] == planned.stimulus_id
            assert row["caption"] == f"picture {planned.stimulus_id}"
        else:  # cue and blank rows name no picture (n/a)
            assert "stimulus_id" not in row
        if planned.trial_type == "cue":
            assert row["caption"] == planned.caption and row["caption"] != "n/a"


def test_imagery_options_are_checked(stimuli, tmp_path):
    # the defaults are a vision run's, as before imagery runs existed
    default = DesignSpec()
    assert (default.task, default.slot_s) == ("vision", 4.0)
    with pytest.raises(ValueError, match="an imagery run has no catch trials"):
        DesignSpec(task="imagery", n_catch=1)
    with pytest.raises(ValueError, match=r"cue_s .* applies to imagery runs"):
        DesignSpec(cue_s=2.0)
    for spec in (default, SPEC):  # a spec written out reads back
        assert DesignSpec.model_validate(spec.model_dump()) == spec
    with pytest.raises(ValueError, match="greater than 0"):
        DesignSpec(task="imagery", cue_s=0)
    with pytest.raises(ValueError, match="task"):
        DesignSpec(task="dream")
    # a picture with neither a cue nor a caption cannot be cued
    folder = write_stimulus_set(tmp_path / "mute", [1, 2])
    table = folder / "stimuli.tsv"
    table.write_text(table.read_text().replace("picture 2", ""))
    mute = read_stimulus_set(folder)
    with pytest.raises(DataError, match=r"stimuli \[2\] have neither a cue nor a caption"):
        build_design(mute, DesignSpec(task="imagery"))
    assert build_design(mute, DesignSpec()).counts()["stimulus"] == 2  # a vision run needs none
