"""ReadyWatcher on real ZeroMQ sockets: a source waits for heartbeats that show each awaited
node's inlet open on its stream, and, given the outlet's LSL uid, on that very outlet."""

from __future__ import annotations

import time

import pytest

from rt_recon.nodes.ready import ReadyWatcher
from rt_recon.protocol import DecoderCounters, RecorderCounters, Status, counters_json
from rt_recon.transport.zmq import Publisher
from tests.conftest import free_port

SOURCE = "vol_src"


def _beat(publisher: Publisher, node: str, state: str, **counters) -> None:
    kind = DecoderCounters if node == "decoder" else RecorderCounters
    status = Status(
        node=node, pid=1, state=state, seq=0, t=0.0, uptime_s=0.0,
        counters=counters_json(kind(source_id=SOURCE, **counters)),
    )  # fmt: skip
    publisher.send_frames(status.encode())


def _until(watcher: ReadyWatcher, beats, timeout: float = 10.0) -> bool:
    """Send ``beats()`` every 0.1 s (the subscriptions take a moment to join) until the
    watcher is ready or ``timeout`` s pass; whether it became ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        beats()
        if watcher():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def publishers():
    decoder = Publisher(f"tcp://127.0.0.1:{free_port()}")
    recorder = Publisher(f"tcp://127.0.0.1:{free_port()}")
    yield decoder, recorder
    decoder.close()
    recorder.close()


def test_a_node_on_the_previous_outlet_is_not_ready_for_the_new_one(publishers):
    decoder, recorder = publishers
    watcher = ReadyWatcher(
        {"decoder": decoder.endpoint, "recorder": recorder.endpoint}, SOURCE, stream_uid="new"
    )
    try:

        def on_old_outlet() -> None:
            _beat(decoder, "decoder", "streaming", stream_uid="old", run="7")
            _beat(recorder, "recorder", "streaming", stream_uid="new", run="8")

        assert not _until(watcher, on_old_outlet, timeout=2.0)
        assert watcher.missing() == ["decoder"]  # the recorder is on the new outlet

        def waiting() -> None:
            _beat(decoder, "decoder", "waiting_for_stream", stream_uid="new")

        assert not _until(watcher, waiting, timeout=1.0)  # its inlet is not open

        def refusing() -> None:  # a refused run's inlet is open: it gets every volume
            _beat(decoder, "decoder", "refused", stream_uid="new", run="8")

        assert _until(watcher, refusing)
        assert watcher.missing() == []
    finally:
        watcher.close()


def test_without_a_uid_any_outlet_of_the_source_will_do(publishers):
    decoder, _ = publishers
    watcher = ReadyWatcher([decoder.endpoint], SOURCE)
    try:
        assert _until(watcher, lambda: _beat(decoder, "decoder", "streaming", stream_uid="x"))
    finally:
        watcher.close()
