"""``rt-recon run``: restarts a crashed renderer, stops cleanly, names startup failures,
starts on ports a session that just ended left in TIME_WAIT, refuses an existing recording
before any node starts, and prints where things are and what the session did.

A session that runs until stopped is a child of the ``node_processes`` fixture; a
session that fails at startup is run to its end as a user runs it (``subprocess.run``):
its exit code, and its stderr apart from its stdout.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from tests.apps._ports import in_time_wait, leave_in_time_wait, plain_bind_fails
from tests.nodes._heartbeats import wait_for_heartbeat

pytestmark = pytest.mark.slow


def _write(config, tmp_path, **overrides):
    path = tmp_path / "session.json"
    path.write_text(config.with_overrides(overrides).to_json())
    return path


def _run(path, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "rt_recon", "run", str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _heartbeat_pid(endpoint: str) -> int:
    return int(wait_for_heartbeat(endpoint)["pid"])


def test_crashed_renderer_is_restarted_and_the_decoder_is_untouched(
    node_config, node_processes, tmp_path
):
    path = _write(
        node_config,
        tmp_path,
        **{"run.nodes": ["renderer", "decoder"], "stream.resolve_timeout_s": 120},
    )
    session = node_processes.rt_recon("session", "run", path)
    renderer_pid = _heartbeat_pid(node_config.renderer.frames_endpoint)
    decoder_pid = _heartbeat_pid(node_config.decoder.latents_endpoint)
    psutil.Process(renderer_pid).send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 60
    new_pid = renderer_pid
    while new_pid == renderer_pid and time.monotonic() < deadline:
        new_pid = _heartbeat_pid(node_config.renderer.frames_endpoint)
    assert new_pid != renderer_pid, "the renderer was not restarted"
    assert _heartbeat_pid(node_config.decoder.latents_endpoint) == decoder_pid
    children = psutil.Process(session.pid).children(recursive=True)
    assert {p.pid for p in children} >= {new_pid, decoder_pid}
    session.send_signal(signal.SIGINT)
    assert session.wait(timeout=30) == 0  # a requested stop is a clean exit
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive
    assert "restarting it (1/5)" in session.log_text()


def test_port_in_use_is_one_line_naming_the_endpoint(node_config, tmp_path):
    port = int(node_config.decoder.latents_endpoint.rsplit(":", 1)[1])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = _run(_write(node_config, tmp_path, **{"run.nodes": ["decoder"]}))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("rt-recon: error:")]
    assert len(errors) == 1
    assert f"decoder: cannot bind tcp://127.0.0.1:{port}: Address already in use" in errors[0]


def test_missing_model_is_one_line(node_config, tmp_path):
    result = _run(
        _write(
            node_config,
            tmp_path,
            **{"run.nodes": ["renderer"], "renderer.model": str(tmp_path / "nope")},
        )
    )
    assert result.returncode == 2
    assert (
        f"rt-recon: error: render model directory not found: {tmp_path / 'nope'}" in result.stderr
    )


def test_no_stream_found_is_one_line_naming_the_stream(node_config, tmp_path):
    path = _write(
        node_config,
        tmp_path,
        **{
            "run.nodes": ["decoder"],
            "stream.resolve_timeout_s": 2,
            "decoder.wait_for_subscribers": 0,
        },
    )
    result = _run(path)
    assert result.returncode == 2
    source = node_config.stream.source_id
    expected = f"decoder stopped: no LSL stream with source_id={source!r} found within 2 s"
    assert f"rt-recon: error: {expected}" in result.stderr


def test_right_after_a_session_on_the_same_port_it_starts_and_prints_where_things_are(
    node_config, node_processes, tmp_path
):
    endpoint = node_config.decoder.latents_endpoint
    port = int(endpoint.rsplit(":", 1)[1])
    leave_in_time_wait(port)  # as the decoder of a session that just crashed leaves its port
    assert plain_bind_fails(port)
    path = _write(node_config, tmp_path, **{"run.nodes": ["decoder"]})
    session = node_processes.rt_recon("session", "run", path)
    assert wait_for_heartbeat(endpoint)["node"] == "decoder"
    assert in_time_wait(port)  # it started although the port's old connection was still there
    session.wait_for_line(r"^  logs: ", timeout=30)
    session.send_signal(signal.SIGINT)
    assert session.wait(timeout=30) == 0
    out = session.log_text()
    output_dir = node_config.paths.output_dir
    assert "rt-recon run: started decoder (Ctrl-C to stop)" in out
    assert "  recording:   none (no recorder)" in out
    assert f"  config:      {output_dir / 'session.json'} (without secrets)" in out
    assert f"  logs:        {output_dir / 'logs'}" in out
    assert re.search(r"rt-recon run: session ended after \d+ s\n", out)
    assert "  TRs:       0 (0 missed, 0 skipped)\n" in out  # the decoder was heard, no stream
    assert "  frames:    none (no renderer heartbeat heard)\n" in out
    assert "  recording: none written\n" in out


def test_an_existing_recording_is_refused_before_any_node_starts(node_config, tmp_path):
    output_dir = node_config.paths.output_dir
    recording = output_dir / "recording.h5"
    output_dir.mkdir(parents=True)
    recording.write_bytes(b"the recording of an earlier session")
    result = _run(_write(node_config, tmp_path))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("rt-recon: error:")]
    assert errors == [
        f"rt-recon: error: recorder: {recording} exists and a recording is never overwritten: "
        "move it away, or set recorder.path (or paths.output_dir) to a new place"
    ]
    assert sorted(p.name for p in output_dir.iterdir()) == ["recording.h5"]  # no logs, no config
    assert recording.read_bytes() == b"the recording of an earlier session"
    assert result.stdout == ""
