"""Heartbeats: each node publishes its state on the ``status`` topic of its own PUB socket.

A status message is a header only (no buffers)::

    {"node": "decoder", "pid": 123, "state": "streaming", "seq": 7,
     "t": <LSL clock>, "uptime_s": 12.5, ...node-specific counters}

It goes out at least every ``period`` seconds and at once when the state
changes, so a console can call a node away when its heartbeats stop.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pylsl

from rt_recon.config import SecuritySection
from rt_recon.protocol import TOPIC_STATUS
from rt_recon.transport.zmq import Publisher

#: Seconds between heartbeats; a node silent for three periods is away.
HEARTBEAT_PERIOD_S = 1.0

#: States in which a node's inlet is open on its stream (the recorder's ``paused``: open,
#: taking volumes without recording them, until the operator starts recording again).
_INLET_OPEN_STATES = frozenset({"streaming", "paused"})


class ReadyWatcher:
    """``watcher()`` is True once every endpoint's node reported ``streaming`` ``source_id``.

    Used by a source (replay) to start only when every consumer's inlet is
    open, so none of them misses the first volume.
    """

    def __init__(self, endpoints: list[str], source_id: str, curve: SecuritySection | None = None):
        from rt_recon.transport.zmq import Subscriber

        self.source_id = source_id
        self._pending = {e: Subscriber(e, [TOPIC_STATUS], curve=curve) for e in endpoints}

    def __call__(self) -> bool:
        for endpoint, sub in list(self._pending.items()):
            while (message := sub.receive(timeout=0.0)) is not None:
                header = message.header
                inlet_open = header.get("state") in _INLET_OPEN_STATES
                if inlet_open and header.get("source_id") == self.source_id:
                    sub.close()
                    del self._pending[endpoint]
                    break
        return not self._pending

    def close(self) -> None:
        for sub in self._pending.values():
            sub.close()
        self._pending.clear()


class StatusPublisher:
    def __init__(self, publisher: Publisher, node: str, period: float = HEARTBEAT_PERIOD_S):
        self._publisher = publisher
        self.node = node
        self.period = period
        self._started = time.monotonic()
        self._last_sent = -float("inf")
        self._state = ""
        self._seq = 0

    def beat(self, state: str, **fields: Any) -> bool:
        """Publish if the period has passed or ``state`` changed; True if sent."""
        now = time.monotonic()
        if state == self._state and now - self._last_sent < self.period:
            return False
        header = {
            "node": self.node,
            "pid": os.getpid(),
            "state": state,
            "seq": self._seq,
            "t": pylsl.local_clock(),
            "uptime_s": now - self._started,
            **fields,
        }
        self._publisher.send(TOPIC_STATUS, header)
        self._seq += 1
        self._state = state
        self._last_sent = now
        return True
