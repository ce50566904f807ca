"""When a source may start: every consumer reports its inlet open on the source's stream.

A source (the replay) waits until each node behind the given heartbeat
endpoints reports a state with its inlet open (``streaming``, or the
recorder's ``paused``) on the source's ``source_id``, so no consumer misses
the first volume (docs/protocol.md 3.3).
"""

from __future__ import annotations

import logging

from rt_recon.config import SecuritySection
from rt_recon.errors import ProtocolError
from rt_recon.protocol import INLET_OPEN_STATES, TOPIC_STATUS, Status
from rt_recon.transport.zmq import Subscriber

log = logging.getLogger(__name__)


class ReadyWatcher:
    """``watcher()`` is True once every endpoint's node reported streaming ``source_id``."""

    def __init__(self, endpoints: list[str], source_id: str, curve: SecuritySection | None = None):
        self.source_id = source_id
        self._pending = {e: Subscriber(e, [TOPIC_STATUS], curve=curve) for e in endpoints}

    def __call__(self) -> bool:
        for endpoint, sub in list(self._pending.items()):
            while (message := sub.receive(timeout=0.0)) is not None:
                try:
                    status = Status.from_json(message.header)
                except ProtocolError as exc:
                    log.warning("ignored a heartbeat from %s: %s", endpoint, exc)
                    continue
                if (
                    status.state in INLET_OPEN_STATES
                    and status.counters.get("source_id") == self.source_id
                ):
                    sub.close()
                    del self._pending[endpoint]
                    break
        return not self._pending

    def close(self) -> None:
        for sub in self._pending.values():
            sub.close()
        self._pending.clear()
