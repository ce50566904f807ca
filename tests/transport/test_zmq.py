"""Real ZeroMQ sockets on loopback: subscriptions, framing, latest-only draining."""

import os
import time

import numpy as np
import pytest
import zmq

from rt_recon.errors import StreamError
from rt_recon.transport.zmq import Publisher, Subscriber
from tests.conftest import free_port, unique


@pytest.fixture
def endpoint():
    return f"tcp://127.0.0.1:{free_port()}"


def test_publisher_waits_for_subscribers_then_every_message_arrives(endpoint):
    with Publisher(endpoint) as pub, Subscriber(endpoint, ["latents"]) as sub:
        pub.wait_for_subscribers(1, "latents", timeout=5)
        assert pub.subscribers("latents") == 1
        for seq in range(20):
            pub.send("latents", {"seq": seq}, {"z": np.full((2, 3), seq, np.float32)})
        got = [sub.receive(timeout=2) for _ in range(20)]
        assert [m.header["seq"] for m in got] == list(range(20))
        assert all(np.all(m.arrays["z"] == m.header["seq"]) for m in got)


def test_two_subscribers_are_both_counted_and_both_get_every_message(endpoint):
    with (
        Publisher(endpoint) as pub,
        Subscriber(endpoint, ["frame"]) as first,
        Subscriber(endpoint, ["frame"]) as second,
    ):
        pub.wait_for_subscribers(2, "frame", timeout=5)
        # XPUB_VERBOSER: the second subscription to the same topic is seen too
        assert pub.subscribers("frame") == 2
        assert pub.peers("frame") == sorted([first.peer, second.peer])
        pub.send("frame", {"seq": 1})
        got = [sub.receive(timeout=2) for sub in (first, second)]
        assert [m.header["seq"] if m else None for m in got] == [1, 1]


def test_wait_for_subscribers_times_out_with_a_clear_error(endpoint):
    with Publisher(endpoint) as pub, pytest.raises(StreamError, match=r"waited 0.2 s for 1"):
        pub.wait_for_subscribers(1, "latents", timeout=0.2)


def _settled(pub: Publisher, topic: str, expected: int, timeout: float = 5.0) -> int:
    """``pub.subscribers(topic)`` once it is ``expected`` (or after ``timeout`` s, whatever
    it is then): subscriptions and unsubscriptions arrive asynchronously."""
    deadline = time.monotonic() + timeout
    while (count := pub.subscribers(topic)) != expected and time.monotonic() < deadline:
        pub.socket.poll(50, zmq.POLLIN)
    return count


def test_subscribers_are_peers_not_subscriptions(endpoint):
    """Issue #15 item 7: a process subscribed to several topics (the recorder: latents and
    status), to one topic twice, or to everything beside a topic, is one subscriber of each;
    a subscriber of another topic is none."""
    with (
        Publisher(endpoint) as pub,
        Subscriber(endpoint, ["latents", "status"], name="recorder") as recorder,
        Subscriber(endpoint, ["latents", "latents", ""], name="greedy") as greedy,
        Subscriber(endpoint, ["status"], name="watcher"),
    ):
        pub.wait_for_subscribers(2, "latents", timeout=5)
        assert _settled(pub, "status", 3) == 3  # the greedy one takes status too, through ""
        assert pub.subscribers("latents") == 2
        assert pub.peers("latents") == sorted([recorder.peer, greedy.peer])
        assert recorder.peer.startswith(f"recorder/{os.getpid()}/")
        assert pub.subscribers("frame") == 1  # the greedy one, through ""
        with pytest.raises(StreamError, match=r"for 3 subscriber\(s\) to 'latents', found 2 "):
            pub.wait_for_subscribers(3, "latents", timeout=0.2)


def test_a_subscriber_that_leaves_is_no_longer_counted(endpoint):
    with Publisher(endpoint) as pub, Subscriber(endpoint, ["latents"]) as stays:
        leaves = Subscriber(endpoint, ["latents", "status"])
        pub.wait_for_subscribers(2, "latents", timeout=5)
        leaves.close()
        assert _settled(pub, "latents", 1) == 1
        assert _settled(pub, "status", 0) == 0
        assert pub.peers("latents") == [stays.peer]


def test_a_plain_subscription_without_an_announcement_counts_as_one_subscriber(endpoint):
    """Another language's SUB socket, following docs/protocol.md without announcing itself."""
    context = zmq.Context.instance()
    plain = context.socket(zmq.SUB)
    plain.setsockopt(zmq.LINGER, 0)
    plain.setsockopt(zmq.SUBSCRIBE, b"latents")
    try:
        with Publisher(endpoint) as pub, Subscriber(endpoint, ["latents"]) as announced:
            plain.connect(endpoint)
            pub.wait_for_subscribers(2, "latents", timeout=5)
            assert pub.subscribers("latents") == 2
            assert pub.peers("latents") == [announced.peer]
            pub.send("latents", {"seq": 7})
            assert plain.poll(2000), "the plain subscriber got nothing"
            topic, *_ = plain.recv_multipart()
            assert topic == b"latents"
    finally:
        plain.close()


def test_the_announcement_matches_no_message(endpoint):
    """A subscriber of status only (its announcement ``status\\0<peer>``) gets no latents."""
    with Publisher(endpoint) as pub, Subscriber(endpoint, ["status"]) as sub:
        pub.wait_for_subscribers(1, "status", timeout=5)
        pub.send("latents", {"seq": 1})
        pub.send("status", {"seq": 2})
        message = sub.receive(timeout=2)
        assert message is not None and message.topic == "status"
        assert sub.receive(timeout=0.2) is None


def test_a_subscriber_name_must_be_printable_ascii_without_a_slash(endpoint):
    with pytest.raises(ValueError, match="printable ASCII without '/', found 'a/b'"):
        Subscriber(endpoint, ["latents"], name="a/b")


def test_receive_latest_drains_keeps_newest_and_counts_skipped():
    # inproc, not tcp: a SUB socket's queue cannot be looked at without reading it,
    # so over tcp "all ten have arrived" could only be hoped for after a sleep;
    # over inproc a message is in the subscriber's queue once send() returns.
    endpoint = f"inproc://{unique('latest')}"
    with Publisher(endpoint) as pub, Subscriber(endpoint, ["latents"]) as sub:
        pub.wait_for_subscribers(1, "latents", timeout=5)
        for seq in range(10):
            pub.send("latents", {"seq": seq})
        got = sub.receive_latest(timeout=1)
        assert got.message is not None and got.message.header["seq"] == 9
        assert got.skipped == 9 and sub.skipped == 9
        assert sub.receive_latest(timeout=0.05).message is None


def test_malformed_messages_are_counted_and_dropped(endpoint):
    with Publisher(endpoint) as pub, Subscriber(endpoint, ["latents"]) as sub:
        pub.wait_for_subscribers(1, "latents", timeout=5)
        pub.send_frames([b"latents", b"not json"])
        pub.send_frames([b"latents", b'{"protocol":"rt_recon","version":1,"buffers":[]}', b"extra"])
        pub.send("latents", {"seq": 5})
        message = sub.receive(timeout=2)
        assert message is not None and message.header["seq"] == 5
        assert sub.malformed == 2


def test_bind_conflict_is_a_stream_error(endpoint):
    with Publisher(endpoint), pytest.raises(StreamError, match=f"cannot bind {endpoint}"):
        Publisher(endpoint)


def test_receive_latest_keeps_the_older_messages_it_is_told_to_keep():
    endpoint = f"inproc://{unique('keep')}"
    with Publisher(endpoint) as pub, Subscriber(endpoint, ["latents"]) as sub:
        pub.wait_for_subscribers(1, "latents", timeout=5)
        for seq in range(6):
            pub.send("latents", {"seq": seq})
        got = sub.receive_latest(timeout=1, keep=lambda m: m.header["seq"] in (2, 4, 5))
        assert got.message is not None and got.message.header["seq"] == 5  # the newest
        assert [m.header["seq"] for m in got.kept] == [2, 4]  # in order, the newest not twice
        assert got.skipped == 3 and sub.skipped == 3
