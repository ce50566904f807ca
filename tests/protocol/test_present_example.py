"""examples/present_pylsl.py (pylsl only) sends markers that rt_recon reads as its own: the
schema of docs/protocol.md 2, "Presenting a training run"."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pylsl
import pytest

from rt_recon._liblsl import quiet_liblsl
from rt_recon.display.design import DesignSpec, build_design, read_stimulus_set, write_events_tsv
from rt_recon.protocol import decode_marker, is_trial_event
from tests.conftest import unique
from tests.display._stimuli import write_stimulus_set

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "present_pylsl.py"


def test_the_example_presenter_sends_the_documented_markers(tmp_path):
    quiet_liblsl()
    stimuli = read_stimulus_set(write_stimulus_set(tmp_path / "stim", [6, 7]))
    design = build_design(stimuli, DesignSpec(duration_s=0.1, isi_s=0.05, n_blank=1, seed=2))
    events = write_events_tsv(design, tmp_path / "run-02_events.tsv")
    source_id = unique("example_markers")
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE), str(events), "--source-id", source_id,
         "--name", unique("example"), "--run", "02", "--no-wait"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        found = pylsl.resolve_byprop("source_id", source_id, 1, 20.0)
        assert found, process.stderr.read() if process.poll() is not None else "no stream"
        inlet = pylsl.StreamInlet(found[0])
        inlet.open_stream(timeout=10.0)
        got = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not got or got[-1][0].type != "run_end"):
            sample, stamp = inlet.pull_sample(timeout=0.2)
            if sample is not None:
                got.append((decode_marker(sample[0]), stamp))  # validated against Marker
        inlet.close_stream()
        assert process.wait(timeout=10) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert [m.type for m, _ in got] == ["run_start", "event", "event", "event", "run_end"]
    start = got[0][1]
    sent = [m for m, _ in got[1:-1]]
    assert [m.stimulus_id for m in sent] == [t.stimulus_id for t in design.trials]
    assert [m.trial_type for m in sent] == [t.trial_type for t in design.trials]
    assert [is_trial_event(m) for m in sent] == [t.stimulus_id is not None for t in design.trials]
    for (marker, stamp), trial in zip(got[1:-1], design.trials, strict=True):
        assert marker.run == "02" and marker.trial == trial.trial
        assert marker.onset == pytest.approx(stamp - start, abs=1e-3)
        assert marker.onset == pytest.approx(trial.onset, abs=0.05)
