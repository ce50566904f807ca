"""One node contract and one runner for every node process (decoder, renderer, recorder).

A node does its job in four calls, in this order::

    prepare()        load what it needs (bundle, model): errors before any socket opens
    open(ctx)        its inputs: streams, subscriptions; may wait (ctx.state says on what)
    step()           one unit of work, blocking at most about 0.1 s
    close()          release what open() took (called always, also after an error)

and keeps its heartbeat counters in ``counters`` (a dataclass of the protocol:
:class:`~rt_recon.protocol.DecoderCounters`, ...). The runner
(:func:`run_node`) owns everything around that: it binds the node's publisher
(latents, frames or status), heartbeats from its own timer thread at least
once a period in every state (so a long render or a long wait never silences
a node), waits for the node's subscribers, calls ``step()`` until asked to
stop, and cleans up in ``finally``, with a last ``stopped`` heartbeat.

A node's per-TR logic is testable in process: give it a :class:`NodeContext`
with any publisher (something with ``send(frames)``) and call its steps; no
runner, thread or socket is needed (tests/nodes/test_node_steps.py).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import pylsl

from rt_recon.config import SecuritySection
from rt_recon.protocol import (
    FAILED_STATES,
    HEARTBEAT_PERIOD_S,
    NodeState,
    Status,
    counters_json,
)
from rt_recon.transport.zmq import Publisher

log = logging.getLogger(__name__)


class Stopped(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised from inside a wait when the node was asked to stop."""


class Sender(Protocol):
    """Where a node sends its messages: ``send(frames)`` of one encoded message."""

    def send_frames(self, frames: list[Any]) -> None: ...


@dataclass
class NodeContext:
    """What a node gets from whoever runs it: where to send, when to stop, its state.

    ``state`` changes are seen by the heartbeat at once (``on_state``).
    """

    publisher: Sender
    stop: threading.Event = field(default_factory=threading.Event)
    on_state: Callable[[NodeState], None] | None = None
    _state: NodeState = "starting"

    @property
    def state(self) -> NodeState:
        return self._state

    @state.setter
    def state(self, value: NodeState) -> None:
        if value != self._state:
            self._state = value
            if self.on_state is not None:
                self.on_state(value)

    def check_stop(self) -> None:
        """Raise :class:`Stopped` when asked to stop (an ``on_wait`` for blocking waits)."""
        if self.stop.is_set():
            raise Stopped


class Node:
    """The contract (see the module docstring); subclasses set the class attributes."""

    name: ClassVar[str] = "node"
    #: The state while it does its job (after open()).
    working_state: ClassVar[NodeState] = "streaming"

    counters: Any

    @property
    def endpoint(self) -> str:
        """The endpoint of the node's publisher (its messages and heartbeats)."""
        raise NotImplementedError

    @property
    def subscribers(self) -> tuple[str, int, float] | None:
        """``(topic, n, timeout_s)``: wait for ``n`` subscribers before open(); None: no wait."""
        return None

    def prepare(self) -> None:
        """Load what the node needs; raise before any socket exists."""

    def open(self, ctx: NodeContext) -> None:
        raise NotImplementedError

    def step(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what open() took; may raise the node's own last word (e.g. a disk error)."""


class Heartbeat:
    """Sends a node's :class:`~rt_recon.protocol.Status` from its own thread.

    At least every ``period`` seconds and at once when the state changes,
    with the node's counters as they are; independent of what the node's
    main thread is doing.
    """

    def __init__(
        self,
        publisher: Publisher,
        node: Node,
        ctx: NodeContext,
        period: float = HEARTBEAT_PERIOD_S,
    ):
        self._publisher = publisher
        self._node = node
        self._ctx = ctx
        self.period = period
        self._started = time.monotonic()
        self._seq = 0
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"{node.name}-heartbeat", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def changed(self, state: NodeState) -> None:
        """The node's state changed: beat now (called by :class:`NodeContext`)."""
        self._wake.set()

    def beat(self) -> None:
        status = Status(
            node=self._node.name,
            pid=os.getpid(),
            state=self._ctx.state,
            seq=self._seq,
            t=pylsl.local_clock(),
            uptime_s=time.monotonic() - self._started,
            counters=counters_json(self._node.counters),
        )
        self._publisher.send_frames(status.encode())
        self._seq += 1

    def stop(self) -> None:
        """Stop the thread (no further beats from it)."""
        self._halt.set()
        self._wake.set()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._halt.is_set():
            try:
                self.beat()
            except Exception:  # a heartbeat must never take the node down silently
                log.exception("%s: heartbeat failed", self._node.name)
            self._wake.wait(self.period)
            self._wake.clear()


#: How long a stopping node's socket keeps its last heartbeat to send (closed at once, the
#: message is dropped, and a node that lived under a second may never be heard at all).
LAST_WORD_LINGER_S = 0.5


def run_node(
    node: Node,
    stop: threading.Event,
    curve: SecuritySection | None = None,
    period: float = HEARTBEAT_PERIOD_S,
) -> Any:
    """Run ``node`` until ``stop`` is set; return its counters.

    Raises what ``prepare``/``open``/``step``/``close`` raise (after cleanup),
    except :class:`Stopped`, which ends the run quietly.
    """
    node.prepare()
    with Publisher(node.endpoint, curve=curve) as publisher:
        ctx = NodeContext(publisher, stop)
        heartbeat = Heartbeat(publisher, node, ctx, period)
        ctx.on_state = heartbeat.changed
        heartbeat.start()
        log.info("%s publishing on %s", node.name, publisher.endpoint)
        try:
            try:
                if node.subscribers is not None:
                    topic, n, timeout = node.subscribers
                    ctx.state = "waiting_for_subscribers"
                    publisher.wait_for_subscribers(n, topic, timeout, on_wait=ctx.check_stop)
                node.open(ctx)
                if ctx.state not in FAILED_STATES:  # open() may find it cannot do its job
                    ctx.state = node.working_state
                while not stop.is_set():
                    node.step()
            finally:
                try:
                    node.close()
                finally:
                    heartbeat.stop()
                    ctx.state = "stopped"
                    heartbeat.beat()  # the last word, from this thread
                    publisher.close(linger_s=LAST_WORD_LINGER_S)  # let it leave first
        except Stopped:
            log.info("%s stopped while waiting", node.name)
    log.info("%s stopped: %s", node.name, node.counters)
    return node.counters
