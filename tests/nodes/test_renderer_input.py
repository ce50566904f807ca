"""A running renderer process skips bad latents messages, says why, and keeps rendering."""

from __future__ import annotations

import re

import numpy as np
import pytest

from rt_recon.decode.bundle import DecoderBundle
from rt_recon.protocol import TOPIC_FRAME, TOPIC_LATENTS
from rt_recon.transport.zmq import Publisher, Subscriber
from tests.nodes._latents import latents_header

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_wrong_shape_dtype_and_nan_latents_are_skipped_and_logged(
    node_config, node_processes, backend
):
    if backend == "onnx":
        pytest.importorskip("onnxruntime", reason="the ONNX backend needs onnxruntime")
    config = node_config.with_overrides(
        {"renderer.wait_for_subscribers": 1, "renderer.backend": backend}
    )
    bundle = DecoderBundle.load(config.decoder.bundle)
    z_shape, c_shape = bundle.model.latent_shape, bundle.model.cond_shape
    assert (z_shape, c_shape) == ((4, 16, 16), (16, 32))  # the tiny test model's
    good = {"z": np.zeros(z_shape, np.float32), "c": np.zeros(c_shape, np.float32)}
    nan_c = np.zeros(c_shape, np.float32)
    nan_c[3, 4] = np.nan
    # each bad message, and the line the renderer logs when it skips it
    bad = [
        (
            {"z": np.zeros((4, 8, 8), np.float32), "c": good["c"]},
            "skipped latents seq 0 (TR 0): latent z has shape (4, 8, 8), the model needs "
            "(4, 16, 16)",
        ),
        (
            {"z": good["z"], "c": np.zeros((77, 1024), np.float32)},
            "skipped latents seq 1 (TR 1): conditioning c has shape (77, 1024), the model "
            "needs (16, 32)",
        ),
        (
            {"z": np.zeros(z_shape, np.int32), "c": good["c"]},
            "skipped a latents message: buffer 'z' must be a 3-d float array, found int32 "
            "[4, 16, 16]",
        ),
        ({"z": good["z"], "c": nan_c}, "skipped latents seq 3 (TR 3): c contains NaN or Inf"),
        ({"z": good["z"]}, "latents message needs buffers ['z', 'c'], found ['z']"),
    ]
    with Publisher(config.decoder.latents_endpoint) as latents:
        renderer = node_processes.node("renderer", config)
        with Subscriber(config.renderer.frames_endpoint, [TOPIC_FRAME]) as frames:
            latents.wait_for_subscribers(1, TOPIC_LATENTS, timeout=60)
            for seq, (arrays, skipped) in enumerate(bad):
                latents.send(TOPIC_LATENTS, latents_header(bundle, seq).to_json(), arrays)
                # handled before the next is sent: none is dropped as stale
                renderer.wait_for_line(re.escape(skipped), timeout=30)
            latents.send(TOPIC_LATENTS, latents_header(bundle, len(bad)).to_json(), good)
            frame = frames.receive(timeout=30)
    # the first frame is the good message's: nothing was rendered from the bad ones
    assert frame is not None and frame.header["seq"] == len(bad)
    assert renderer.returncode is None  # still running
