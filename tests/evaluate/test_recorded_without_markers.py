"""The issue's session: a real run recorded without its stimulus program's markers (replay,
decoder, renderer and recorder processes), then ``rt-recon evaluate`` on that recording."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rt_recon.acquire.nifti import load_nifti_run
from rt_recon.apps.pipeline import PIPELINE_OVERRIDES, run_pipeline
from rt_recon.record.recording import RecordingReader
from tests.conftest import free_port

pytestmark = pytest.mark.slow


def test_evaluating_a_session_recorded_without_markers_says_no_stimulus_markers(
    node_config, small_dataset, tmp_path
):
    config = node_config.with_overrides(
        {**PIPELINE_OVERRIDES, "recorder.status_endpoint": f"tcp://127.0.0.1:{free_port()}"}
    )
    config_path = tmp_path / "session.json"
    config_path.write_text(config.to_json())
    files = small_dataset.runs("test")[0]
    n_trs = len(load_nifti_run(files.bold, files.events).volumes)
    run_pipeline(config, config_path, [str(files.bold)], n_trs)  # no --events: no trials
    with RecordingReader(config.recording_path) as reader:
        assert reader.count("volumes") == n_trs
        assert reader.count("frames") > 0
        assert all("stimulus_id" not in m for m, _ in reader.markers())

    done = subprocess.run(
        [sys.executable, "-m", "rt_recon", "evaluate", str(config.recording_path),
         "--dataset", str(small_dataset.root), "--out", str(tmp_path / "report")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout
    expected = f"rt-recon: error: no stimulus markers in {config.recording_path}: nothing to score"
    assert expected in done.stderr
    assert repr(config.stream.markers_source_id) in done.stderr
    assert "have a frame" not in done.stderr
