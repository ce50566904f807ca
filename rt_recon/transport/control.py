"""Requests to a running node and its replies: ZeroMQ REQ/REP with the rt_recon framing.

A node that takes commands (the recorder: start and stop recording) binds a
:class:`ControlServer`; a client (the console) calls :func:`request`. Both
messages are a header only, topic ``control``, typed as
:class:`~rt_recon.protocol.ControlRequest` and
:class:`~rt_recon.protocol.ControlReply`::

    request  {"command": "stop", "by": "console"}
    reply    {"ok": true, ...node-specific fields}  or  {"ok": false, "error": "..."}

A request may leave out the framing keys (``protocol``, ``version``,
``buffers``): ``["control", '{"command": "query"}']`` from a plain ZeroMQ REQ
socket is a whole request (docs/protocol.md 3.7). Replies always carry them.

CURVE applies as on the PUB/SUB sockets (``curve=config.security``). The
server answers every request, a malformed one with ``ok: false`` and the
reason, so a client never hangs on it; a client that gets no answer within
its timeout gets a StreamError naming the endpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import zmq

from rt_recon.config import SecuritySection
from rt_recon.errors import ProtocolError, StreamError
from rt_recon.protocol import (
    SCHEMA_KEY,
    TOPIC_CONTROL,
    ControlReply,
    ControlRequest,
    decode_message,
    encode_message,
)
from rt_recon.transport.curve import client_keys, configure_client
from rt_recon.transport.zmq import BoundSocket

log = logging.getLogger(__name__)

#: A request or reply is a small JSON header; anything larger is refused by libzmq.
MAX_CONTROL_BYTES = 64 * 1024

#: A node's answer to one request; a ValueError becomes ``{"ok": false, "error": ...}``.
Handler = Callable[[ControlRequest], ControlReply]


class ControlServer(BoundSocket):
    """A REP socket bound to ``endpoint``; :meth:`serve` answers the requests waiting."""

    def __init__(
        self,
        endpoint: str,
        context: zmq.Context | None = None,
        curve: SecuritySection | None = None,
    ):
        super().__init__(zmq.REP, endpoint, context, curve, {zmq.MAXMSGSIZE: MAX_CONTROL_BYTES})
        self.malformed = 0

    def serve(self, handle: Handler, timeout: float = 0.0) -> int:
        """Answer every request waiting (the first up to ``timeout`` s away); how many."""
        answered = 0
        wait_ms = int(timeout * 1000)
        while self._socket.poll(wait_ms, zmq.POLLIN):
            wait_ms = 0
            frames = self._socket.recv_multipart(copy=False)
            try:
                message = decode_message(frames, MAX_CONTROL_BYTES, require_framing=False)
                if message.topic != TOPIC_CONTROL:
                    raise ProtocolError(
                        f"expected topic {TOPIC_CONTROL!r}, found {message.topic!r}"
                    )
                reply = handle(ControlRequest.from_json(message.header))
            except (ProtocolError, ValueError) as exc:
                self.malformed += isinstance(exc, ProtocolError)
                log.warning("control request refused: %s", exc)
                reply = ControlReply(ok=False, error=str(exc))
            self._socket.send_multipart(reply.encode(), copy=False)
            answered += 1
        return answered


def request(
    endpoint: str,
    header: Mapping[str, Any],
    timeout: float = 2.0,
    curve: SecuritySection | None = None,
) -> dict[str, Any]:
    """Send one request to the :class:`ControlServer` at ``endpoint``; its reply header.

    Raises:
        StreamError: no reply within ``timeout`` seconds, or a malformed reply.
    """
    keys = client_keys(curve, endpoint)
    context = zmq.Context.instance()
    socket = context.socket(zmq.REQ)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.MAXMSGSIZE, MAX_CONTROL_BYTES)
    try:
        if keys is not None:
            configure_client(socket, keys)
        socket.connect(endpoint)
        socket.send_multipart(encode_message(TOPIC_CONTROL, header), copy=False)
        if not socket.poll(int(timeout * 1000), zmq.POLLIN):
            raise StreamError(f"no reply from {endpoint} within {timeout:g} s (is the node up?)")
        try:
            message = decode_message(socket.recv_multipart(copy=False), MAX_CONTROL_BYTES)
            reply = ControlReply.from_json(message.header)
        except ProtocolError as exc:
            raise StreamError(f"malformed reply from {endpoint}: {exc}") from None
        return {k: v for k, v in reply.to_json().items() if k != SCHEMA_KEY}
    except zmq.ZMQError as exc:
        raise StreamError(f"cannot reach {endpoint}: {exc.strerror}") from None
    finally:
        socket.close(linger=0)
