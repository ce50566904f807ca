"""``rt-recon run``: restarts a crashed renderer, stops cleanly, and names startup failures.

A session that runs until stopped is a child of the ``node_processes`` fixture; a
session that fails at startup is run to its end as a user runs it (``subprocess.run``):
its exit code, and its stderr apart from its stdout.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

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
