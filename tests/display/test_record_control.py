"""POST /api/record on a real console process, passed on to a real control socket.

The recorder side is the recorder's own :class:`RecordSwitch` behind a real
:class:`ControlServer` (tests/nodes/test_recorder.py drives the recorder
process itself; tests/display/test_browser.py clicks the button).
"""

from __future__ import annotations

import json
import threading

import pytest

from rt_recon.nodes.recorder import RecordSwitch
from rt_recon.transport.control import ControlServer
from tests.display._helpers import ConsoleProcess, console_config

JSON = {"Content-Type": "application/json"}


class _Recorder:
    """A RecordSwitch answering on the config's control endpoint, on its own thread."""

    def __init__(self, endpoint: str):
        self.switch = RecordSwitch()
        self.server = ControlServer(endpoint)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.server.serve(self.switch.handle, timeout=0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.server.close()


@pytest.fixture
def console(tmp_path):
    config = console_config(tmp_path)
    with ConsoleProcess(config, tmp_path / "session.json") as process:
        yield process


def _post(console: ConsoleProcess, body, headers=JSON) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, _, reply = console.request("POST", "/api/record", data, headers)
    return status, json.loads(reply)


def test_stop_and_start_reach_the_recorder_and_its_reply_comes_back(console):
    recorder = _Recorder(console.config.recorder.control_endpoint)
    try:
        assert _post(console, {"command": "stop"}) == (200, {"ok": True, "recording": False})
        assert not recorder.switch.recording
        assert recorder.switch.changes[-1]["by"] == "console"
        assert _post(console, {"command": "start"}) == (200, {"ok": True, "recording": True})
        recorder.switch.refusal = "cannot write the recording: the disk is full"
        status, reply = _post(console, {"command": "stop"})
        assert status == 409 and reply["error"] == (
            "cannot stop recording: cannot write the recording: the disk is full"
        )
    finally:
        recorder.close()


def test_a_recorder_that_does_not_answer_is_a_502_naming_it(console):
    status, reply = _post(console, {"command": "stop"})
    endpoint = console.config.recorder.control_endpoint
    assert status == 502 and reply["ok"] is False
    assert reply["error"].startswith(f"the recorder did not answer: no reply from {endpoint}")


@pytest.mark.parametrize(
    ("body", "headers", "status", "error"),
    [
        ({"command": "pause"}, JSON, 400, 'expected {"command": "start"} or {"command": "stop"}'),
        (b"stop", JSON, 400, "expected a JSON body"),
        # what a form on another site can send: no JSON content type
        (b"command=stop", {"Content-Type": "application/x-www-form-urlencoded"}, 403,
         "expected Content-Type application/json, found 'application/x-www-form-urlencoded'"),
        ({"command": "stop"}, {**JSON, "Origin": "http://evil.example"}, 403,
         "found one from http://evil.example"),
    ],
    ids=["unknown-command", "not-json", "form-post", "other-origin"],
)  # fmt: skip
def test_bad_and_cross_site_requests_are_refused_before_the_recorder(
    console, body, headers, status, error
):
    recorder = _Recorder(console.config.recorder.control_endpoint)
    try:
        got_status, reply = _post(console, body, headers)
        assert got_status == status and reply["ok"] is False and error in reply["error"]
        assert recorder.switch.recording and not recorder.switch.changes  # never reached it
    finally:
        recorder.close()


def test_a_get_is_not_a_record_command(console):
    status, _, _ = console.get("/api/record")
    assert status == 405
