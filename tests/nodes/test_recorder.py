"""The recorder process records volumes, markers, latents, frames and heartbeats, and its
file survives a SIGKILL with every TR up to the last complete one."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import zlib

import numpy as np
import pylsl
import pytest

from rt_recon.decode.bundle import DecoderBundle
from rt_recon.protocol import TOPIC_FRAME, TOPIC_LATENTS, TOPIC_STATUS, VolumeStreamMeta
from rt_recon.record.recording import RecordingReader
from rt_recon.transport.lsl import MarkerOutlet, VolumeOutlet
from rt_recon.transport.zmq import Publisher, Subscriber
from tests.conftest import free_port

pytestmark = pytest.mark.slow


def _wait_for_state(endpoint: str, state: str, timeout: float = 30.0) -> dict:
    with Subscriber(endpoint, [TOPIC_STATUS]) as status:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = status.receive(timeout=1.0)
            if message is not None and message.header["state"] == state:
                return message.header
    raise AssertionError(f"no {state!r} heartbeat from {endpoint}")


def test_recorder_survives_sigkill_with_every_complete_tr(node_config, tmp_path):
    config = node_config.with_overrides(
        {"recorder.status_endpoint": f"tcp://127.0.0.1:{free_port()}"}
    )
    config_path = tmp_path / "session.json"
    config_path.write_text(config.to_json())
    bundle = DecoderBundle.load(config.decoder.bundle)
    shape = tuple(bundle.stream["shape"])
    meta = VolumeStreamMeta(shape=shape, affine=np.eye(4), tr=1.0, speed=10.0)
    z_shape, c_shape = tuple(bundle.model["latent_shape"]), tuple(bundle.model["cond_shape"])
    side = bundle.model["image_size"]
    rng = np.random.default_rng(0)
    volumes = rng.normal(1000, 10, size=(400, meta.n_channels)).astype(np.float32)

    with (
        Publisher(config.decoder.latents_endpoint) as decoder,
        Publisher(config.renderer.frames_endpoint) as renderer,
        VolumeOutlet(meta, config.stream.name, config.stream.source_id) as outlet,
    ):
        markers = MarkerOutlet(config.stream.markers_name, config.stream.markers_source_id)
        recorder = subprocess.Popen(
            [sys.executable, "-m", "rt_recon", "record", "--config", str(config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for_state(config.recorder.status_endpoint, "streaming")
            decoder.wait_for_subscribers(1, TOPIC_LATENTS, timeout=10)
            renderer.wait_for_subscribers(1, TOPIC_FRAME, timeout=10)
            markers.wait_for_consumers(10)
            for t, volume in enumerate(volumes):
                outlet.push(volume, pylsl.local_clock())
                if t % 3 == 0:
                    markers.push({"type": "event", "trial": t // 3}, pylsl.local_clock())
                decoder.send(
                    TOPIC_LATENTS,
                    {"seq": t, "tr": t},
                    {"z": np.full(z_shape, t, np.float32), "c": np.zeros(c_shape, np.float32)},
                )
                renderer.send(
                    TOPIC_FRAME,
                    {"seq": t, "tr": t},
                    {"image": np.full((side, side, 3), t % 256, np.uint8)},
                )
                decoder.send(TOPIC_STATUS, {"node": "decoder", "state": "running", "tr": t})
                if t == 60:
                    recorder.send_signal(signal.SIGKILL)  # mid-session, while data flows
                    break
                time.sleep(0.02)
            recorder.wait(timeout=10)
        finally:
            if recorder.poll() is None:
                recorder.kill()
            markers.close()

    with RecordingReader(config.recording_path) as reading:
        values, stamps = reading.volumes()
        headers, z, _ = reading.latents()
        frame_headers, images = reading.frames()
        events = reading.markers()
        beats = reading.status()
    n = len(values)
    assert n >= 50  # the kill came at TR 60; the last TRs may have been in flight
    assert [zlib.crc32(v) for v in values] == [zlib.crc32(v) for v in volumes[:n]]
    assert np.all(np.diff(stamps) > 0)
    assert [h["tr"] for h in headers] == list(range(len(headers))) and len(headers) >= 50
    assert np.all(z[:, 0, 0, 0] == np.arange(len(headers)))
    assert [h["tr"] for h in frame_headers] == list(range(len(frame_headers)))
    assert np.all(images[:, 0, 0, 0] == np.arange(len(frame_headers)) % 256)
    assert [e["trial"] for e, _ in events] == list(range(len(events))) and len(events) >= 15
    assert any(b.get("node") == "decoder" for b in beats)
