"""The renderer is killed mid-session under ``rt-recon run``: the decoder and the recorder go on
untouched, the supervisor restarts the renderer, the console shows it reconnecting (its socket
closed with the process; the participant display waits and says so) and then healthy again as a
new process, and pictures of later TRs come back.

Real processes (``rt-recon run`` with renderer, decoder and recorder, and a looping replay),
real ZeroMQ, and the console's own feed, state and hub (rt_recon/display) driven from here.
(tests/apps/test_session.py proves the restart itself, on new heartbeats.)
"""

from __future__ import annotations

import json
import os
import queue
import signal
import time

import psutil
import pytest

from rt_recon.config import BUDGET_PRESETS_MS
from rt_recon.display.feeds import ZmqFeed
from rt_recon.display.frames import decode_frame
from rt_recon.display.hub import Client, Hub, is_waiting
from rt_recon.display.state import ConsoleState
from rt_recon.nodes.supervisor import Child
from rt_recon.record.recording import RecordingReader
from tests.conftest import free_port

pytestmark = pytest.mark.slow

OUTAGE_TRS = 8  # at least this many TRs (1 s at 8x) decoded and recorded while no renderer runs


class _Console:
    """A console without a web server: ZmqFeed -> ConsoleState + Hub, one participant page."""

    def __init__(self, config):
        self.inbox: queue.Queue = queue.Queue()
        self.feed = ZmqFeed(
            config.renderer.frames_endpoint,
            {
                "decoder": config.decoder.latents_endpoint,
                "renderer": config.renderer.frames_endpoint,
                "recorder": config.recorder.status_endpoint,
            },
            on_frame=lambda message, now: self.inbox.put(("frame", message, now)),
            on_status=lambda header, now: self.inbox.put(("status", header, now)),
            on_link=lambda node, up, now: self.inbox.put(("link", (node, up), now)),
        )
        self.state = ConsoleState(BUDGET_PRESETS_MS["cpu"])
        self.hub = Hub(self.state)
        self.page = Client("participant")
        self.hub.clients.add(self.page)
        self.shown: list[int | str] = []  # the participant page: picture TRs and waiting reasons
        self.renderer_levels: list[tuple[str, int | None]] = []  # (level, pid), on change
        self.feed.start()

    def step(self) -> None:
        """Take what the feed received, tick the hub, let the page draw what it is sent."""
        try:
            kind, item, now = self.inbox.get(timeout=0.05)
            if kind == "frame":
                self.hub.on_frame(item.header, item.image, now)  # a validated Frame
            elif kind == "link":
                self.hub.on_link(*item, now)
            else:
                self.hub.on_status(item, now)
        except queue.Empty:
            pass
        now = time.monotonic()
        self.hub.tick(now)
        while (message := self.hub.next_message(self.page, now)) is not None:
            if is_waiting(message):
                self.shown.append(f"waiting: {json.loads(message)['reason']}")
            else:
                header, _ = decode_frame(message)
                self.shown.append(int(header["tr"]))
                self.page.ack()
        level = (self.state.node_level("renderer", now), self.state.nodes["renderer"].pid)
        if not self.renderer_levels or self.renderer_levels[-1] != level:
            self.renderer_levels.append(level)

    def counters(self, node: str) -> dict:
        return self.state.nodes[node].counters

    def pid(self, node: str) -> int | None:
        return self.state.nodes[node].pid

    def wait(self, done, what: str, session: Child, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert session.returncode is None, f"the session ended: {session.tail(60)}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            self.step()

    def close(self) -> None:
        self.feed.stop()
        self.hub.close()


def _pictures(shown: list) -> list[int]:
    return [s for s in shown if isinstance(s, int)]


def test_a_killed_renderer_comes_back_with_later_pictures_and_nothing_else_is_touched(
    node_config, small_dataset, node_processes
):
    config = node_config.with_overrides(
        {
            "run.nodes": ["renderer", "decoder", "recorder"],
            "recorder.status_endpoint": f"tcp://127.0.0.1:{free_port()}",
            "decoder.wait_for_subscribers": 2,  # the renderer and the recorder
            "decoder.mode": "continuous",
            "stream.buffer_trs": 16,
            "stream.resolve_timeout_s": 120,
        }
    )
    files = small_dataset.runs("test")[0]
    session = node_processes.rt_recon("session", "run", node_processes.config_path(config))
    node_processes.replay_when_ready(config, files.bold, "--loop")
    console = _Console(config)
    try:
        # 1. A healthy session: pictures on the participant page, every node's heartbeat.
        console.wait(
            lambda: (
                len(_pictures(console.shown)) >= 3
                and all(console.pid(n) is not None for n in ("renderer", "decoder", "recorder"))
            ),
            "the first pictures and heartbeats",
            session,
        )
        assert console.renderer_levels[-1][0] == "ok"
        renderer_pid, decoder_pid = console.pid("renderer"), console.pid("decoder")
        recorder_pid = console.pid("recorder")
        assert renderer_pid != os.getpid()  # psutil.Process(None) would be this process
        last_before = _pictures(console.shown)[-1]

        # 2. The renderer is killed: its socket closes, the console shows it reconnecting and
        #    the page goes back to waiting, saying why.
        psutil.Process(renderer_pid).send_signal(signal.SIGKILL)
        killed_at = len(console.shown)
        console.wait(
            lambda: console.state.node_level("renderer", time.monotonic()) == "reconnecting",
            "the renderer to be shown reconnecting",
            session,
        )
        console.wait(
            lambda: "waiting: reconnecting" in console.shown[killed_at:],
            "the waiting page",
            session,
        )
        during = {n: dict(console.counters(n)) for n in ("decoder", "recorder")}

        # 3. The supervisor restarts it: healthy again (a new pid), later pictures come back.
        def back() -> bool:
            after = _pictures(console.shown[killed_at:])
            return (
                console.renderer_levels[-1][0] == "ok"
                and console.pid("renderer") not in (None, renderer_pid)
                and bool(after)
                and after[-1] >= last_before + OUTAGE_TRS
            )

        console.wait(back, "the restarted renderer's pictures", session)
        first_after = _pictures(console.shown[killed_at:])[0]
        console.wait(
            lambda: console.counters("recorder").get("frames", 0) > during["recorder"]["frames"],
            "the recorder to record the new renderer's frames",
            session,
        )
        final = {n: dict(console.counters(n)) for n in ("decoder", "recorder")}
        # The decoder and the recorder never noticed: the same processes, working throughout.
        assert console.pid("decoder") == decoder_pid and console.pid("recorder") == recorder_pid
        assert console.state.node_level("decoder", time.monotonic()) == "ok"
        assert console.state.node_level("recorder", time.monotonic()) == "ok"
        assert final["decoder"]["published"] > during["decoder"]["published"]
        assert final["recorder"]["latents"] > during["recorder"]["latents"]
        assert final["recorder"]["frames"] > during["recorder"]["frames"]
        session.send_signal(signal.SIGINT)
        assert session.wait(timeout=60) == 0
        log = session.log_text()
    finally:
        console.close()

    # The console's view of the renderer: ok, then reconnecting, then ok again as a new process.
    levels = [level for level, _ in console.renderer_levels]
    first_gone = levels.index("reconnecting")
    assert "ok" in levels[:first_gone] and "ok" in levels[first_gone:]
    assert console.renderer_levels[-1][1] not in (None, renderer_pid)
    assert console.state.nodes["renderer"].restarts == 1
    # The participant page: pictures, then waiting (never a stale picture), then later ones.
    page = console.shown
    assert page.index("waiting: reconnecting", killed_at) < page.index(first_after, killed_at)
    assert first_after > last_before
    assert "renderer stopped" in log and "restarting it (1/5)" in log

    # The recording went on through the outage: latents of every TR, frames of both renderers.
    with RecordingReader(config.recording_path) as reader:
        headers, _, _ = reader.latents()
        frame_headers, _ = reader.frames()
    trs = [h["tr"] for h in headers]
    assert trs == sorted(set(trs))
    flagged = {t for h in headers for t in range(h["tr"] - h["missed_before"], h["tr"])}
    assert flagged == set(range(trs[0], trs[-1] + 1)) - set(trs)  # no TR lost unflagged
    outage = [t for t in trs if last_before < t < first_after]
    assert len(outage) >= OUTAGE_TRS
    frame_trs = [h["tr"] for h in frame_headers]
    assert any(t <= last_before for t in frame_trs) and any(t >= first_after for t in frame_trs)
