"""A node run by the real runner in a thread of the test process (real sockets, no process)."""

from __future__ import annotations

import threading

from rt_recon.nodes.runner import Node, run_node


class NodeThread:
    """``run_node(node)`` in a thread; ``stop()`` sets its stop event and joins it."""

    def __init__(self, node: Node):
        self.node = node
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            run_node(self.node, self.stop_event)
        except BaseException as exc:  # re-raised in the test by stop()
            self.error = exc

    def __enter__(self) -> NodeThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.stop_event.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), f"{self.node.name} did not stop"
        if self.error is not None:
            raise self.error
