"""The node runner: heartbeats from their own timer in every state, the same counters in each,
and a last ``stopped``; real ZeroMQ sockets, nodes run in a thread of the test process."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import zmq

from rt_recon.decode.bundle import DecoderBundle
from rt_recon.nodes.decoder import DecoderNode
from rt_recon.nodes.recorder import RecorderNode
from rt_recon.nodes.renderer import RendererNode
from rt_recon.protocol import (
    TOPIC_FRAME,
    TOPIC_LATENTS,
    TOPIC_STATUS,
    Latents,
    Status,
    counter_names,
)
from rt_recon.render import ExecutorWrapper, Img2ImgRenderer, TorchEagerExecutor, load_render_model
from rt_recon.transport.zmq import Publisher, Subscriber
from tests.nodes._latents import latents_header
from tests.nodes._threads import NodeThread

pytestmark = pytest.mark.slow

RENDER_S = 5.0


def _statuses(sub: Subscriber, seconds: float) -> list[tuple[float, Status]]:
    """Heartbeats received over ``seconds``, with their arrival times (monotonic)."""
    out = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        message = sub.receive(timeout=left)
        if message is not None and message.topic == TOPIC_STATUS:
            out.append((time.monotonic(), Status.from_json(message.header)))
    return out


class SlowDecode(ExecutorWrapper):
    """The tiny model with a decoder call that takes RENDER_S seconds."""

    def decode(self, latents):
        time.sleep(RENDER_S)
        return super().decode(latents)


def test_a_renderer_busy_for_5_s_on_one_frame_heartbeats_every_second(node_config):
    model = load_render_model(node_config.renderer.model)
    renderer = Img2ImgRenderer(
        model, steps=2, strength=0.5, executor=SlowDecode(TorchEagerExecutor(model))
    )
    config = node_config.with_overrides({"renderer.write_png": False})
    bundle = DecoderBundle.load(config.decoder.bundle)
    header = latents_header(bundle, model_fingerprint=model.fingerprint)
    latents = Latents(
        header,
        np.zeros(model.latent_shape, np.float32),
        np.zeros(model.cond_shape, np.float32),
    )
    with (
        Publisher(config.decoder.latents_endpoint) as decoder,
        Subscriber(config.renderer.frames_endpoint, [TOPIC_STATUS, TOPIC_FRAME]) as watch,
        NodeThread(RendererNode(config, renderer=renderer)) as node,
    ):
        decoder.wait_for_subscribers(1, TOPIC_LATENTS, timeout=20)
        assert _statuses(watch, 1.5), "no heartbeat before the render"
        decoder.send_frames(latents.encode())
        sent = time.monotonic()
        beats, frame_at = [], None
        while frame_at is None and time.monotonic() - sent < RENDER_S + 10:
            message = watch.receive(timeout=1.0)
            if message is not None and message.topic == TOPIC_FRAME:
                frame_at = time.monotonic()
            elif message is not None:
                beats.append((time.monotonic(), Status.from_json(message.header)))
        assert frame_at is not None and frame_at - sent >= RENDER_S, "the render was not slow"
        during = [t for t, s in beats if t <= frame_at]
        gaps = np.diff([sent, *during, frame_at])
        assert len(during) >= RENDER_S - 1, f"{len(during)} heartbeats in a {RENDER_S} s render"
        assert gaps.max() < 1.5, f"heartbeats {np.round(gaps, 2)} s apart during the render"
        assert {s.state for _, s in beats} == {"running"}
        node.stop()
        last = _statuses(watch, 1.0)
    assert last and last[-1][1].state == "stopped"
    assert last[-1][1].counters["rendered"] == 1


def test_every_state_carries_the_same_counters_and_the_last_word_is_stopped(node_config):
    config = node_config.with_overrides({"decoder.wait_for_subscribers": 1})
    expected = set(counter_names("decoder"))
    with Subscriber(config.decoder.latents_endpoint, [TOPIC_STATUS]) as watch:
        node = NodeThread(DecoderNode(config))
        with node:
            first = _statuses(watch, 2.5)  # waits for a latents subscriber
            with Subscriber(config.decoder.latents_endpoint, [TOPIC_LATENTS]):
                second = _statuses(watch, 2.5)  # then for its volume stream, never there
            node.stop()
            last = _statuses(watch, 1.0)
    states = [s.state for _, s in first + second + last]
    assert "waiting_for_subscribers" in states and "waiting_for_stream" in states
    assert states[-1] == "stopped"
    for _, status in first + second + last:
        assert set(status.counters) == expected, status.state
    for beats in (first, second):
        times = [t for t, _ in beats]
        assert len(times) >= 2 and np.diff(times).max() < 1.5


def test_the_documented_control_request_from_a_raw_zmq_socket(node_config, tmp_path):
    """docs/protocol.md 3.7: ``["control", '{"command": "query"}']``, nothing else."""
    config = node_config.with_overrides({"recorder.path": str(tmp_path / "rec.h5")})
    endpoint = config.recorder.control_endpoint
    context = zmq.Context.instance()
    with NodeThread(RecorderNode(config)):  # serves control while it waits for its stream
        replies = []
        for request in (b'{"command": "query"}', b'{"command": "stop", "by": "a script"}',
                        b'{"command": "query"}', b'{"command": "fly"}', b"not json"):  # fmt: skip
            socket = context.socket(zmq.REQ)
            socket.setsockopt(zmq.LINGER, 0)
            socket.connect(endpoint)
            socket.send_multipart([b"control", request])
            assert socket.poll(10_000), f"no reply to {request!r}"
            topic, header = socket.recv_multipart()
            socket.close()
            assert topic == b"control"
            replies.append(json.loads(header))
    assert replies[0]["ok"] is True and replies[0]["recording"] is True
    assert replies[1] == {**replies[1], "ok": True, "recording": False}
    assert replies[2]["recording"] is False
    assert replies[3]["ok"] is False and "unknown command 'fly'" in replies[3]["error"]
    assert replies[4]["ok"] is False and "not UTF-8 JSON" in replies[4]["error"]
    for reply in replies:
        assert reply["protocol"] == "rt_recon" and reply["version"] == 1
