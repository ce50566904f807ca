"""As at a scanner: ``rt-recon simulate export`` and ``rt-recon bridge`` as two real processes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from rt_recon.acquire.series import read_series
from rt_recon.config import SessionConfig
from rt_recon.transport.lsl import VolumeInlet
from tests.acquire._shared import shared_path
from tests.conftest import unique

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]


def _lines(stream, sink: list[str]) -> None:
    for line in stream:
        sink.append(line)


def test_export_and_bridge_processes_stream_a_ge_run(tmp_path):
    source = shared_path("pyneal_vendor_samples", "GE_env", "funcData", "s1925")
    direct = read_series(source)
    watch = tmp_path / "export"
    watch.mkdir()
    source_id = unique("cli_bridge")
    config = SessionConfig.model_validate(
        {"stream": {"name": unique("cli"), "source_id": source_id}, "session": {"id": "s7"}}
    )
    config_path = tmp_path / "session.json"
    config_path.write_text(config.to_json())
    rt = [sys.executable, "-m", "rt_recon"]
    bridge = subprocess.Popen(
        [
            *rt,
            "bridge",
            "--watch",
            str(watch),
            "--config",
            str(config_path),
            "--speed",
            "2",
            "--idle-stop",
            "3",
            "--give-up",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log: list[str] = []
    threading.Thread(target=_lines, args=(bridge.stderr, log), daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while not any("watching" in line for line in log):
            assert bridge.poll() is None, "".join(log)
            assert time.monotonic() < deadline, "the bridge never started watching"
            time.sleep(0.1)
        (watch / "junk.dcm").write_bytes(b"this is not a scanner file" * 20)
        export = subprocess.run(
            [*rt, "simulate", "export", str(source), str(watch), "--speed", "2"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert export.returncode == 0, export.stderr
        with VolumeInlet.resolve(source_id, timeout=30) as inlet:
            assert inlet.meta.session == "s7" and inlet.meta.speed == 2.0
            values = []
            for _ in range(3):
                assert inlet.pull(timeout=10) is not None
                values.append(inlet.values.copy())
        out, _ = bridge.communicate(timeout=60)
    finally:
        bridge.kill()
    assert bridge.returncode == 0, "".join(log)
    for got, volume in zip(values, direct.volumes, strict=True):
        np.testing.assert_array_equal(got, volume.flat())
    assert "3 volumes streamed" in out
    assert "unreadable: junk.dcm" in out
