"""Nodes publish heartbeats on the status topic, also while they wait, and stop promptly."""

from __future__ import annotations

import signal
import time

import pytest

from rt_recon.protocol import TOPIC_STATUS
from rt_recon.transport.zmq import Subscriber

pytestmark = pytest.mark.slow


def test_decoder_heartbeats_while_waiting_for_its_stream_and_stops_on_sigterm(
    node_config, node_processes
):
    config = node_config.with_overrides({"decoder.wait_for_subscribers": 0})
    decoder = node_processes.node("decoder", config)
    with Subscriber(node_config.decoder.latents_endpoint, [TOPIC_STATUS]) as status:
        beats = []
        deadline = time.monotonic() + 30
        while len(beats) < 3 and time.monotonic() < deadline:
            message = status.receive(timeout=1.0)
            if message is not None:
                beats.append(message.header)
    assert len(beats) == 3, "expected a heartbeat about every second"
    assert {b["node"] for b in beats} == {"decoder"}
    assert {b["state"] for b in beats} == {"waiting_for_stream"}
    assert beats[0]["source_id"] == node_config.stream.source_id
    assert [b["seq"] for b in beats] == sorted(b["seq"] for b in beats)
    assert all(b["pid"] == decoder.pid for b in beats)
    decoder.send_signal(signal.SIGTERM)
    assert decoder.wait(timeout=10) == 0  # well before its 20 s resolve timeout
