"""Latents for the node tests: typed headers as the decoder sends them (for the tests that
play the decoder), and what a decoder process publishes (for the tests that watch one)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rt_recon.decode.bundle import DecoderBundle
from rt_recon.protocol import TOPIC_LATENTS, TOPIC_STATUS, LatentsHeader, Times
from rt_recon.transport.zmq import Subscriber
from tests.conftest import NodeProcesses


def latents_header(bundle: DecoderBundle, seq: int = 0, **fields: Any) -> LatentsHeader:
    """The header of latents message ``seq`` for ``bundle``'s model (TR ``seq``, continuous
    mode, acquired at 0 s); ``fields`` replace any of its values."""
    values: dict[str, Any] = {
        "seq": seq,
        "tr": seq,
        "volume_crc32": 0,
        "session": "s",
        "run": "1",
        "model_fingerprint": bundle.model.fingerprint,
        "lag_trs": bundle.window.lag_trs,
        "mode": "continuous",
        "times": Times(acquired=0.0),
    }
    return LatentsHeader(**{**values, **fields})


class DecoderOutput:
    """Collects the decoder's latents headers and every heartbeat, in arrival order."""

    def __init__(self, endpoint: str, running: tuple[str, ...] = ()):
        """``running``: the nodes that must stay up while it waits (all when empty)."""
        self.sub = Subscriber(endpoint, [TOPIC_LATENTS, TOPIC_STATUS])
        self.running = running
        self.headers: list[dict] = []
        self.beats: list[dict] = []

    def drain(self, timeout: float = 0.1) -> None:
        message = self.sub.receive(timeout)
        while message is not None:
            if message.topic == TOPIC_LATENTS:
                self.headers.append(message.header)
            elif message.header.get("node") == "decoder":
                self.beats.append(message.header)
            message = self.sub.receive(0.0)

    @property
    def status(self) -> dict:
        """The newest heartbeat."""
        return self.beats[-1] if self.beats else {}

    def run(self, label: str) -> list[dict]:
        """Latents headers of run ``label``."""
        return [h for h in self.headers if h["run"] == label]

    def wait_for(
        self,
        done: Callable[[], bool],
        what: str,
        processes: NodeProcesses,
        timeout: float = 120.0,
    ) -> None:
        """Collect until ``done()``; fail naming ``what`` after ``timeout`` s, or at once if a
        node that must stay up exited."""
        deadline = time.monotonic() + timeout
        while not done():
            processes.assert_running(*self.running)
            assert time.monotonic() < deadline, (
                f"timed out waiting for {what}; latents of runs "
                f"{sorted({(h['run'], h['tr']) for h in self.headers})}; last heartbeat "
                f"{self.status}"
            )
            self.drain()

    def close(self) -> None:
        self.sub.close()
