"""The run card's alignment line in headless Chromium: the console as a real process, the
decoder's heartbeats from a real ZeroMQ publisher in the test."""

from __future__ import annotations

import time
from dataclasses import asdict

import pytest

from rt_recon.protocol import TOPIC_STATUS, RunAlignment
from rt_recon.transport.zmq import Publisher
from tests.display._helpers import ConsoleProcess, console_config, status_header

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _wait_js(page, expression: str, timeout_ms: int = 15_000) -> None:
    """Poll a JavaScript expression until truthy (the pages' CSP forbids wait_for_function)."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_ms} ms for: {expression}")
        time.sleep(0.01)


def _heartbeat(seq: int, run: str, mm: float, deg: float) -> list:
    alignment = RunAlignment(
        tr=0, translation_mm=mm, rotation_deg=deg, params=[mm, 0.0, 0.0, 0.0, 0.0, 0.0],
        converged=True, limit_mm=5.0, limit_deg=5.0, within_limits=mm <= 5.0 and deg <= 5.0,
    )  # fmt: skip
    status = status_header("decoder", "streaming", seq, run=run, runs=int(run),
                           alignment=asdict(alignment))  # fmt: skip
    return status.encode()


def test_the_run_card_shows_the_alignment_and_turns_amber_beyond_the_limit(context, tmp_path):
    config = console_config(tmp_path)
    errors: list[str] = []
    with (
        ConsoleProcess(config, tmp_path / "session.json") as console,
        Publisher(config.decoder.latents_endpoint) as decoder,
    ):
        decoder.wait_for_subscribers(1, TOPIC_STATUS, timeout=30)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(console.url + "/console")
        _wait_js(page, "document.body.dataset.socket === 'open'")
        line = "document.getElementById('alignment')"
        assert page.inner_text("#alignment") == "aligned to the bundle: –"

        decoder.send_frames(_heartbeat(0, "1", 3.1, 2.0))
        _wait_js(page, f"{line}.dataset.level === 'ok'")
        assert page.inner_text("#alignment") == "aligned to the bundle: 3.1 mm, 2.0 deg"
        assert not page.locator('#warnings li[data-kind="alignment"]').count()

        decoder.send_frames(_heartbeat(1, "2", 8.4, 2.0))  # the next run: the head moved
        _wait_js(page, f"{line}.dataset.level === 'amber'")
        assert page.inner_text("#alignment").startswith("aligned to the bundle: 8.4 mm, 2.0 deg")
        amber = page.evaluate(f"getComputedStyle({line}).color")
        assert amber == "rgb(210, 153, 34)"  # --waiting
        warning = page.locator('#warnings li[data-kind="alignment"]')
        warning.wait_for(timeout=5_000)
        assert "re-fit the bundle on this session, or re-position" in warning.inner_text()
        report = page.evaluate("window.rtSchema")
        assert report["loaded"] and report["errors"] == []
    assert not errors
