"""As at a scanner: ``rt-recon simulate export`` and ``rt-recon bridge`` as two real processes."""

from __future__ import annotations

import numpy as np
import pytest

from rt_recon.acquire.series import read_series
from rt_recon.config import SessionConfig
from rt_recon.transport.lsl import VolumeInlet
from tests.acquire._shared import shared_path
from tests.conftest import unique

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]


def test_export_and_bridge_processes_stream_a_ge_run(node_processes, tmp_path):
    source = shared_path("pyneal_vendor_samples", "GE_env", "funcData", "s1925")
    direct = read_series(source)
    watch = tmp_path / "export"
    watch.mkdir()
    source_id = unique("cli_bridge")
    config = SessionConfig.model_validate(
        {"stream": {"name": unique("cli"), "source_id": source_id}, "session": {"id": "s7"}}
    )
    bridge = node_processes.rt_recon(
        "bridge", "bridge", "--watch", watch, "--config", node_processes.config_path(config),
        "--speed", "2", "--idle-stop", "3", "--give-up", "1", "--await-nodes",  # any inlet
    )  # fmt: skip
    bridge.wait_for_line("watching", timeout=60)
    (watch / "junk.dcm").write_bytes(b"this is not a scanner file" * 20)
    export = node_processes.rt_recon("export", "simulate", "export", source, watch, "--speed", "2")
    assert export.wait(timeout=120) == 0, export.tail()
    with VolumeInlet.resolve(source_id, timeout=30) as inlet:
        assert inlet.meta.session == "s7" and inlet.meta.speed == 2.0
        values = []
        for _ in range(3):
            assert inlet.pull(timeout=10) is not None
            values.append(inlet.values.copy())
    assert bridge.wait(timeout=60) == 0  # it stops by itself once idle
    for got, volume in zip(values, direct.volumes, strict=True):
        np.testing.assert_array_equal(got, volume.flat())
    out = bridge.log_text()
    assert "3 volumes streamed" in out
    assert "unreadable: junk.dcm" in out
