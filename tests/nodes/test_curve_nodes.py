"""A node run from a config that asks for CURVE serves authorised subscribers only."""

from __future__ import annotations

import signal

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from rt_recon.protocol import TOPIC_STATUS
from rt_recon.transport.curve import write_certificates
from rt_recon.transport.zmq import Subscriber

pytestmark = pytest.mark.slow


def test_the_decoder_node_serves_heartbeats_to_authorised_subscribers_only(
    node_config, node_processes, tmp_path
):
    keys = write_certificates(tmp_path / "keys")
    config = node_config.with_overrides(
        {
            "decoder.wait_for_subscribers": 0,
            "security.curve": "always",
            **keys.overrides(),
        }
    )
    endpoint = config.decoder.latents_endpoint
    decoder = node_processes.node("decoder", config)
    with (
        Subscriber(endpoint, [TOPIC_STATUS]) as plain,
        Subscriber(endpoint, [TOPIC_STATUS], curve=config.security) as authorised,
    ):
        monitor = plain.socket.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        )
        beat = authorised.receive(timeout=30)  # the node binds once it has started up
        assert beat is not None, "no heartbeat reached the authorised subscriber"
        assert beat.header["node"] == "decoder" and beat.header["pid"] == decoder.pid
        plain.socket.disconnect(endpoint)  # a fresh handshake, watched by the monitor
        plain.socket.connect(endpoint)
        assert monitor.poll(10_000), "the plain subscriber's handshake never ended"
        assert recv_monitor_message(monitor)["event"] == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        assert authorised.receive(timeout=5) is not None  # heartbeats go on ...
        assert plain.receive(timeout=1.0) is None  # ... to the authorised one only
        plain.socket.disable_monitor()
        monitor.close()
    decoder.send_signal(signal.SIGTERM)
    assert decoder.wait(timeout=10) == 0
