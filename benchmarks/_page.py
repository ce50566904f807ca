"""Helpers of the benchmarks that drive a page in headless Chromium: a free loopback port
for the console, and a wait on a JavaScript expression."""

from __future__ import annotations

import socket
import time


def free_port() -> int:
    """A loopback TCP port nothing is bound to now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_js(page, expression: str, timeout_s: float = 10.0, poll_s: float = 0.002) -> None:
    """Poll a JavaScript expression until truthy (the page's CSP forbids eval-based waits)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise RuntimeError(f"waited {timeout_s} s for {expression}")
        time.sleep(poll_s)
