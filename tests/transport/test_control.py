"""Control requests over real ZeroMQ REQ/REP: replies, refusals, timeouts, CURVE."""

from __future__ import annotations

import threading

import pytest
import zmq

from rt_recon.config import SecuritySection
from rt_recon.errors import StreamError
from rt_recon.protocol import ControlReply, ControlRequest, encode_message
from rt_recon.transport.control import ControlServer, request
from rt_recon.transport.curve import write_certificates
from tests.conftest import free_port


class _Serving:
    """A ControlServer answering on its own thread until closed."""

    def __init__(self, handle, **kwargs):
        self.server = ControlServer(f"tcp://127.0.0.1:{free_port()}", **kwargs)
        self.endpoint = self.server.endpoint
        self.handle = handle
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.server.serve(self.handle, timeout=0.05)

    def __enter__(self) -> _Serving:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.server.close()


def _echo(request: ControlRequest) -> ControlReply:
    if request.command == "bad":
        raise ValueError("bad is not a command")
    return ControlReply(ok=True, got=request.command, by=request.by)


def test_a_request_gets_the_handlers_reply():
    with _Serving(_echo) as serving:
        got = request(serving.endpoint, {"command": "stop", "by": "console"})
        assert got == {"ok": True, "got": "stop", "by": "console"}
        assert request(serving.endpoint, {"command": "start"})["by"] == "unknown"  # by default


def test_a_refused_request_is_answered_with_the_reason():
    with _Serving(_echo) as serving:
        reply = request(serving.endpoint, {"command": "bad"})
        assert reply == {"ok": False, "error": "bad is not a command"}


def test_a_malformed_request_is_answered_and_counted():
    with _Serving(_echo) as serving:
        socket = zmq.Context.instance().socket(zmq.REQ)
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(serving.endpoint)
        try:
            socket.send_multipart([b"control", b"{not json"])
            assert socket.poll(5000)
            reply = socket.recv_multipart()
            assert b'"ok":false' in reply[1] and b"JSON" in reply[1]
            socket.send_multipart(encode_message("status", {"command": "stop"}))
            assert socket.poll(5000)
            assert b"expected topic 'control', found 'status'" in socket.recv_multipart()[1]
        finally:
            socket.close()
        assert serving.server.malformed == 2
        assert request(serving.endpoint, {"command": "stop"})["ok"]  # still serving


def test_no_server_is_a_stream_error_naming_the_endpoint():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(StreamError, match=rf"no reply from {endpoint} within 0.3 s"):
        request(endpoint, {"command": "stop"}, timeout=0.3)


def test_a_bound_endpoint_is_a_stream_error():
    with _Serving(_echo) as serving, pytest.raises(StreamError, match="cannot bind"):
        ControlServer(serving.endpoint)


def test_with_curve_only_authorised_clients_are_answered(tmp_path):
    keys = write_certificates(tmp_path / "keys")
    other = write_certificates(tmp_path / "other")
    security = SecuritySection(curve="always", **keys.settings())
    with _Serving(_echo, curve=security) as serving:
        assert request(serving.endpoint, {"command": "stop"}, curve=security)["ok"]
        stranger = SecuritySection(
            curve="always",
            **{**keys.settings(), "curve_client_cert": other.settings()["curve_client_cert"]},
        )
        with pytest.raises(StreamError, match="no reply"):
            request(serving.endpoint, {"command": "stop"}, timeout=1.0, curve=stranger)
