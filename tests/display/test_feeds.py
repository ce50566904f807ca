"""The console's ZeroMQ feed hands on typed frames and heartbeats and drops (counts, reports)
the messages that break the protocol. Real sockets, the feed's own thread."""

from __future__ import annotations

import queue
import time

import pytest

from rt_recon.display.feeds import ZmqFeed
from rt_recon.protocol import TOPIC_FRAME, TOPIC_STATUS, Frame, Status
from rt_recon.transport.zmq import Publisher
from tests.conftest import free_port
from tests.display._helpers import frame_header, frame_message, pattern, status_header


def _take(inbox: queue.Queue, n: int, timeout: float = 10.0) -> list:
    deadline = time.monotonic() + timeout
    got = []
    while len(got) < n:
        try:
            got.append(inbox.get(timeout=max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            pytest.fail(f"the feed handed on {len(got)} of {n} messages: {got}")
    return got


def test_valid_messages_arrive_typed_and_malformed_ones_are_dropped_counted_and_reported():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    inbox: queue.Queue = queue.Queue()
    feed = ZmqFeed(
        endpoint,
        {"renderer": endpoint},
        on_frame=lambda frame, now: inbox.put(("frame", frame)),
        on_status=lambda status, now: inbox.put(("status", status)),
        on_malformed=lambda kind, reason, now: inbox.put(("malformed", kind, reason)),
    )
    with Publisher(endpoint) as renderer:
        feed.start()
        try:
            renderer.wait_for_subscribers(1, TOPIC_FRAME, timeout=10)
            renderer.wait_for_subscribers(1, TOPIC_STATUS, timeout=10)
            bad_status = {"node": "renderer", "pid": 7, "state": "dancing", "seq": 0, "t": 0.0,
                          "uptime_s": 1.0}  # fmt: skip
            renderer.send(TOPIC_STATUS, bad_status)
            renderer.send_frames(status_header("renderer", "running", 1, rendered=3).encode())
            (dropped, status) = _take(inbox, 2)
            assert dropped[:2] == ("malformed", "status")
            assert "state: Input should be" in dropped[2] and "'dancing'" in dropped[2]
            assert status[0] == "status" and isinstance(status[1], Status)
            assert status[1].counters == {"rendered": 3}

            header = frame_header(4, 100.0).to_json()
            del header["run"]
            renderer.send(TOPIC_FRAME, header, {"image": pattern(4)})
            (dropped,) = _take(inbox, 1)
            assert dropped[:2] == ("malformed", "frame")
            assert "run: Field required (missing)" in dropped[2]
            renderer.send(TOPIC_FRAME, frame_header(5, 101.0).to_json(), {"image": pattern(5)[0]})
            (dropped,) = _take(inbox, 1)
            assert "buffer 'image' must be (H, W, 3) uint8" in dropped[2]
            renderer.send_frames(frame_message(frame_header(6, 102.0), pattern(6)))
            ((kind, frame),) = _take(inbox, 1)
            assert kind == "frame" and isinstance(frame, Frame)
            assert (frame.header.tr, frame.header.run) == (6, "01")
            assert frame.image.shape == (64, 64, 3)
        finally:
            feed.stop()
    assert feed.malformed == {"status": 1, "frame": 2}
