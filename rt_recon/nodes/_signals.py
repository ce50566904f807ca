"""Turn SIGTERM and SIGINT into a stop event, so node loops end cleanly."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable


class Stopped(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised from inside a wait when the node was asked to stop."""


def waiting(stop: threading.Event, beat: Callable[[], object]) -> Callable[[], None]:
    """An ``on_wait`` callback for blocking waits: heartbeat, or raise Stopped when asked."""

    def on_wait() -> None:
        if stop.is_set():
            raise Stopped
        beat()

    return on_wait


def stop_on_signals() -> threading.Event:
    """An event set by the first SIGTERM or SIGINT (call from the main thread)."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop
