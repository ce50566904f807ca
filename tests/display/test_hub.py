"""Latest-only delivery to pages and the binary picture message, without sockets; what the
hub sends fits the typed page messages (rt_recon/display/messages.py)."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from rt_recon.config import BUDGET_PRESETS_MS
from rt_recon.display.frames import decode_frame, encode_frame
from rt_recon.display.hub import ACK_TIMEOUT_S, HISTORY, Client, Hub, waiting_message
from rt_recon.display.messages import (
    ConsolePicture,
    ConsoleStateMessage,
    ParticipantPicture,
    WaitingMessage,
)
from rt_recon.display.state import ConsoleState
from rt_recon.errors import ProtocolError
from rt_recon.protocol import AWAY_AFTER_S, Marker, Times, TrialRef
from tests.display._helpers import frame_header, pattern, status_header


def _hub(picture_ids=None) -> Hub:
    return Hub(ConsoleState(BUDGET_PRESETS_MS["cpu"]), picture_ids=picture_ids)


def _meta(tr: int, size: int) -> ParticipantPicture:
    return ParticipantPicture(
        tr=tr, seq=tr + 2, width=size, height=size, times=Times(acquired=1.5), crossfade_ms=0.0,
        confidence=None, fade_below=None,
    )  # fmt: skip


def test_frame_message_round_trips_meta_and_pixels():
    image = pattern(3, size=48)
    meta, pixels = decode_frame(encode_frame(_meta(7, 48), image))
    assert meta == {
        "tr": 7, "seq": 9, "width": 48, "height": 48, "times": {"acquired": 1.5},
        "crossfade_ms": 0.0, "confidence": None, "fade_below": None,
    }  # fmt: skip
    np.testing.assert_array_equal(pixels, image)


def test_frame_message_refuses_what_is_not_an_rgb_picture_or_not_the_one_described():
    with pytest.raises(ProtocolError, match=r"\(H, W, 3\) uint8 RGB, found \(4, 4\) float32"):
        encode_frame(_meta(0, 4), np.zeros((4, 4), np.float32))
    with pytest.raises(ProtocolError, match="meta says 8x8, the picture is 16x8"):
        encode_frame(_meta(0, 8), np.zeros((8, 16, 3), np.uint8))
    payload = encode_frame(_meta(1, 8), pattern(1, size=8))
    with pytest.raises(ProtocolError, match="needs 192 bytes, found 191"):
        decode_frame(payload[:-1])
    with pytest.raises(ProtocolError, match="needs integer width and height"):
        decode_frame(b"\x02\x00\x00\x00{}")


def test_a_page_that_has_not_acked_gets_only_the_newest_picture_afterwards():
    hub = _hub()
    page = Client("participant")
    hub.clients.add(page)
    hub.on_frame(frame_header(0, 100.0), pattern(0), now=0.0)
    first = hub.next_message(page, now=0.0)
    assert decode_frame(first)[0]["seq"] == 0
    for tr in range(1, 10):  # arrive while the page is still drawing picture 0
        hub.on_frame(frame_header(tr, 100.0 + tr), pattern(tr), now=0.1 * tr)
        assert hub.next_message(page, now=0.1 * tr) is None
    page.ack()
    header, pixels = decode_frame(hub.next_message(page, now=1.0))
    assert header["seq"] == 9
    np.testing.assert_array_equal(pixels, pattern(9))
    page.ack()
    assert hub.next_message(page, now=1.1) is None  # nothing newer: nothing sent twice
    assert page.pictures_sent == 2


def test_a_page_that_never_acks_is_sent_the_next_picture_after_the_timeout():
    hub = _hub()
    page = Client("participant")
    hub.clients.add(page)
    hub.on_frame(frame_header(0, 100.0), pattern(0), now=0.0)
    assert hub.next_message(page, now=0.0) is not None
    hub.on_frame(frame_header(1, 101.0), pattern(1), now=0.5)
    hub.tick(0.5)
    assert hub.next_message(page, now=0.5) is None
    hub.tick(ACK_TIMEOUT_S + 0.1)
    assert decode_frame(hub.next_message(page, now=ACK_TIMEOUT_S + 0.1))[0]["seq"] == 1


def _pictures_until_idle(hub: Hub, page: Client, now: float) -> list[int]:
    """The TRs of the pictures ``page`` is sent, acking each, until nothing more is due."""
    trs = []
    while (message := hub.next_message(page, now)) is not None:
        assert isinstance(message, bytes), "no state was due: the hub was not ticked"
        trs.append(decode_frame(message)[0]["tr"])
        page.ack()
    return trs


def test_a_console_page_that_connects_gets_the_last_pictures_oldest_first_then_the_live_ones():
    assert HISTORY == 8  # the page's strip (STRIP_LENGTH in console.js)
    hub = _hub()
    for tr in range(12):
        hub.on_frame(frame_header(tr, 100.0 + tr), pattern(tr), now=float(tr))
    page = hub.connect("console")  # a reloaded console page
    first = hub.next_message(page, now=12.0)
    assert decode_frame(first)[0]["tr"] == 4
    assert hub.next_message(page, now=12.0) is None  # one at a time: it has not acked
    page.ack()
    assert _pictures_until_idle(hub, page, now=12.0) == [5, 6, 7, 8, 9, 10, 11]  # 11 once
    meta, pixels = decode_frame(hub.history[-1])
    assert ConsolePicture.model_validate(meta).to_json() == meta
    np.testing.assert_array_equal(pixels, pattern(11))
    hub.on_frame(frame_header(12, 112.0), pattern(12), now=13.0)
    assert _pictures_until_idle(hub, page, now=13.0) == [12]  # then the live ones


def test_a_newer_picture_arriving_while_the_history_is_sent_comes_after_it():
    hub = _hub()
    for tr in range(3):
        hub.on_frame(frame_header(tr, 100.0 + tr), pattern(tr), now=float(tr))
    page = hub.connect("console")
    assert decode_frame(hub.next_message(page, now=3.0))[0]["tr"] == 0
    hub.on_frame(frame_header(3, 103.0), pattern(3), now=3.1)
    page.ack()
    assert _pictures_until_idle(hub, page, now=3.2) == [1, 2, 3]


def test_a_participant_page_that_connects_gets_only_the_newest_picture():
    hub = _hub()
    for tr in range(5):
        hub.on_frame(frame_header(tr, 100.0 + tr), pattern(tr), now=float(tr))
    page = hub.connect("participant")
    assert _pictures_until_idle(hub, page, now=5.0) == [4]
    assert _pictures_until_idle(hub, hub.connect("console"), now=5.0) == [0, 1, 2, 3, 4]


def test_the_console_state_goes_first_to_a_page_that_connects():
    hub = _hub()
    hub.on_frame(frame_header(0, 100.0), pattern(0), now=0.0)
    hub.tick(0.5)
    page = hub.connect("console")
    assert json.loads(hub.next_message(page, now=0.5))["type"] == "state"
    assert _pictures_until_idle(hub, page, now=0.5) == [0]


def test_participants_go_back_to_waiting_when_the_renderer_is_away_the_console_keeps_its_picture():
    hub = _hub()
    participant, console = Client("participant"), Client("console")
    hub.clients.update({participant, console})
    hub.on_status(status_header("renderer", "running", 0), now=0.0)
    hub.on_frame(frame_header(0, 100.0), pattern(0), now=0.0)
    assert decode_frame(hub.next_message(participant, now=0.0))[0]["tr"] == 0
    assert decode_frame(hub.next_message(console, now=0.0))[0]["tr"] == 0
    participant.ack()
    console.ack()
    hub.tick(AWAY_AFTER_S - 0.5)
    assert hub.next_message(participant, now=AWAY_AFTER_S - 0.5) is None
    hub.tick(AWAY_AFTER_S + 0.5)
    assert hub.next_message(participant, now=AWAY_AFTER_S + 0.5) == waiting_message("away")
    state = json.loads(hub.next_message(console, now=AWAY_AFTER_S + 0.5))
    assert state["type"] == "state"
    assert {n["name"]: n["level"] for n in state["nodes"]}["renderer"] == "away"
    assert hub.next_message(console, now=AWAY_AFTER_S + 0.5) is None  # its picture stays up
    late = Client("participant")  # a page opened now waits too: no stale picture
    hub.clients.add(late)
    assert hub.next_message(late, now=AWAY_AFTER_S + 0.6) == waiting_message("away")


def test_a_stopped_renderer_sends_participants_to_waiting_at_once():
    hub = _hub()
    participant = Client("participant")
    hub.clients.add(participant)
    hub.on_frame(frame_header(0, 100.0), pattern(0), now=0.0)
    hub.next_message(participant, now=0.0)
    hub.on_status(status_header("renderer", "stopped", 1), now=0.2)
    assert hub.next_message(participant, now=0.2) == waiting_message("stopped")


def test_a_renderer_whose_socket_closed_is_reconnecting_and_its_restart_is_counted():
    hub = _hub()
    participant = Client("participant")
    hub.clients.add(participant)
    hub.on_link("renderer", True, now=0.0)
    hub.on_status(status_header("renderer", "running", 0, pid=100), now=0.0)
    hub.on_frame(frame_header(0, 100.0), pattern(0), now=0.0)
    hub.next_message(participant, now=0.0)
    participant.ack()
    # killed: the connection drops long before three heartbeats are missed
    hub.on_link("renderer", False, now=0.5)
    assert hub.state.node_level("renderer", 0.5) == "reconnecting"
    assert hub.next_message(participant, now=0.5) == waiting_message("reconnecting")
    hub.tick(AWAY_AFTER_S + 1.0)  # still reconnecting, not merely away: nothing new to say
    assert hub.next_message(participant, now=AWAY_AFTER_S + 1.0) is None
    snapshot = hub.snapshot(AWAY_AFTER_S + 1.0)
    assert {w["kind"] for w in snapshot["warnings"]} >= {"reconnecting"}
    # the supervisor's new renderer connects and speaks with a new pid
    hub.on_link("renderer", True, now=5.0)
    hub.on_status(status_header("renderer", "running", 0, pid=200), now=5.1)
    renderer = {n["name"]: n for n in hub.snapshot(5.1)["nodes"]}["renderer"]
    assert (renderer["level"], renderer["pid"], renderer["restarts"]) == ("ok", 200, 1)
    hub.on_frame(frame_header(9, 100.0), pattern(9), now=5.2)
    assert decode_frame(hub.next_message(participant, now=5.2))[0]["tr"] == 9


def test_a_renderer_silent_on_an_open_socket_is_away_then_reconnecting_once_it_closes():
    hub = _hub()
    participant = Client("participant")
    hub.clients.add(participant)
    hub.on_status(status_header("renderer", "running", 0), now=0.0)
    hub.on_frame(frame_header(0, 100.0), pattern(0), now=0.0)
    hub.next_message(participant, now=0.0)
    hub.tick(AWAY_AFTER_S + 0.5)  # hung, socket up
    assert hub.next_message(participant, now=AWAY_AFTER_S + 0.5) == waiting_message("away")
    hub.on_link("renderer", False, now=AWAY_AFTER_S + 1.0)  # then the process goes
    later = AWAY_AFTER_S + 1.0
    assert hub.next_message(participant, now=later) == waiting_message("reconnecting")


def test_console_pictures_carry_the_paired_stimulus_and_its_picture_url():
    hub = _hub(picture_ids={100})
    console, participant = Client("console"), Client("participant")
    hub.clients.update({console, participant})
    t0 = 100.0
    hub.on_marker(Marker.from_json({"type": "run_start", "run": "01", "tr": 1.5, "speed": 4}), t0)
    hub.on_marker(
        Marker.from_json({"type": "event", "run": "01", "onset": 9.0, "duration": 3.0,
                          "stimulus_id": 100, "caption": "a red square"}),
        t0 + 9.0 / 4,
    )  # fmt: skip
    hub.on_marker(Marker.from_json({"run": "01", "onset": 15.0, "stimulus_id": 101}), t0 + 15 / 4)
    metas, shown = [], []
    for tr in range(14):  # onset TRs 6 and 10, lag 3
        trial = TrialRef(index=0, stimulus_id=100, onset_tr=6, complete=tr >= 9)
        header = frame_header(tr, t0 + tr * 0.375, mode="trial", trial=trial if tr > 5 else None)
        hub.on_frame(header, pattern(tr), now=float(tr))
        metas.append(decode_frame(hub.next_message(console, now=float(tr)))[0])
        shown.append(decode_frame(hub.next_message(participant, now=float(tr)))[0])
        console.ack()
        participant.ack()
    assert metas[9]["truth"] == {
        "stimulus_id": 100, "caption": "a red square", "onset_tr": 6, "scored": True,
        "picture": "/stimuli/100.png",
    }  # fmt: skip
    assert metas[9]["trial"] == {"index": 0, "stimulus_id": 100, "onset_tr": 6, "complete": True}
    assert metas[9]["lag_trs"] == 3
    assert metas[13]["truth"]["stimulus_id"] == 101
    assert metas[13]["truth"]["picture"] is None  # not in the dataset
    assert metas[11]["truth"] is None and metas[5]["trial"] is None
    assert hub.snapshot(14.0)["pairs"][-1]["truth"]["picture"] is None
    # every message is one of the typed page messages, as sent (nothing more, nothing less)
    for meta in metas:
        assert ConsolePicture.model_validate(meta).to_json() == meta
    for meta in shown:
        assert ParticipantPicture.model_validate(meta).to_json() == meta
    snapshot = hub.snapshot(14.0)
    assert snapshot["pictures"] is True
    assert ConsoleStateMessage.model_validate(snapshot).to_json() == snapshot
    waiting = json.loads(waiting_message("away"))
    assert WaitingMessage.model_validate(waiting).to_json() == waiting


async def _pump_idle(client: Client, timeout: float = 1.0) -> None:
    """Return once the pump has done all it will do with what it was woken for.

    The pump clears ``client.wake`` when it takes it up and then, with a
    ``send`` that does not suspend, runs on to its next wait without yielding:
    a cleared wake seen from here means it is parked again.
    """

    async def cleared() -> None:
        while client.wake.is_set():
            await asyncio.sleep(0)

    await asyncio.wait_for(cleared(), timeout)


def test_pump_sends_what_is_due_and_waits_for_more():
    async def scenario() -> list[list[int]]:
        hub = _hub()
        page = Client("participant")
        hub.clients.add(page)
        sent: list = []
        seen: list[list[int]] = []

        async def send(message) -> None:
            sent.append(message)

        def seqs() -> list[int]:
            return [decode_frame(m)[0]["seq"] for m in sent]

        pump = asyncio.create_task(hub.pump(page, send, clock=lambda: 0.0))
        hub.on_frame(frame_header(0, 100.0), pattern(0), now=0.0)
        await _pump_idle(page)
        seen.append(seqs())
        hub.on_frame(frame_header(1, 101.0), pattern(1), now=0.0)
        hub.on_frame(frame_header(2, 102.0), pattern(2), now=0.0)
        await _pump_idle(page)
        seen.append(seqs())  # woken, but picture 0 is not acked: nothing sent
        page.ack()
        await _pump_idle(page)
        seen.append(seqs())
        hub.close()
        await asyncio.wait_for(pump, timeout=1.0)
        return seen

    # its own thread: Playwright's sync API may hold an event loop in this one
    with ThreadPoolExecutor(max_workers=1) as pool:
        seen = pool.submit(asyncio.run, scenario()).result(timeout=10)
    assert seen == [[0], [0], [0, 2]]


def test_interpolated_frames_reach_participant_pages_only_with_the_crossfade():
    """A frame rendered between two TRs' own (renderer.interpolate_fps) is shown to the
    participant, crossfaded like every picture; the console's TRs and strip are untouched."""
    hub = Hub(ConsoleState(BUDGET_PRESETS_MS["cpu"]), crossfade_ms=400.0)
    console, participant = Client("console"), Client("participant")
    hub.clients.update({console, participant})
    hub.on_frame(frame_header(0, 100.0), pattern(0), now=0.0)
    for page in (console, participant):
        assert decode_frame(hub.next_message(page, now=0.0))[0]["tr"] == 0
        page.ack()
    between = frame_header(1, 101.0, interpolated={"from_tr": 0, "t": 0.5})
    hub.on_frame(between, pattern(7), now=1.0)
    meta, pixels = decode_frame(hub.next_message(participant, now=1.0))
    assert (meta["tr"], meta["crossfade_ms"]) == (1, 400.0)
    np.testing.assert_array_equal(pixels, pattern(7))
    assert hub.next_message(console, now=1.0) is None  # no picture for the console
    assert [f.tr for f in hub.state.frames] == [0] and len(hub.history) == 1
    participant.ack()
    hub.on_frame(frame_header(1, 101.0), pattern(1), now=1.5)  # TR 1's own frame
    assert decode_frame(hub.next_message(console, now=1.5))[0]["tr"] == 1
    assert decode_frame(hub.next_message(participant, now=1.5))[0]["tr"] == 1
    assert [f.tr for f in hub.state.frames] == [0, 1]
