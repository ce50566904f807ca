"""Real ZeroMQ sockets on loopback: subscriptions, framing, latest-only draining."""

import numpy as np
import pytest

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
        # XPUB_VERBOSE: the second subscription to the same topic is seen too
        assert pub.subscribers("frame") == 2
        pub.send("frame", {"seq": 1})
        got = [sub.receive(timeout=2) for sub in (first, second)]
        assert [m.header["seq"] if m else None for m in got] == [1, 1]


def test_wait_for_subscribers_times_out_with_a_clear_error(endpoint):
    with Publisher(endpoint) as pub, pytest.raises(StreamError, match=r"waited 0.2 s for 1"):
        pub.wait_for_subscribers(1, "latents", timeout=0.2)


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
