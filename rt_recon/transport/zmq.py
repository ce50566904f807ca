"""ZeroMQ PUB/SUB with the rt_recon multipart framing and latest-only consumption.

* :class:`BoundSocket` is what every bound socket shares (CURVE server
  where the policy asks, clear bind errors); the control socket
  (:mod:`rt_recon.transport.control`) is one too.
* :class:`Publisher` binds an XPUB socket, so it can wait until subscribers
  are there (no ``sleep()`` against the slow-joiner problem). It counts
  subscriber *peers* per topic, not subscription messages: each
  :class:`Subscriber` announces itself with one more subscription per topic,
  ``<topic>\\0<peer id>``, which no message ever matches (a topic frame holds
  no NUL); a plain subscription without an announcement (another library's
  SUB socket) counts as one peer. ``XPUB_VERBOSER`` passes every
  subscription and unsubscription up, so a peer that leaves (closes, dies)
  is no longer counted (docs/protocol.md 3, "Subscribers").
* :class:`Subscriber` connects a SUB socket. ``receive()`` returns the next
  message; ``receive_latest()`` drains everything waiting and returns only
  the newest, counting what it skipped (ZeroMQ's CONFLATE cannot do this for
  multipart messages). Malformed messages are counted and dropped.

Both take the config's ``security`` section (``curve=config.security``): where
it asks for CURVE on the endpoint (by default: any non-loopback tcp endpoint),
the publisher is a CURVE server that lets in authorised clients only and the
subscriber a CURVE client (:mod:`rt_recon.transport.curve`). Without it the
default policy applies, so a non-loopback endpoint without keys is refused.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
import zmq

from rt_recon.config import SecuritySection
from rt_recon.errors import ConfigError, ProtocolError, StreamError
from rt_recon.protocol import DEFAULT_MAX_MESSAGE_BYTES, Message, decode_message, encode_message
from rt_recon.transport.curve import (
    CurveServer,
    client_keys,
    configure_client,
    serve_curve,
    server_keys,
)

log = logging.getLogger(__name__)


class BoundSocket:
    """A socket of ``kind`` bound to ``endpoint``, a CURVE server where the policy asks.

    The common part of :class:`Publisher` and
    :class:`rt_recon.transport.control.ControlServer`: CURVE keys are checked
    before any socket exists (ConfigError), a failed bind is a StreamError
    naming the endpoint, and :meth:`close` closes the socket before its
    authenticator, so no connection is ever let in unchecked.
    """

    def __init__(
        self,
        kind: int,
        endpoint: str,
        context: zmq.Context | None = None,
        curve: SecuritySection | None = None,
        options: Mapping[int, int] | None = None,
    ):
        keys = server_keys(curve, endpoint)  # ConfigError before any socket exists
        self._context = context or zmq.Context.instance()
        self._socket = self._context.socket(kind)
        self._socket.setsockopt(zmq.LINGER, 0)
        for option, value in (options or {}).items():
            self._socket.setsockopt(option, value)
        self._curve: CurveServer | None = None
        try:
            if keys is not None:
                self._curve = serve_curve(self._socket, self._context, keys)
            self._socket.bind(endpoint)
        except (zmq.ZMQError, ConfigError) as exc:
            self.close()
            if isinstance(exc, ConfigError):
                raise
            raise StreamError(f"cannot bind {endpoint}: {exc.strerror}") from None
        self.curve = keys is not None
        self.endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)

    @property
    def socket(self) -> zmq.Socket:
        """The underlying socket (to register with a ``zmq.Poller``)."""
        return self._socket

    def close(self, linger_s: float = 0.0) -> None:
        """Close (once; later calls do nothing). ``linger_s``: how long messages already sent
        may still take to leave (0: dropped; a node's last heartbeat needs a moment)."""
        if self._socket.closed:
            return
        self._socket.close(linger=int(linger_s * 1000))
        if self._curve is not None:  # after the socket: no connection is ever let in unchecked
            self._curve.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Separates a topic from a subscriber's peer id in its announcement subscription.
PEER_SEPARATOR = b"\x00"


def announcement(topic: str, peer: str) -> bytes:
    """The subscription with which peer ``peer`` announces itself as a subscriber to ``topic``.

    It is ``<topic>\\0<peer>``: no message matches it (a topic frame holds no NUL), so it
    costs nothing but an entry in the publisher's subscription table.
    """
    return topic.encode() + PEER_SEPARATOR + peer.encode()


class Publisher(BoundSocket):
    """An XPUB socket bound to ``endpoint`` that sends rt_recon messages.

    ``curve``: the config's ``security`` section; where it puts CURVE on
    ``endpoint``, only clients with an authorised key can subscribe.

    :meth:`subscribers` counts distinct subscriber peers of a topic (see the
    module docstring): one process subscribed to several topics, or to one
    topic twice, is one subscriber of each topic it takes.

    Thread-safe: a lock serialises every use of the socket, so a node's work
    loop and its heartbeat thread (:mod:`rt_recon.nodes.runner`) can both send.
    """

    def __init__(
        self,
        endpoint: str,
        context: zmq.Context | None = None,
        curve: SecuritySection | None = None,
    ):
        # XPUB_VERBOSER: every subscription and unsubscription comes up, not only the first
        # and the last of a topic, so peers can be counted in and out
        super().__init__(zmq.XPUB, endpoint, context, curve, {zmq.XPUB_VERBOSER: 1})
        self._plain: Counter[str] = Counter()  # subscriptions without an announcement, net
        self._peers: dict[str, set[str]] = {}  # topic -> announced peer ids
        self._lock = threading.Lock()

    def subscribers(self, topic: str) -> int:
        """Distinct subscriber peers of ``topic`` (counting those of every topic) now.

        Announced peers count once whatever else they subscribe to; plain
        subscriptions beyond the announced peers' own count one each.
        """
        self._read_subscriptions(timeout_ms=0)
        return self._count(topic)

    def peers(self, topic: str) -> list[str]:
        """The announced peer ids subscribed to ``topic`` (or to every topic), sorted."""
        self._read_subscriptions(timeout_ms=0)
        return sorted(self._peers.get(topic, set()) | self._peers.get("", set()))

    def _count(self, topic: str) -> int:
        announced = self._peers.get(topic, set()) | self._peers.get("", set())
        anonymous = sum(max(0, self._plain[t] - len(self._peers.get(t, ()))) for t in {topic, ""})
        return len(announced) + anonymous

    def wait_for_subscribers(
        self, n: int, topic: str, timeout: float, on_wait: Callable[[], None] | None = None
    ) -> None:
        """Block until ``n`` distinct subscribers of ``topic`` (or of everything) are there.

        ``on_wait`` (e.g. a heartbeat) is called about every 0.1 s while waiting.
        """
        deadline = time.monotonic() + timeout
        self._read_subscriptions(timeout_ms=0)
        while self._count(topic) < n:
            if on_wait is not None:
                on_wait()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                peers = self.peers(topic)
                raise StreamError(
                    f"{self.endpoint}: waited {timeout:g} s for {n} subscriber(s) to {topic!r}, "
                    f"found {self._count(topic)}"
                    + (f" (announced: {', '.join(peers)})" if peers else "")
                )
            self._read_subscriptions(timeout_ms=int(min(remaining, 0.1) * 1000))
        if n:
            log.info(
                "%s: %d subscriber(s) to %r (announced: %s)",
                self.endpoint, self._count(topic), topic, ", ".join(self.peers(topic)) or "none",
            )  # fmt: skip

    def _read_subscriptions(self, timeout_ms: int) -> None:
        with self._lock:
            while self._socket.poll(timeout_ms, zmq.POLLIN):
                event = self._socket.recv()
                timeout_ms = 0
                if not event or event[0] not in (0, 1):
                    continue  # not a (un)subscription: XPUB passes other messages up too
                subscribe = event[0] == 1
                body, separator, peer = event[1:].partition(PEER_SEPARATOR)
                topic = body.decode(errors="replace")
                if separator:
                    peers = self._peers.setdefault(topic, set())
                    name = peer.decode(errors="replace")
                    if subscribe:
                        peers.add(name)
                    else:
                        peers.discard(name)
                else:
                    self._plain[topic] = max(0, self._plain[topic] + (1 if subscribe else -1))

    def send(
        self, topic: str, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None
    ) -> None:
        self.send_frames(encode_message(topic, header, arrays))

    def send_frames(self, frames: Iterable[Any]) -> None:
        """Send one message's frames (a typed message's ``encode()``, or raw frames)."""
        frames = list(frames)
        with self._lock:
            self._socket.send_multipart(frames, copy=False)


@dataclass
class Received:
    """What one ``receive_latest()`` call got."""

    message: Message | None
    skipped: int = 0  # valid messages drained and dropped because a newer one was there
    malformed: int = 0  # messages that failed protocol validation
    kept: list[Message] = field(default_factory=list)  # older ones ``keep`` kept, in order


def _peer_id(name: str) -> str:
    """A peer id unique to one socket: ``<name>/<pid>/<random>`` (printable ASCII, no NUL)."""
    if not name.isascii() or not name.isprintable() or "/" in name:
        raise ValueError(f"a subscriber name is printable ASCII without '/', found {name!r}")
    return f"{name}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


class Subscriber:
    """A SUB socket connected to ``endpoint``, subscribed to ``topics``.

    ``curve``: the config's ``security`` section; where it puts CURVE on
    ``endpoint``, the socket connects as a CURVE client with its own key.

    The socket announces itself to the publisher as one subscriber peer of
    each topic (the module docstring), under ``peer``: ``name``, the process
    id and a random part, so a publisher waiting for subscribers can say who
    is there.
    """

    def __init__(
        self,
        endpoint: str,
        topics: Iterable[str],
        context: zmq.Context | None = None,
        max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        rcvhwm: int = 1000,
        curve: SecuritySection | None = None,
        name: str = "sub",
    ):
        self.peer = _peer_id(name)
        keys = client_keys(curve, endpoint)  # ConfigError before any socket exists
        self._context = context or zmq.Context.instance()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        if keys is not None:
            configure_client(self._socket, keys)
        self.curve = keys is not None
        self._socket.setsockopt(zmq.RCVHWM, rcvhwm)
        # Frames larger than the limit are refused by libzmq before they are buffered.
        self._socket.setsockopt(zmq.MAXMSGSIZE, max_bytes)
        self._max_bytes = max_bytes
        for topic in topics:
            # the subscription first, then the announcement: the publisher takes one peer's
            # subscriptions in order, so a peer it counts already gets the topic's messages
            self._socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
            self._socket.setsockopt(zmq.SUBSCRIBE, announcement(topic, self.peer))
        try:
            self._socket.connect(endpoint)
        except zmq.ZMQError as exc:
            self._socket.close()
            raise StreamError(f"cannot connect to {endpoint}: {exc.strerror}") from None
        self.endpoint = endpoint
        self.malformed = 0
        self.skipped = 0

    @property
    def socket(self) -> zmq.Socket:
        """The underlying socket (to register with a ``zmq.Poller``)."""
        return self._socket

    def _recv_valid(self, flags: int) -> tuple[Message | None, int]:
        """One message off the socket: (message or None if malformed, 1 if malformed)."""
        frames = self._socket.recv_multipart(flags=flags, copy=False)
        try:
            return decode_message(frames, self._max_bytes), 0
        except ProtocolError as exc:
            log.warning("dropped a malformed message from %s: %s", self.endpoint, exc)
            return None, 1

    def receive(self, timeout: float) -> Message | None:
        """The next valid message, or None if none arrives within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            if not self._socket.poll(int(remaining * 1000), zmq.POLLIN):
                return None
            message, bad = self._recv_valid(0)
            self.malformed += bad
            if message is not None:
                return message

    def receive_latest(
        self, timeout: float, keep: Callable[[Message], bool] | None = None
    ) -> Received:
        """Wait up to ``timeout`` s for a message, then drain the socket; return the newest,
        and (``kept``) the older ones for which ``keep`` is true, which are not skipped."""
        result = Received(message=None)
        if not self._socket.poll(int(timeout * 1000), zmq.POLLIN):
            return result
        while True:
            try:
                message, bad = self._recv_valid(zmq.NOBLOCK)
            except zmq.Again:
                break
            result.malformed += bad
            if message is not None:
                older = result.message
                if older is not None and keep is not None and keep(older):
                    result.kept.append(older)
                elif older is not None:
                    result.skipped += 1
                result.message = message
        self.malformed += result.malformed
        self.skipped += result.skipped
        return result

    def close(self) -> None:
        self._socket.close(linger=0)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
