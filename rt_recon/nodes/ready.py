"""When a source may start: every consumer that matters reports its inlet open on the stream.

A source waits until each node behind the given heartbeat endpoints reports a state with its
inlet open (``streaming``, the decoder's ``refused``, the recorder's ``paused``) on the
source's ``source_id`` (docs/protocol.md 3.3), so no consumer misses the first volume. The
replay waits so once (``--await-ready``); the bridge waits so at each new series, for the
outlet it has just opened: given ``stream_uid``, a heartbeat counts only when its
``stream_uid`` is that outlet's, so a node still on the previous series' stream (or on a
stream that was lost and has not noticed yet) is not taken for ready.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from rt_recon.config import SecuritySection
from rt_recon.errors import ProtocolError
from rt_recon.protocol import INLET_OPEN_STATES, TOPIC_STATUS, Status
from rt_recon.transport.zmq import Subscriber

log = logging.getLogger(__name__)


class ReadyWatcher:
    """``watcher()`` is True once every endpoint's node reported its inlet open on
    ``source_id`` (and, given ``stream_uid``, on that very outlet).

    Args:
        endpoints: heartbeat endpoints, or a mapping of names (``decoder``) to them (the
            names are what :meth:`missing` reports).
        source_id: the stream's source_id.
        stream_uid: the outlet's LSL uid; None: any outlet of ``source_id``.
        curve: the session's CURVE settings, for the subscriptions.
    """

    def __init__(
        self,
        endpoints: Sequence[str] | Mapping[str, str],
        source_id: str,
        curve: SecuritySection | None = None,
        stream_uid: str | None = None,
    ):
        named = endpoints if isinstance(endpoints, Mapping) else {e: e for e in endpoints}
        self.source_id = source_id
        self.stream_uid = stream_uid
        self._pending = {
            name: (endpoint, Subscriber(endpoint, [TOPIC_STATUS], curve=curve))
            for name, endpoint in named.items()
        }

    def __call__(self) -> bool:
        for name, (endpoint, sub) in list(self._pending.items()):
            while (message := sub.receive(timeout=0.0)) is not None:
                try:
                    status = Status.from_json(message.header)
                except ProtocolError as exc:
                    log.warning("ignored a heartbeat from %s: %s", endpoint, exc)
                    continue
                if self._on_stream(status):
                    sub.close()
                    del self._pending[name]
                    break
        return not self._pending

    def _on_stream(self, status: Status) -> bool:
        counters = status.counters
        return (
            status.state in INLET_OPEN_STATES
            and counters.get("source_id") == self.source_id
            and (self.stream_uid is None or counters.get("stream_uid") == self.stream_uid)
        )

    def missing(self) -> list[str]:
        """The nodes (names, or endpoints) not on the stream yet."""
        return list(self._pending)

    def close(self) -> None:
        for _, sub in self._pending.values():
            sub.close()
        self._pending.clear()
