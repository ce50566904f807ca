"""The ``rt-recon`` command as a user runs it: errors, Ctrl-C, no process left behind.

A command that runs to its end is run with ``subprocess.run``, as a shell runs it: its
exit code, its stdout and its stderr apart. The demo, stopped with Ctrl-C, is a child of
the ``node_processes`` fixture, which stops it if the test fails first.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import psutil
import pytest
import yaml

from rt_recon.config import load_config
from rt_recon.nodes.ready import ReadyWatcher
from tests.conftest import SMALL_SIM, free_port, unique


def _demo_config(tmp_path, **renderer):
    config = {
        "paths": {"output_dir": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache")},
        "simulation": SMALL_SIM.model_dump(mode="json"),
        "stream": {
            "name": unique("v"),
            "source_id": unique("vs"),
            "markers_name": unique("m"),
            "markers_source_id": unique("ms"),
        },
        "decoder": {"latents_endpoint": f"tcp://127.0.0.1:{free_port()}"},
        "renderer": {"frames_endpoint": f"tcp://127.0.0.1:{free_port()}", **renderer},
        "recorder": {
            "status_endpoint": f"tcp://127.0.0.1:{free_port()}",
            "control_endpoint": f"tcp://127.0.0.1:{free_port()}",
        },
        "replay": {"speed": 1.0},
    }
    config["simulation"]["grid"] = list(config["simulation"]["grid"])
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _rt_recon(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "rt_recon", *args],
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def test_bad_config_is_a_one_line_error_with_exit_code_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("renderer:\n  stepz: 2\n")
    result = _rt_recon("demo", "--config", str(path))
    assert result.returncode == 2
    assert f"{path}: invalid session config" in result.stderr
    assert "renderer.stepz: unknown key" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_model_fails_before_any_stream(tmp_path):
    config = _demo_config(tmp_path, model=str(tmp_path / "no_model"))
    result = _rt_recon("render", "--config", str(config))
    assert result.returncode == 2
    assert "render model directory not found" in result.stderr


@pytest.mark.slow
def test_sigint_on_demo_stops_every_child(node_processes, tmp_path):
    path = _demo_config(tmp_path)
    config = load_config(path)
    demo = node_processes.rt_recon("demo", "demo", "--config", path)
    # the session is under way once the decoder and the recorder stream the replay's volumes
    streaming = ReadyWatcher(
        [config.decoder.latents_endpoint, config.recorder.status_endpoint],
        config.stream.source_id,
    )
    try:
        deadline = time.monotonic() + 180  # it generates and fits its data first
        while not streaming():
            node_processes.assert_running()
            assert time.monotonic() < deadline, "the demo's nodes never reported streaming"
            time.sleep(0.1)
    finally:
        streaming.close()
    children = psutil.Process(demo.pid).children(recursive=True)
    commands = sorted(p.cmdline()[3] for p in children)  # python -m rt_recon COMMAND ...
    assert commands == ["decode", "record", "render", "simulate"]
    demo.send_signal(signal.SIGINT)
    assert demo.wait(timeout=60) == 130, demo.tail()
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"left behind: {[p.pid for p in alive]}"
    assert "interrupted" in demo.log_text()


def test_keys_writes_certificates_and_prints_config_lines_that_validate(tmp_path):
    from rt_recon.config import validate_config

    folder = tmp_path / "keys"
    result = _rt_recon("keys", str(folder))
    assert result.returncode == 0, result.stderr
    lines = yaml.safe_load(result.stdout.split("config lines:", 1)[1])
    assert lines["security"]["curve_server_cert"] == str(folder / "server.key_secret")
    assert (folder / "authorized_clients" / "client.key").is_file()
    assert "server public key (Z85, for clients in other languages): " in result.stdout
    config = validate_config({**lines, "decoder": {"latents_endpoint": "tcp://0.0.0.0:5555"}}, "x")
    assert config.security.curve_on(config.decoder.latents_endpoint)

    again = _rt_recon("keys", str(folder))
    assert again.returncode == 2
    assert "expected no certificates in" in again.stderr and "--force" in again.stderr
    assert "Traceback" not in again.stderr
    before = (folder / "server.key_secret").read_bytes()
    assert _rt_recon("keys", str(folder), "--force").returncode == 0
    assert (folder / "server.key_secret").read_bytes() != before
