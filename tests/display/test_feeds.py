"""The console's feeds: the ZeroMQ feed hands on typed frames and heartbeats and drops (counts,
reports) the messages that break the protocol; the volume-source feed finds and describes the
volume stream without opening it; the marker feed says whether it has the marker stream. Real
ZeroMQ sockets and real liblsl on loopback, each feed on its own thread."""

from __future__ import annotations

import queue
import socket
import time

import numpy as np
import pylsl
import pytest

from rt_recon.display.feeds import MarkerFeed, VolumeSourceFeed, ZmqFeed
from rt_recon.display.sources import VolumeSourceReport
from rt_recon.protocol import TOPIC_FRAME, TOPIC_STATUS, Frame, Status, VolumeStreamMeta
from rt_recon.transport.lsl import MarkerOutlet, VolumeOutlet
from rt_recon.transport.zmq import Publisher
from tests.conftest import free_port, unique
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


def _reports(inbox: queue.Queue, done, timeout: float = 15.0) -> VolumeSourceReport:
    """The first report from the volume-source feed for which ``done(report)``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            report, _ = inbox.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"no such report within {timeout} s")
        if done(report):
            return report


def test_the_volume_source_feed_describes_the_stream_without_opening_it_and_sees_it_go():
    source_id = unique("vol_src")
    meta = VolumeStreamMeta(
        shape=(4, 5, 3), affine=np.diag([3.0, 3.0, 3.5, 1.0]), tr_s=2.0, session="s",
        run="8", series="8", series_description="func_run2",
    )  # fmt: skip
    inbox: queue.Queue = queue.Queue()
    feed = VolumeSourceFeed(
        source_id, lambda report, now: inbox.put((report, now)), every_s=0.2, timeout_s=0.5
    )
    feed.start()
    try:
        absent = _reports(inbox, lambda r: True)
        assert absent == VolumeSourceReport(source_id, present=False)
        with VolumeOutlet(meta, unique("vol"), source_id) as outlet:
            found = _reports(inbox, lambda r: r.present)
            assert found.meta is not None and found.error is None
            assert (found.meta.run, found.meta.series, found.meta.series_description) == (
                "8", "8", "func_run2",
            )  # fmt: skip
            assert found.meta.shape == (4, 5, 3) and found.meta.tr_s == 2.0
            np.testing.assert_array_equal(found.meta.affine, meta.affine)
            assert found.host == socket.gethostname() and found.name.startswith("vol_")
            for _ in range(3):  # looked at again and again, never opened: no consumer
                again = _reports(inbox, lambda r: True)
                assert again.present and again.uid == found.uid and again.meta == found.meta
            assert not outlet.wait_for_consumers(0.2)
        gone = _reports(inbox, lambda r: not r.present)
        assert gone == VolumeSourceReport(source_id, present=False)
    finally:
        feed.stop()


def test_a_stream_under_the_source_id_that_is_no_volume_stream_is_reported_with_why():
    source_id = unique("vol_src")
    inbox: queue.Queue = queue.Queue()
    feed = VolumeSourceFeed(
        source_id, lambda report, now: inbox.put((report, now)), every_s=0.2, timeout_s=0.5
    )
    info = pylsl.StreamInfo(unique("vol"), "fMRI", 8, 0.5, "float32", source_id)  # no desc
    outlet = pylsl.StreamOutlet(info)
    feed.start()
    try:
        report = _reports(inbox, lambda r: r.present)
        assert report.meta is None
        assert "has no desc/rt_recon element" in report.error
    finally:
        feed.stop()
        del outlet


def test_the_marker_feed_says_whether_it_has_the_marker_stream():
    source_id = unique("mrk_src")
    inbox: queue.Queue = queue.Queue()
    feed = MarkerFeed(
        source_id,
        on_marker=lambda marker, stamp: inbox.put(("marker", marker)),
        on_inlet=lambda present, now: inbox.put(("inlet", present)),
    )
    feed.start()
    try:
        assert _take(inbox, 1) == [("inlet", False)]  # looked, not there: told once
        outlet = MarkerOutlet(unique("mrk"), source_id)
        assert _take(inbox, 1) == [("inlet", True)]
        assert feed.present
        assert outlet.wait_for_consumers(10)
        outlet.push({"stimulus_id": 4}, pylsl.local_clock())
        ((kind, marker),) = _take(inbox, 1)
        assert kind == "marker" and marker.stimulus_id == 4
        outlet.close()  # the presenter stopped: the console must not keep saying it is there
        assert _take(inbox, 1) == [("inlet", False)]
        assert not feed.present
        again = MarkerOutlet(unique("mrk"), source_id)  # the presenter restarted
        assert _take(inbox, 1) == [("inlet", True)]
        assert again.wait_for_consumers(10)
        again.push({"stimulus_id": 5}, pylsl.local_clock())
        ((kind, marker),) = _take(inbox, 1)
        assert kind == "marker" and marker.stimulus_id == 5
    finally:
        feed.stop()
