"""``rt-recon present --task imagery`` end to end: a real subprocess, headless Chromium, a real
pylsl inlet.

Two cued imagery trials and a blank one at short durations, started by the trigger key. The
page is watched while it plays (every change of what it shows, recorded in the page by a
MutationObserver, and a screenshot during a cue and during an imagining period): it shows
the cue's words, then a blank screen with the fixation cross, and it never requests a
picture. The markers that arrive are a ``cue`` then an ``imagery`` event per trial, the
imagining's onset ``cue_s`` after the cue's (how far off is recorded as a property).
"""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pylsl
import pytest
from PIL import Image

from rt_recon._liblsl import quiet_liblsl
from rt_recon.acquire.events import read_events
from rt_recon.display.design import DesignSpec, build_design, read_stimulus_set
from tests.display._helpers import console_config
from tests.display._stimuli import write_stimulus_set
from tests.display.test_design_imagery import with_cues
from tests.display.test_present_browser import _markers_until_run_end, _wait_js

pytestmark = [pytest.mark.browser, pytest.mark.slow]

IDS = [21, 22]
CUES = {21: "red kite"}  # 22 has no cue: its caption ("picture 22") is the cue
CUE_S = 1.0
SPEC = DesignSpec(
    task="imagery", cue_s=CUE_S, duration_s=1.0, isi_s=0.3, lead_out_s=0.1, n_blank=1, seed=5
)
#: The fixation cross is 28 px square at the centre of the screen; this box holds it.
CROSS_BOX = 24

#: Records in the page each change of what the presenter layer shows.
WATCH = """() => {
  const layer = document.getElementById("present");
  const canvas = document.getElementById("present-picture");
  const cue = document.getElementById("present-cue");
  window.shownLog = [];
  new MutationObserver(() => {
    window.shownLog.push({
      showing: layer.dataset.showing,
      cue: cue.textContent,
      cue_displayed: getComputedStyle(cue).display !== "none",
      picture_visible: getComputedStyle(canvas).visibility !== "hidden",
    });
  }).observe(layer, { attributes: true, attributeFilter: ["data-showing"] });
}"""


def _screen(page, showing: str) -> np.ndarray:
    """A screenshot while the layer shows ``showing`` (waited for; checked it still did)."""
    _wait_js(page, f"document.getElementById('present').dataset.showing === '{showing}'", 10)
    before = page.evaluate("window.shownLog.length")
    shot = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"))
    assert page.evaluate("window.shownLog.length") == before, f"{showing} ended mid-screenshot"
    return shot


def _outside_cross(shot: np.ndarray) -> np.ndarray:
    h, w = shot.shape[:2]
    mask = np.ones((h, w), dtype=bool)
    mask[h // 2 - CROSS_BOX : h // 2 + CROSS_BOX, w // 2 - CROSS_BOX : w // 2 + CROSS_BOX] = False
    return shot[mask]


def _cross(shot: np.ndarray) -> np.ndarray:
    h, w = shot.shape[:2]
    return shot[h // 2 - CROSS_BOX : h // 2 + CROSS_BOX, w // 2 - CROSS_BOX : w // 2 + CROSS_BOX]


def _changes(log: list[dict]) -> list[dict]:
    """The entries of ``log`` whose ``showing`` differs from the one before."""
    return [s for k, s in enumerate(log) if k == 0 or s["showing"] != log[k - 1]["showing"]]


def _changes_of(states: list[str]) -> list[tuple[str, int]]:
    return [(s, k) for k, s in enumerate(states) if k == 0 or s != states[k - 1]]


def test_an_imagery_run_shows_cues_then_blank_never_a_picture(context, tmp_path, record_property):
    quiet_liblsl()
    stim = with_cues(write_stimulus_set(tmp_path / "stim", IDS), CUES)
    design = build_design(read_stimulus_set(stim), SPEC)
    assert design.counts() == {"stimulus": 0, "blank": 1, "catch": 0, "cue": 2, "imagery": 2}
    cue_words = [t.caption for t in design.trials if t.trial_type == "cue"]
    config = console_config(tmp_path)
    (tmp_path / "session.json").write_text(config.to_json())
    events = tmp_path / "run-03_events.tsv"
    process = subprocess.Popen(
        [sys.executable, "-m", "rt_recon", "present", str(stim), "--config",
         str(tmp_path / "session.json"), "--run", "03", "--trigger-key", "t",
         "--task", "imagery", "--cue-s", str(CUE_S), "--duration", "1.0", "--isi", "0.3",
         "--lead-out", "0.1", "--blanks", "1", "--seed", "5", "--events", str(events)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    requested: list[str] = []
    try:
        found = pylsl.resolve_byprop("source_id", config.stream.markers_source_id, 1, 30.0)
        assert found, f"no marker stream: {process.poll() and process.stderr.read()}"
        inlet = pylsl.StreamInlet(found[0], processing_flags=pylsl.proc_clocksync)
        inlet.open_stream(timeout=10.0)
        planned = read_events(events)
        assert [r["trial_type"] for r in planned] == [t.trial_type for t in design.trials]

        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("request", lambda request: requested.append(request.url))
        page.goto(f"http://127.0.0.1:{config.console.port}/participant")
        _wait_js(page, "window.rtPresent?.phase === 'ready'")
        page.evaluate(WATCH)
        page.keyboard.press("t")
        cue_shot = _screen(page, "cue")
        cue_dom = page.evaluate("document.getElementById('present-cue').innerText")
        imagery_shot = _screen(page, "imagery")
        rest_shot = _screen(page, "fixation")
        _wait_js(page, "window.rtPresent.phase === 'done'", timeout_s=15)
        markers = _markers_until_run_end(inlet, timeout_s=10)
        inlet.close_stream()
        shown = page.evaluate("window.shownLog")
        rt = page.evaluate("({late: window.rtPresent.late, design: window.rtPresent.design})")
        resources = page.evaluate(
            "performance.getEntriesByType('resource').map((entry) => entry.name)"
        )
        assert process.wait(timeout=15) == 0, process.stderr.read()
        out = process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert errors == []

    # the page never asked for a picture, nor was given one to ask for
    assert requested and not [u for u in requested + resources if "/present/" in u]
    assert all(t["picture"] is None for t in rt["design"]["trials"])

    # what it showed, change by change: each trial's cue words, then the imagining's cross,
    # then the rest's; never the picture layer
    assert not any(s["picture_visible"] for s in shown)
    expected = ["fixation"]  # ready: the rest's cross
    for t in design.trials:
        expected += {"cue": ["cue"], "imagery": ["imagery", "fixation"]}.get(t.trial_type, [])
        expected += ["fixation"] if t.trial_type == "blank" else []
    steps = _changes([{"showing": "fixation", "cue": ""}, *shown])
    assert [s["showing"] for s in steps] == [e for e, _ in _changes_of(expected)]
    assert [s["cue"] for s in steps if s["showing"] == "cue"] == cue_words
    assert all(s["cue_displayed"] == (s["showing"] == "cue") for s in shown)
    assert cue_dom == cue_words[0]

    # the screenshots: the cue is bright words; the imagining is a white cross
    # on black and nothing else; the rest a grey cross on black
    assert (cue_shot.max(axis=2) > 200).sum() > 100  # the words' pixels
    assert (cue_shot.max(axis=2) > 0).mean() < 0.05  # and little else: no picture
    assert _outside_cross(imagery_shot).max() == 0
    assert _cross(imagery_shot).min(axis=2).max() == 255  # white
    assert _outside_cross(rest_shot).max() == 0
    assert 100 < _cross(rest_shot).max() < 200  # grey

    # the markers: a cue, then the imagining of the cued picture cue_s later
    events_sent = [(m, s) for m, s in markers if m["type"] == "event"]
    assert [m["trial_type"] for m, _ in events_sent] == [t.trial_type for t in design.trials]
    stamps = [s for _, s in events_sent]
    assert stamps == sorted(stamps)
    gaps_ms = []
    for k, (marker, stamp) in enumerate(events_sent):
        if marker["trial_type"] != "cue":
            continue
        imagery, imagery_stamp = events_sent[k + 1]
        assert "stimulus_id" not in marker and marker["caption"] == design.trials[k].caption
        assert marker["duration"] == CUE_S
        assert imagery["trial_type"] == "imagery" and imagery["duration"] == 1.0
        assert imagery["stimulus_id"] == design.trials[k + 1].stimulus_id
        assert imagery["caption"] == f"picture {imagery['stimulus_id']}"
        assert imagery["onset"] > marker["onset"]
        gap_ms = (imagery_stamp - stamp - CUE_S) * 1000
        # off the plan by exactly what the page measured of its own frames (each stamp is a
        # draw time), and by little: the machine may miss a frame or a few, never much more
        lateness_ms = rt["late"][str(imagery["trial"])] - rt["late"][str(marker["trial"])]
        assert gap_ms == pytest.approx(lateness_ms, abs=2.0), (gap_ms, lateness_ms)
        assert abs(gap_ms) < 100, gap_ms
        gaps_ms.append(gap_ms)
    assert len(gaps_ms) == 2
    assert "5 onsets, 0 responses" in out

    late = list(rt["late"].values())
    record_property("imagery_minus_cue_minus_cue_s_ms_max_abs", round(max(map(abs, gaps_ms)), 3))
    record_property("onset_after_plan_ms_max", round(max(late), 3))
    print("\nimagery gap - cue_s (ms):", [round(g, 2) for g in gaps_ms], "late ms:", late)
