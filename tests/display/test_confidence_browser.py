"""The decoder's per-TR confidence in headless Chromium: the console shows each value sent,
and the participant display (``console.confidence_fade_below``) draws a low-confidence
picture faded toward the fixation screen and a high-confidence one as it is.

Frames go to a real console process over ZeroMQ, as the renderer sends them.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pylsl
import pytest
from PIL import Image

from rt_recon.protocol import TOPIC_FRAME
from rt_recon.transport.zmq import Publisher
from tests.display._helpers import ConsoleProcess, console_config, frame_header, frame_message

pytestmark = [pytest.mark.browser]

FADE_BELOW = 0.5
#: (confidence sent, opacity the participant page must draw the picture at)
SENT = [(0.9, 1.0), (0.2, 0.4), (None, 1.0), (0.05, 0.1), (0.5, 1.0), (0.75, 1.0)]


def _wait_js(page, expression: str, timeout_ms: int = 10_000) -> None:
    """Poll until truthy (the pages' content security policy forbids wait_for_function)."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_ms} ms for: {expression}")
        time.sleep(0.01)


def _brightness(page, x: int, y: int) -> float:
    """Mean RGB at viewport pixel ``(x, y)`` of a screenshot."""
    shot = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"), dtype=float)
    return float(shot[y, x].mean())


def test_console_shows_confidence_and_the_participant_page_fades_low_confidence(context, tmp_path):
    config = console_config(tmp_path, crossfade_ms=0.0, confidence_fade_below=FADE_BELOW)
    white = np.full((16, 16, 3), 255, dtype=np.uint8)
    errors: list[str] = []
    with (
        ConsoleProcess(config, tmp_path / "session.json") as console,
        Publisher(config.renderer.frames_endpoint) as renderer,
    ):
        renderer.wait_for_subscribers(1, TOPIC_FRAME, timeout=30)
        operator = context.new_page()
        participant = context.new_page()
        for page in (operator, participant):
            page.on("pageerror", lambda error: errors.append(str(error)))
        operator.goto(console.url + "/console")
        participant.goto(console.url + "/participant")
        for page in (operator, participant):
            _wait_js(page, "document.body.dataset.socket === 'open'")
        t0 = pylsl.local_clock()
        shown = []
        for tr, (confidence, opacity) in enumerate(SENT):
            fields = {} if confidence is None else {"confidence": confidence}
            header = frame_header(tr, t0 + tr * 0.25, **fields)
            renderer.send_frames(frame_message(header, white))
            _wait_js(participant, f"window.rtParticipant.shown?.seq === {tr}")
            _wait_js(operator, f"document.body.dataset.tr === '{tr}'")
            drawn = participant.evaluate("window.rtParticipant.opacity")
            style = participant.evaluate(
                "Number(getComputedStyle(document.getElementById('picture')).opacity)"
            )
            assert drawn == pytest.approx(opacity) and style == pytest.approx(opacity, abs=1e-3)
            faded = participant.evaluate("document.body.dataset.faded")
            assert faded == ("true" if opacity < 1 else "false")
            # off the fixation cross, the white picture over black at the opacity drawn
            assert _brightness(participant, 400, 200) == pytest.approx(255 * opacity, abs=6)
            if confidence is not None:
                _wait_js(
                    operator, f"document.getElementById('confidence-note').dataset.tr === '{tr}'"
                )
                note = operator.evaluate("document.getElementById('confidence-note').dataset")
                assert float(note["value"]) == pytest.approx(confidence)
                text = operator.text_content("#confidence-note")
                assert f"{confidence:.3f} at TR {tr}" in text
                shown.append(confidence)
            points = operator.evaluate(
                "Number(document.getElementById('confidence-plot').dataset.points)"
            )
            assert points == len(shown)
    assert errors == []


def test_confidence_fade_is_refused_in_a_yoked_or_blinded_run(tmp_path):
    from pydantic import ValidationError

    from rt_recon.config import SessionConfig

    recording = tmp_path / "earlier.h5"
    recording.write_bytes(b"")
    for feedback in (
        {"condition": "yoked", "yoked_recording": str(recording)},
        {"study_file": str(tmp_path / "study.json")},
    ):
        with pytest.raises(ValidationError, match=r"console\.confidence_fade_below to null"):
            SessionConfig.model_validate(
                {"feedback": feedback, "console": {"confidence_fade_below": 0.3}}
            )
    real = SessionConfig.model_validate({"console": {"confidence_fade_below": 0.3}})
    assert real.console.confidence_fade_below == 0.3
    assert SessionConfig().console.confidence_fade_below is None  # off by default
