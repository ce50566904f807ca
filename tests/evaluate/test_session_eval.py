"""Scoring a recording: what it says when there is nothing to score, and the trials every
figure rests on (``n scored of n shown``), with a warning when few were scored.

Recordings are written with the recorder's own writer (:mod:`tests.evaluate._recordings`);
``rt-recon evaluate`` runs as a real subprocess on them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from rt_recon.errors import DataError
from rt_recon.evaluate.report import write_report
from rt_recon.evaluate.session_eval import evaluate_recording
from rt_recon.evaluate.trials import (
    MIN_SCORED_FRACTION,
    MIN_SCORED_TRIALS,
    coverage_warnings,
    identification_shown,
)
from tests.display._helpers import pattern
from tests.evaluate._recordings import MARKERS_SOURCE_ID, write_session

SIZE = 32


def _pictures(n: int) -> list[tuple[int, np.ndarray]]:
    return [(sid, pattern(sid, SIZE)) for sid in range(n)]


def _dataset_pictures(dataset, n: int) -> list[tuple[int, np.ndarray]]:
    """``n`` of the dataset's stimuli (not the blank, id -1: a flat picture correlates with
    nothing)."""
    ids = [sid for sid in sorted(dataset.stimuli()) if sid >= 0][:n]
    return list(zip(ids, dataset.stimulus_images(ids), strict=True))


def _evaluate_cli(recording, dataset_root, out, shown="--dataset") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rt_recon", "evaluate", str(recording),
         shown, str(dataset_root), "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_recording_without_stimulus_markers_says_so_and_what_to_do(tmp_path):
    recording = write_session(tmp_path / "rec.h5", _pictures(12), markers=False)
    with pytest.raises(DataError) as raised:
        evaluate_recording(recording, dict(_pictures(12)))
    message = str(raised.value)
    assert message.startswith(f"no stimulus markers in {recording}: nothing to score")
    assert "it holds no markers at all" in message
    assert repr(MARKERS_SOURCE_ID) in message  # the stream to record, from the recorded config
    assert "start the stimulus program before the scanner" in message
    assert "have a frame" not in message


def test_markers_that_are_no_trial_are_named_as_such(tmp_path):
    others = [{"type": "run_start", "run": "01", "tr": 1.0}, {"caption": "fixation"}]
    recording = write_session(
        tmp_path / "rec.h5", _pictures(12), markers=False, other_markers=others
    )
    with pytest.raises(DataError, match=r"no stimulus markers in .*none of its 2 markers is a"):
        evaluate_recording(recording, dict(_pictures(12)))


def test_every_trial_scored_states_its_trials_and_warns_of_nothing(tmp_path):
    pictures = _pictures(12)
    evaluation = evaluate_recording(write_session(tmp_path / "rec.h5", pictures), dict(pictures))
    assert (evaluation.n_trials, evaluation.n_missing, evaluation.n_shown) == (12, 0, 12)
    assert evaluation.identification == 1.0 == evaluation.identification_shown
    assert "100.0% (chance 50%, RGB pixels at 32x32) on 12 scored of 12 shown;" in (
        evaluation.pixel_headline()
    )
    headline = evaluation.headline().splitlines()
    assert headline[0].startswith(
        "two-way identification 100.0% [95% CI 100.0-100.0] (chance 50%, metric-net features) "
        "on 12 scored of 12 shown; baselines: shuffled "
    )
    assert "wrong shape not available, nearest training not available" in headline[0]
    assert headline[3].startswith("pixels: identification 100.0% (RGB pixels at 32x32)")
    assert evaluation.semantic.model.n == 12 and evaluation.semantic.model.n_shown == 12
    assert "failures" not in evaluation.headline()
    assert evaluation.warnings == []


def test_few_scored_trials_are_stated_counted_as_failures_and_warned(tmp_path):
    """The issue's session: a perfect score on 3 trials of 24 shown, the rest without a frame."""
    pictures = _pictures(24)
    missing = [k for k in range(24) if k not in (2, 11, 20)]
    recording = write_session(tmp_path / "rec.h5", pictures, without_frame=missing)
    evaluation = evaluate_recording(recording, dict(pictures))

    assert (evaluation.n_trials, evaluation.n_missing, evaluation.n_shown) == (3, 21, 24)
    assert [r.trial for r in evaluation.trials if r.frame_tr is not None] == [2, 11, 20]
    assert evaluation.identification == 1.0
    assert evaluation.identification_shown == pytest.approx(3 / 24)  # 21 failures
    headline = evaluation.pixel_headline()
    assert "100.0% (chance 50%, RGB pixels at 32x32) on 3 scored of 24 shown" in headline
    assert "12.5% over all 24 shown, the 21 without a frame counted as failures" in headline
    first = evaluation.headline().splitlines()[0]
    assert "(chance 50%, metric-net features) on 3 scored of 24 shown (12.5% over all 24" in first
    assert "the 21 without a frame counted as failures" in first
    assert evaluation.warnings == coverage_warnings(3, 24)
    assert len(evaluation.warnings) == 2
    assert evaluation.warnings[0].startswith("only 3 of the 24 trials shown have a frame")
    assert evaluation.warnings[1].startswith("only 3 trials scored (under 10): each one is 33%")

    report = write_report(evaluation, tmp_path / "report")
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert (metrics["n_trials"], metrics["n_missing"], metrics["n_shown"]) == (3, 21, 24)
    assert metrics["identification_shown"] == pytest.approx(3 / 24)
    assert metrics["warnings"] == evaluation.warnings
    assert metrics["semantic"]["model"]["n"] == 3
    assert metrics["semantic"]["model"]["identification_shown"] == pytest.approx(3 / 24)
    page = report.read_text()
    assert "on 3 scored of 24 shown" in page
    assert '<table id="baselines">' in page
    assert page.count('<p class="warning">warning: only 3') == 2
    assert '<td id="identification_shown">12.5%</td>' in page


def test_an_interpolated_frame_never_stands_in_for_a_trs_missing_frame(tmp_path):
    """Frames interpolated between TRs (``renderer.interpolate_fps``) carry their TR's CRC and
    here even its very picture: still no TR's frame, neither scored nor timed."""
    pictures = _pictures(12)
    missing = [1, 4, 7, 8]
    recording = write_session(
        tmp_path / "rec.h5", pictures, without_frame=missing, interpolated=True
    )
    evaluation = evaluate_recording(recording, dict(pictures))
    assert (evaluation.n_trials, evaluation.n_missing, evaluation.n_shown) == (8, 4, 12)
    assert [r.trial for r in evaluation.trials if r.frame_tr is None] == missing
    assert evaluation.identification_shown == pytest.approx(8 / 12)
    end_to_end = next(r for r in evaluation.latency if r.stage == "end_to_end")
    assert end_to_end.max_ms < 900.0  # the interpolated frames' 900 ms are not counted
    plain = evaluate_recording(
        write_session(tmp_path / "plain.h5", pictures, without_frame=missing), dict(pictures)
    )
    assert end_to_end.n == next(r for r in plain.latency if r.stage == "end_to_end").n


def test_fewer_than_two_trials_with_a_frame_names_how_many_of_how_many(tmp_path):
    pictures = _pictures(6)
    recording = write_session(tmp_path / "rec.h5", pictures, without_frame=range(1, 6))
    with pytest.raises(DataError, match=r"only 1 of the 6 trials shown have a frame; scoring"):
        evaluate_recording(recording, dict(pictures))


@pytest.mark.parametrize(
    ("n_scored", "n_shown", "kinds"),
    [
        (MIN_SCORED_TRIALS, MIN_SCORED_TRIALS, []),  # all scored, just enough
        (MIN_SCORED_TRIALS - 1, MIN_SCORED_TRIALS - 1, ["few"]),
        (20, 40, []),  # exactly half: not under it
        (19, 40, ["fraction"]),
        (3, 36, ["fraction", "few"]),
    ],
)
def test_the_warning_rule_at_its_edges(n_scored, n_shown, kinds):
    assert MIN_SCORED_FRACTION == 0.5  # the rule docs/recording.md states
    warnings = coverage_warnings(n_scored, n_shown)
    found = ["fraction" if "trials shown have a frame" in w else "few" for w in warnings]
    assert found == kinds


def test_identification_over_all_shown_counts_a_missing_trial_as_a_failure():
    assert identification_shown(0.9, 30, 0) == pytest.approx(0.9)
    assert identification_shown(1.0, 3, 33) == pytest.approx(3 / 36)
    assert identification_shown(0.8, 10, 10) == pytest.approx(0.4)


def test_evaluate_command_says_no_stimulus_markers(tmp_path, small_dataset):
    pictures = _dataset_pictures(small_dataset, 12)
    recording = write_session(tmp_path / "rec.h5", pictures, markers=False)
    done = _evaluate_cli(recording, small_dataset.root, tmp_path / "report")
    assert done.returncode == 2, done.stderr
    assert f"rt-recon: error: no stimulus markers in {recording}: nothing to score" in done.stderr
    assert "have a frame" not in done.stderr
    assert not (tmp_path / "report").exists()


def test_evaluate_command_prints_scored_of_shown_and_warns(tmp_path, small_dataset):
    pictures = _dataset_pictures(small_dataset, 24)
    missing = [k for k in range(24) if k not in (0, 5, 9, 17)]
    recording = write_session(tmp_path / "rec.h5", pictures, without_frame=missing)
    done = _evaluate_cli(recording, small_dataset.root, tmp_path / "report")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("two-way identification 100.0% [95% CI 100.0-100.0] (chance 50%")
    assert "on 4 scored of 24 shown (16.7% over all 24 shown, the 20 without a frame" in lines[0]
    # a synthetic session's world draws the wrong shape; this recording holds no latents
    assert re.search(r"wrong shape \d+\.\d%", lines[0])
    assert "nearest training not available" in lines[0]
    assert lines[3].startswith("pixels: identification 100.0% (RGB pixels at 32x32)")
    assert lines[6].startswith("warning: only 4 of the 24 trials shown have a frame")
    assert lines[7].startswith("warning: only 4 trials scored (under 10)")
    assert lines[8] == f"report: {tmp_path / 'report' / 'report.html'}"


def test_evaluate_command_scores_against_the_presenters_stimulus_folder(tmp_path, small_dataset):
    """A visit has no dataset: the stimulus folder the presenter showed (its stimuli.tsv)
    gives the pictures; the baselines drawn from a synthetic world are said to be missing."""
    pictures = _dataset_pictures(small_dataset, 12)
    recording = write_session(tmp_path / "rec.h5", pictures)
    folder = small_dataset.root / "stimuli"
    done = _evaluate_cli(recording, folder, tmp_path / "report", shown="--stimuli")
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("two-way identification 100.0%") and "on 12 scored of 12" in first
    assert "wrong shape not available" in first and "nearest training not available" in first
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["n_trials"] == 12
    both = subprocess.run(
        [sys.executable, "-m", "rt_recon", "evaluate", str(recording), "--stimuli", str(folder),
         "--dataset", str(small_dataset.root)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert both.returncode == 2
    assert "argument --dataset: not allowed with argument --stimuli" in both.stderr


def test_the_report_reveals_a_blinded_sessions_feedback_condition(tmp_path):
    """docs/study-designs.md: the recording's true condition, blinded to the operator, is
    revealed by the evaluation: its line, metrics.json and the report."""
    pictures = _pictures(12)
    feedback = {
        "condition": "yoked",
        "yoked_recording": "/data/sub01/recording.h5",
        "yoked_digest": "sha256:abc",
        "blinded": True,
        "study_file": "/data/study.json",
        "study_digest": "sha256:def",
    }
    recording = write_session(tmp_path / "rec.h5", pictures, feedback=feedback)
    evaluation = evaluate_recording(recording, dict(pictures))
    assert evaluation.feedback == feedback
    line = evaluation.feedback_line()
    assert line is not None and line.startswith("feedback condition: yoked (blinded, revealed")
    assert "/data/sub01/recording.h5 (sha256:abc)" in line
    report = write_report(evaluation, tmp_path / "report")
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["feedback"] == feedback
    assert '<p id="feedback">feedback condition: yoked' in report.read_text()
    unlabelled = evaluate_recording(write_session(tmp_path / "old.h5", pictures), dict(pictures))
    assert unlabelled.feedback is None and unlabelled.feedback_line() is None
