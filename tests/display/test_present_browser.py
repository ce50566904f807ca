"""``rt-recon present`` end to end: a real subprocess, headless Chromium, a real pylsl inlet.

A five-trial run at short durations is started by the trigger key; the markers that arrive
are held to the design (order, stimulus ids, trial types), to the page's draw times (each
stamp within a measured tolerance of the frame time the picture was first drawn in, on the
LSL clock) and to the key pressed during the catch trial (a ``response`` event with its
reaction time). The page's clock offset and its spread, the test's own measure of it, and
how late each onset came after its plan are printed (``-s``) and recorded as properties.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pylsl
import pytest

from rt_recon._liblsl import quiet_liblsl
from rt_recon.acquire.events import read_events
from rt_recon.display.design import DesignSpec, build_design, read_stimulus_set
from tests.display._helpers import console_config
from tests.display._stimuli import write_stimulus_set

pytestmark = [pytest.mark.browser, pytest.mark.slow]

IDS = [11, 12, 13]
SPEC = DesignSpec(duration_s=0.3, isi_s=0.15, lead_out_s=0.1, n_blank=1, n_catch=1, seed=3)


def _wait_js(page, expression: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s} s for: {expression}")
        time.sleep(0.005)


def _lsl_minus_page_s(page, n: int = 15) -> tuple[float, float]:
    """This test's own measure of (LSL clock - performance.now() / 1000) and its uncertainty
    (half the shortest round trip through the debugger), in seconds."""
    samples = []
    for _ in range(n):
        before = pylsl.local_clock()
        page_ms = page.evaluate("performance.now()")
        after = pylsl.local_clock()
        samples.append((after - before, (before + after) / 2 - page_ms / 1000))
    rtt, offset = min(samples)
    return offset, rtt / 2


def _markers_until_run_end(inlet: pylsl.StreamInlet, timeout_s: float) -> list[tuple[dict, float]]:
    got = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sample, stamp = inlet.pull_sample(timeout=0.2)
        if sample is None:
            continue
        got.append((json.loads(sample[0]), stamp))
        if got[-1][0]["type"] == "run_end":
            return got
    raise AssertionError(f"no run_end within {timeout_s} s; got {[m for m, _ in got]}")


def test_a_run_started_by_the_trigger_key_sends_each_onset_stamped_with_its_draw_time(
    context, tmp_path, record_property
):
    quiet_liblsl()
    stim = write_stimulus_set(tmp_path / "stim", IDS)
    design = build_design(read_stimulus_set(stim), SPEC)
    assert design.counts() == {"stimulus": 3, "blank": 1, "catch": 1, "cue": 0, "imagery": 0}
    catch = next(t.trial for t in design.trials if t.trial_type == "catch")
    config = console_config(tmp_path)
    (tmp_path / "session.json").write_text(config.to_json())
    events = tmp_path / "run-07_events.tsv"
    process = subprocess.Popen(
        [sys.executable, "-m", "rt_recon", "present", str(stim), "--config",
         str(tmp_path / "session.json"), "--run", "07", "--trigger-key", "t",
         "--response-keys", "1,2", "--duration", "0.3", "--isi", "0.15", "--lead-out", "0.1",
         "--blanks", "1", "--catch", "1", "--seed", "3", "--events", str(events)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        found = pylsl.resolve_byprop("source_id", config.stream.markers_source_id, 1, 30.0)
        assert found, f"no marker stream: {process.poll() and process.stderr.read()}"
        inlet = pylsl.StreamInlet(found[0], processing_flags=pylsl.proc_clocksync)
        inlet.open_stream(timeout=10.0)
        # the design is on disk before anything is shown
        planned = read_events(events)
        assert [r.get("stimulus_id") for r in planned] == [t.stimulus_id for t in design.trials]

        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"http://127.0.0.1:{config.console.port}/participant")
        _wait_js(page, "window.rtPresent?.phase === 'ready'")
        offset_s, offset_err_s = _lsl_minus_page_s(page)
        page.keyboard.press("t")
        _wait_js(page, f"window.rtPresent.onsets[{catch}] !== undefined", timeout_s=10)
        page.keyboard.press("1")
        _wait_js(page, "window.rtPresent.phase === 'done'", timeout_s=10)
        markers = _markers_until_run_end(inlet, timeout_s=10)
        inlet.close_stream()  # before the presenter's outlet goes
        rt = page.evaluate(
            "(({clock, samples, startMs, onsets, late, responses, frameMs}) =>"
            " ({clock, samples, startMs, onsets, late, responses, frameMs}))(window.rtPresent)"
        )
        schema = page.evaluate("window.rtSchema")
        page.screenshot(path=tmp_path / "after.png")  # the page is back to the display
        assert process.wait(timeout=15) == 0, process.stderr.read()
        out = process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert errors == []
    # the page read the server's messages through schema.json, and nothing outside it
    assert schema["loaded"] and schema["errors"] == []

    kinds = [m["type"] for m, _ in markers]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end"
    start = markers[0][1]
    events_sent = [(m, s) for m, s in markers if m["type"] == "event"]
    assert [m["trial"] for m, _ in events_sent] == [t.trial for t in design.trials]
    assert [m.get("stimulus_id") for m, _ in events_sent] == [t.stimulus_id for t in design.trials]
    assert [m["trial_type"] for m, _ in events_sent] == [t.trial_type for t in design.trials]
    assert all(m["run"] == "07" for m, _ in markers)

    # each stamp is the frame time the trial was first drawn in, on the LSL clock
    tolerance_s = offset_err_s + rt["clock"]["rtt_ms"] / 2000 + 0.001
    errors_ms = []
    for marker, stamp in events_sent:
        drawn = rt["onsets"][str(marker["trial"])] / 1000 + offset_s
        errors_ms.append((stamp - drawn) * 1000)
        assert abs(stamp - drawn) <= tolerance_s, (marker, stamp, drawn, tolerance_s)
        assert marker["onset"] == pytest.approx(stamp - start, abs=1e-3)
    # the run started at the key press (its event time, mapped alike)
    assert start == pytest.approx(rt["startMs"] / 1000 + offset_s, abs=tolerance_s)
    # never drawn early: at most half a frame before the planned onset (how late is reported)
    for trial in design.trials:
        drawn_ms = rt["onsets"][str(trial.trial)] - rt["startMs"]
        assert drawn_ms >= trial.onset * 1000 - rt["frameMs"] / 2 - 0.5, (trial, drawn_ms)

    # the key pressed during the catch trial: one response event, after that trial's onset
    responses = [(m, s) for m, s in markers if m["type"] == "response"]
    assert len(responses) == 1
    response, pressed = responses[0]
    assert kinds.index("response") > [m.get("trial") for m, _ in markers].index(catch)
    assert response["key"] == "1" and response["trial"] == catch
    catch_stamp = dict((m["trial"], s) for m, s in events_sent)[catch]
    assert response["response_time"] == pytest.approx(pressed - catch_stamp, abs=1e-3)
    assert pressed == pytest.approx(rt["responses"][0]["ms"] / 1000 + offset_s, abs=tolerance_s)
    assert "5 onsets, 1 responses" in out

    late = list(rt["late"].values())
    clock = rt["clock"]
    every_offset_ms = np.array([x["offset_s"] for x in rt["samples"]]) * 1000
    report = {
        "page_offset_minus_test_ms": (clock["offset_s"] - offset_s) * 1000,
        "page_rtt_ms": clock["rtt_ms"],
        "page_rtt_ms_median": float(np.median([x["rtt_ms"] for x in rt["samples"]])),
        "page_offset_spread_ms": clock["spread_ms"],
        "page_offset_sd_ms_all": float(every_offset_ms.std()),
        "page_sync_n": clock["n"],
        "page_sync_n_all": len(rt["samples"]),
        "test_offset_uncertainty_ms": offset_err_s * 1000,
        "stamp_minus_draw_ms_max": float(np.max(np.abs(errors_ms))),
        "onset_after_plan_ms_median": float(np.median(late)),
        "onset_after_plan_ms_max": float(np.max(late)),
        "frame_ms": rt["frameMs"],
    }
    for key, value in report.items():
        record_property(key, round(value, 3))
    print("\npresenter timing in headless Chromium:", json.dumps(report, indent=1))
