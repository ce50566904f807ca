"""A running renderer process skips bad latents messages, says why, and keeps rendering."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from rt_recon.protocol import TOPIC_FRAME, TOPIC_LATENTS
from rt_recon.transport.zmq import Publisher, Subscriber

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_wrong_shape_dtype_and_nan_latents_are_skipped_and_logged(node_config, tmp_path, backend):
    if backend == "onnx":
        pytest.importorskip("onnxruntime", reason="the ONNX backend needs onnxruntime")
    config = node_config.with_overrides(
        {"renderer.wait_for_subscribers": 1, "renderer.backend": backend}
    )
    config_path = tmp_path / "session.json"
    config_path.write_text(config.to_json())
    log_path = tmp_path / "renderer.log"
    z_shape, c_shape = (4, 16, 16), (16, 32)  # the tiny test model's
    good = {"z": np.zeros(z_shape, np.float32), "c": np.zeros(c_shape, np.float32)}
    nan_c = np.zeros(c_shape, np.float32)
    nan_c[3, 4] = np.nan
    messages = [
        ("bad z shape", {"z": np.zeros((4, 8, 8), np.float32), "c": good["c"]}),
        ("bad c shape", {"z": good["z"], "c": np.zeros((77, 1024), np.float32)}),
        ("int z", {"z": np.zeros(z_shape, np.int32), "c": good["c"]}),
        ("nan c", {"z": good["z"], "c": nan_c}),
        ("missing c", {"z": good["z"]}),
        ("good", good),
    ]
    with (
        Publisher(config.decoder.latents_endpoint) as latents,
        log_path.open("w") as log_file,
    ):
        renderer = subprocess.Popen(
            [sys.executable, "-m", "rt_recon", "render", "--config", str(config_path)],
            stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            with Subscriber(config.renderer.frames_endpoint, [TOPIC_FRAME]) as frames:
                latents.wait_for_subscribers(1, TOPIC_LATENTS, timeout=60)
                for seq, (_, arrays) in enumerate(messages):
                    latents.send(TOPIC_LATENTS, {"seq": seq, "tr": seq}, arrays)
                    time.sleep(0.3)  # one at a time, so none is skipped as stale
                frame = frames.receive(timeout=20)
                assert frame is not None and frame.header["seq"] == len(messages) - 1
                assert frames.receive(timeout=1) is None  # nothing rendered from the bad ones
            assert renderer.poll() is None  # still running
        finally:
            renderer.terminate()
            renderer.wait(timeout=10)
    log = log_path.read_text()
    assert "z has shape (4, 8, 8), the model needs (4, 16, 16)" in log
    assert "c has shape (77, 1024), the model needs (16, 32)" in log
    assert "z has dtype int32" in log
    assert "c contains NaN or Inf" in log
    assert "needs buffers 'z' and 'c', found ['z']" in log
