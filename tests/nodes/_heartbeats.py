"""Waiting for a node's heartbeat that says what a test waits for."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rt_recon.protocol import TOPIC_STATUS
from rt_recon.transport.zmq import Subscriber


def wait_for_heartbeat(
    endpoint: str,
    done: Callable[[dict[str, Any]], bool] = lambda beat: True,
    what: str = "",
    timeout: float = 30.0,
) -> dict[str, Any]:
    """The first heartbeat header from ``endpoint`` that ``done`` accepts (any, by default);
    fails, saying ``what`` was waited for, after ``timeout`` s without one."""
    with Subscriber(endpoint, [TOPIC_STATUS]) as status:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = status.receive(timeout=min(left, 1.0))
            if message is not None and done(message.header):
                return message.header
    raise AssertionError(f"no heartbeat from {endpoint} {what} within {timeout:g} s")
