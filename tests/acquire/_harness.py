"""Run a real bridge in a thread and read its stream through a real LSL inlet."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pylsl

from rt_recon.acquire.bridge import BridgeOptions, BridgeReport, ScannerBridge
from rt_recon.transport.lsl import VolumeInlet
from tests.conftest import unique


class FakeClock:
    """A clock (seconds) that moves only when the test says so: ``advance(s)``.

    Passed as the bridge's ``clock``, it drives the reorder wait without
    sleeping. Read from the bridge's thread, written from the test's: a float
    attribute is read and written whole.
    """

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Return once ``condition()`` is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"expected {what} within {timeout:g} s; it did not"
        time.sleep(0.02)


class RunningBridge:
    """``with RunningBridge(folder, ...) as b:`` starts the bridge; ``b.stop()`` returns its report.

    An error in the bridge's thread is raised again by :meth:`stop`, so it
    never fails silently.
    """

    def __init__(self, folder: Path, clock: Callable[[], float] = pylsl.local_clock, **overrides):
        self.source_id = unique("bridge_src")
        options = {
            "name": unique("bridge"),
            "source_id": self.source_id,
            "consumer_wait": 20.0,
            "give_up": 2.0,
            **overrides,
        }
        self.bridge = ScannerBridge(folder, BridgeOptions(**options), clock=clock)
        self._stop = threading.Event()
        self._result: dict = {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._inlet: VolumeInlet | None = None

    def _run(self) -> None:
        try:
            self._result["report"] = self.bridge.run(self._stop)
        except BaseException as exc:  # re-raised in stop()
            self._result["error"] = exc

    def __enter__(self) -> RunningBridge:
        self._thread.start()
        assert self.bridge.watching.wait(10), "the bridge did not start watching within 10 s"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        if self._inlet is not None:
            self._inlet.close()

    def inlet(self, timeout: float = 30.0) -> VolumeInlet:
        if self._inlet is None:
            self._inlet = VolumeInlet.resolve(self.source_id, timeout)
        return self._inlet

    def collect(self, n: int, timeout: float = 10.0) -> tuple[list[float], list[np.ndarray]]:
        """``n`` volumes (timestamps, values) from the stream; fewer if they stop coming."""
        inlet = self.inlet()
        stamps, values = [], []
        for _ in range(n):
            stamp = inlet.pull(timeout=timeout)
            if stamp is None:
                break
            stamps.append(stamp)
            values.append(inlet.values.copy())
        return stamps, values

    def stop(self) -> BridgeReport:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the bridge did not stop within 30 s"
        if "error" in self._result:
            raise self._result["error"]
        return self._result["report"]
