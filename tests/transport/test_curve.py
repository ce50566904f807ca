"""ZeroMQ CURVE on real sockets: authorised clients get every message, others are refused."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import zmq
import zmq.auth
from zmq.utils.monitor import recv_monitor_message

from rt_recon.config import SecuritySection
from rt_recon.errors import ConfigError
from rt_recon.transport.curve import write_certificates
from rt_recon.transport.zmq import Publisher, Subscriber
from tests.conftest import free_port

_HANDSHAKE_EVENTS = {
    zmq.EVENT_HANDSHAKE_SUCCEEDED: "succeeded",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "failed: protocol",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "failed: auth",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "failed: no detail",
}


@pytest.fixture
def endpoint():
    return f"tcp://127.0.0.1:{free_port()}"


@pytest.fixture
def keys(tmp_path):
    return write_certificates(tmp_path / "keys")


@pytest.fixture
def other_keys(tmp_path):
    """Certificates of another installation: valid, but not the ones the server trusts."""
    return write_certificates(tmp_path / "other")


@pytest.fixture
def security(keys):
    """CURVE on every endpoint (loopback included), with the session's own certificates."""
    return SecuritySection(curve="always", **keys.settings())


def handshake(sub: Subscriber, endpoint: str, timeout_s: float = 10.0) -> str:
    """Reconnect ``sub`` with a monitor attached; how its next CURVE handshake ended."""
    monitor = sub.socket.get_monitor_socket(sum(_HANDSHAKE_EVENTS))
    try:
        sub.socket.disconnect(endpoint)
        sub.socket.connect(endpoint)
        if not monitor.poll(int(timeout_s * 1000)):
            return "no handshake"
        return _HANDSHAKE_EVENTS[recv_monitor_message(monitor)["event"]]
    finally:
        sub.socket.disable_monitor()
        monitor.close()


def test_an_authorised_subscriber_receives_every_message(endpoint, security):
    with (
        Publisher(endpoint, curve=security) as pub,
        Subscriber(endpoint, ["latents"], curve=security) as sub,
    ):
        assert pub.curve and sub.curve
        pub.wait_for_subscribers(1, "latents", timeout=10)
        for seq in range(10):
            pub.send("latents", {"seq": seq}, {"z": np.full((2, 3), seq, np.float32)})
        got = [sub.receive(timeout=5) for _ in range(10)]
        assert [m.header["seq"] for m in got] == list(range(10))
        assert all(np.all(m.arrays["z"] == m.header["seq"]) for m in got)


@pytest.mark.parametrize("client", ["no keys", "unauthorised key", "wrong server key"])
def test_an_unauthenticated_subscriber_is_refused_and_receives_nothing(
    endpoint, security, keys, other_keys, client, caplog
):
    refused_security = {
        "no keys": None,  # loopback, default policy: a plain (NULL mechanism) socket
        "unauthorised key": SecuritySection(
            curve="always",
            curve_client_cert=other_keys.client_secret,
            curve_server_public=keys.server_public,
        ),
        "wrong server key": SecuritySection(
            curve="always",
            curve_client_cert=keys.client_secret,
            curve_server_public=other_keys.server_public,
        ),
    }[client]
    expected = {
        "no keys": "failed: protocol",  # mechanism mismatch: NULL client, CURVE server
        "unauthorised key": "failed: auth",  # the ZAP handler said no
        "wrong server key": "failed: no detail",  # the server cannot read the client's hello
    }[client]
    caplog.set_level(logging.WARNING, logger="rt_recon.transport.curve")
    with (
        Publisher(endpoint, curve=security) as pub,
        Subscriber(endpoint, ["latents"], curve=refused_security) as refused,
        Subscriber(endpoint, ["latents"], curve=security) as allowed,
    ):
        assert refused.curve is (refused_security is not None)
        assert handshake(refused, endpoint) == expected
        pub.wait_for_subscribers(1, "latents", timeout=10)
        for seq in range(5):
            pub.send("latents", {"seq": seq})
        assert [allowed.receive(timeout=5).header["seq"] for _ in range(5)] == list(range(5))
        assert refused.receive(timeout=1.0) is None
        assert pub.subscribers("latents") == 1  # the authorised subscriber only
    refused_log = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    if client == "unauthorised key":
        public, _ = zmq.auth.load_certificate(other_keys.client_public)
        assert any(public.decode() in line for line in refused_log), refused_log
    else:
        assert refused_log == []  # refused before the ZAP handler is asked


def test_the_authenticator_outlives_one_of_two_servers(security):
    """Two CURVE publishers on one context share the ZAP handler; closing one keeps it."""
    first, second = (f"tcp://127.0.0.1:{free_port()}" for _ in range(2))
    with Publisher(second, curve=security) as pub:
        Publisher(first, curve=security).close()
        with Subscriber(second, ["frame"], curve=security) as sub:
            assert handshake(sub, second) == "succeeded"
            pub.wait_for_subscribers(1, "frame", timeout=10)
            pub.send("frame", {"seq": 1})
            assert sub.receive(timeout=5).header["seq"] == 1


def test_a_curve_server_opens_right_after_the_last_one_closed(security):
    """Each close stops the context's authenticator and each open starts a new one: libzmq
    frees a closed socket's endpoints only later, so the new one must not need them."""
    for _ in range(200):  # most reopenings failed when the old endpoints were still taken
        Publisher(f"tcp://127.0.0.1:{free_port()}", curve=security).close()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with (
        Publisher(endpoint, curve=security) as pub,
        Subscriber(endpoint, ["frame"], curve=security) as sub,
    ):
        assert handshake(sub, endpoint) == "succeeded"
        pub.wait_for_subscribers(1, "frame", timeout=10)
        pub.send("frame", {"seq": 1})
        assert sub.receive(timeout=5).header["seq"] == 1


def test_binding_or_connecting_a_non_loopback_endpoint_without_keys_is_refused():
    endpoint = f"tcp://0.0.0.0:{free_port()}"
    with pytest.raises(ConfigError, match=rf"binding {endpoint} needs ZeroMQ CURVE keys.*"
                       r"not a loopback endpoint.*security.curve_server_cert"):  # fmt: skip
        Publisher(endpoint)
    client_keys = "security.curve_client_cert, security.curve_server_public"
    with pytest.raises(ConfigError, match=rf"subscribing to tcp://10\.1\.2\.3:5555 needs ZeroMQ "
                       rf"CURVE keys.*{client_keys}"):  # fmt: skip
        Subscriber("tcp://10.1.2.3:5555", ["latents"])


def test_a_public_certificate_where_a_secret_one_belongs_is_a_config_error(endpoint, keys):
    security = SecuritySection(
        curve="always",
        curve_server_cert=keys.server_public,  # the public half: no secret key in it
        curve_authorized_clients=keys.authorized_clients,
    )
    expected = (
        r"security.curve_server_cert: expected a secret certificate .* "
        rf"found a public certificate only: {keys.server_public}"
    )
    with pytest.raises(ConfigError, match=expected):
        Publisher(endpoint, curve=security)


def test_an_empty_authorised_folder_is_a_config_error(endpoint, keys, tmp_path):
    empty = tmp_path / "nobody"
    empty.mkdir()
    security = SecuritySection(
        curve="always", curve_server_cert=keys.server_secret, curve_authorized_clients=empty
    )
    with pytest.raises(ConfigError, match=rf"at least one client public certificate.*{empty}"):
        Publisher(endpoint, curve=security)


def test_written_certificates_are_zpl_text_with_private_secrets(keys):
    for secret in (keys.server_secret, keys.client_secret):
        assert os.stat(secret).st_mode & 0o077 == 0
        public, secret_key = zmq.auth.load_certificate(secret)
        assert len(public) == len(secret_key) == 40  # Z85 of 32 bytes
    text = keys.server_public.read_text(encoding="utf-8")
    assert "public-key" in text and "secret-key" not in text
    assert (keys.authorized_clients / "client.key").read_bytes() == keys.client_public.read_bytes()
    with pytest.raises(ConfigError, match="expected no certificates"):
        write_certificates(keys.server_secret.parent)
