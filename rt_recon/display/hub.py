"""Hands the newest picture and console state to every connected page, latest-only.

Each page (a :class:`Client`) has at most one picture in flight: it acks a
picture once drawn, and only then gets the next one, which is always the
newest at that moment; pictures that came and went meanwhile are never sent.
So a slow page or network shows fewer pictures, never older ones.

The console page also gets the last :data:`HISTORY` pictures when it connects
(:meth:`Hub.connect`), oldest first, one at a time as it acks them, before the
live ones: a reloaded page has its strip of recent pictures back at once.

A frame the renderer interpolated between two TRs' own
(:func:`~rt_recon.protocol.is_interpolated`) goes to participant pages only: the
console's TR counts, latency and pairing, and its strip of pictures, are the TRs'.
Each participant picture carries the page's crossfade (``console.crossfade_ms``), the
frame's confidence and the level below which the page fades it toward the fixation screen
(``console.confidence_fade_below``; None: never).

The hub runs on the server's event loop; :meth:`Hub.next_message` decides
what a client gets next without any I/O (tested without sockets), and
:meth:`Hub.pump` sends it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Container
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from rt_recon.display.frames import encode_frame
from rt_recon.display.messages import (
    ConsolePicture,
    NodeLevel,
    ParticipantPicture,
    WaitingMessage,
)
from rt_recon.display.sources import VolumeSourceReport
from rt_recon.display.state import ConsoleState
from rt_recon.display.timeline import Truth
from rt_recon.protocol import FrameHeader, Marker, Status

log = logging.getLogger(__name__)

Kind = Literal["participant", "console"]


def waiting_message(reason: NodeLevel | None = None) -> str:
    """What a participant page is sent when there is no picture to show, and why.

    ``reason`` is the renderer's level (:meth:`ConsoleState.node_level`):
    ``reconnecting``, ``away``, ``stopped``; None before it was ever heard.
    """
    return json.dumps(WaitingMessage(type="waiting", reason=reason).to_json())


def is_waiting(message: str | bytes) -> bool:
    """True for a :func:`waiting_message` (pictures are bytes)."""
    return isinstance(message, str) and json.loads(message).get("type") == "waiting"


#: A page that has not acked a picture for this long gets the next one anyway.
ACK_TIMEOUT_S = 2.0

#: Console pictures kept for a console page that (re)connects: its strip's length
#: (``STRIP_LENGTH`` in static/console.js).
HISTORY = 8


@dataclass
class _Channel:
    """The newest message of one kind of page; ``payload`` None means "nothing to show"."""

    version: int = 0
    payload: bytes | None = None
    reason: str | None = None  # why there is no payload (see waiting_message)


class Client:
    """One connected page."""

    def __init__(self, kind: Kind):
        self.kind: Kind = kind
        self.wake = asyncio.Event()
        self.credit = True  # may be sent a picture
        self.sent_at = 0.0  # monotonic time the unacked picture went out
        self.frame_version = 0  # channel version last sent
        self.state_version = 0
        self.pictures_sent = 0
        #: Earlier pictures still to send, oldest first (a console page's history).
        self.backlog: deque[bytes] = deque()

    def ack(self) -> None:
        """The page drew the picture it was sent."""
        self.credit = True
        self.wake.set()


class Hub:
    """The console state plus the newest picture per kind of page."""

    def __init__(
        self,
        state: ConsoleState,
        picture_ids: Container[int] | None = None,
        crossfade_ms: float = 0.0,
        confidence_fade_below: float | None = None,
    ):
        self.state = state
        self.picture_ids = picture_ids  # stimuli the server has pictures of (None: no dataset)
        self.crossfade_ms = crossfade_ms  # the participant page's (console.crossfade_ms)
        self.fade_below = confidence_fade_below  # console.confidence_fade_below
        self.clients: set[Client] = set()
        self._channels: dict[Kind, _Channel] = {"participant": _Channel(), "console": _Channel()}
        self._state_json = ""
        self._state_version = 0
        #: The last console pictures, oldest first (the newest is also the channel's).
        self.history: deque[bytes] = deque(maxlen=HISTORY)
        self.closed = False

    def connect(self, kind: Kind) -> Client:
        """A new page of ``kind``, served from now on; a console page gets the pictures of
        :attr:`history` first (the newest of them is the channel's: not sent again)."""
        client = Client(kind)
        if kind == "console":
            client.backlog.extend(self.history)
            client.frame_version = self._channels["console"].version
        self.clients.add(client)
        client.wake.set()
        return client

    # -------------------------------------------------------- inputs (event loop)

    def on_status(self, status: Status, now: float) -> None:
        self.state.on_status(status, now)
        self._check_renderer(now)

    def on_link(self, node: str, connected: bool, now: float) -> None:
        """The console's connection to ``node`` came up or was lost (a ZeroMQ socket event)."""
        self.state.on_link(node, connected, now)
        self._check_renderer(now)

    def on_marker(self, marker: Marker, stamp: float, now: float | None = None) -> None:
        self.state.on_marker(marker, stamp, now)

    def on_marker_inlet(self, present: bool, now: float) -> None:
        """The marker input opened the marker stream, or looked and did not find it."""
        self.state.on_marker_inlet(present, now)

    def on_volume_source(self, report: VolumeSourceReport, now: float) -> None:
        """A look for the volume stream on the network."""
        self.state.on_volume_source(report, now)

    def on_frame(self, header: FrameHeader, image: np.ndarray, now: float) -> None:
        """A frame from the renderer (its validated header and ``(H, W, 3)`` uint8 picture):
        becomes the newest picture of every page (of participant pages only, when it was
        interpolated between two TRs' frames)."""
        common = {
            "tr": header.tr,
            "seq": header.seq,
            "width": int(image.shape[1]),
            "height": int(image.shape[0]),
            "times": header.times,
            "crossfade_ms": self.crossfade_ms,
            "confidence": header.confidence,
            "fade_below": self.fade_below,
        }
        self._set("participant", encode_frame(ParticipantPicture(**common), image))
        if header.interpolated is not None:
            return
        record = self.state.on_frame(header, now)
        console = ConsolePicture(
            **common,
            run=record.run,
            lag_trs=header.lag_trs,
            latency_ms=record.latency_ms,
            fd=record.fd_mm,
            truth=self._truth_json(record.truth),
            trial=record.trial,
        )
        payload = encode_frame(console, image)
        self.history.append(payload)
        self._set("console", payload)

    def tick(self, now: float) -> None:
        """Refresh the console state, notice a renderer gone, free pages that never acked."""
        self._check_renderer(now)
        self._state_json = json.dumps(self.snapshot(now), allow_nan=False)
        self._state_version += 1
        for client in self.clients:
            if not client.credit and now - client.sent_at > ACK_TIMEOUT_S:
                client.credit = True
            client.wake.set()

    def snapshot(self, now: float) -> dict[str, Any]:
        """The console state (:meth:`ConsoleState.snapshot`) with picture URLs filled in."""
        snapshot = self.state.snapshot(now)
        snapshot["pictures"] = self.picture_ids is not None
        for pair in snapshot["pairs"]:
            if pair["truth"] is not None:
                pair["truth"]["picture"] = self._picture_url(pair["truth"]["stimulus_id"])
        return snapshot

    def _truth_json(self, truth: Truth | None) -> dict[str, Any] | None:
        if truth is None:
            return None
        return {**truth.to_json(), "picture": self._picture_url(truth.stimulus_id)}

    def _picture_url(self, stimulus_id: int) -> str | None:
        if self.picture_ids is None or stimulus_id not in self.picture_ids:
            return None
        return f"/stimuli/{stimulus_id}.png"

    def close(self) -> None:
        self.closed = True
        for client in self.clients:
            client.wake.set()

    def _check_renderer(self, now: float) -> None:
        """No renderer (away, reconnecting, stopped): the participant page waits, told why."""
        if self.state.renderer_present(now):
            return
        level = self.state.node_level("renderer", now)
        channel = self._channels["participant"]
        if channel.payload is not None or (channel.version and channel.reason != level):
            log.info("renderer %s: participant display waiting", level)
            self._set("participant", None, reason=level)

    def _set(self, kind: Kind, payload: bytes | None, reason: str | None = None) -> None:
        channel = self._channels[kind]
        channel.version += 1
        channel.payload = payload
        channel.reason = reason
        for client in self.clients:
            if client.kind == kind:
                client.wake.set()

    # ---------------------------------------------------------------- outputs

    def next_message(self, client: Client, now: float) -> str | bytes | None:
        """What ``client`` should be sent now (and mark it sent), or None."""
        if client.kind == "console" and self._state_version > client.state_version:
            client.state_version = self._state_version
            return self._state_json
        if client.backlog and client.credit:
            client.credit = False
            client.sent_at = now
            client.pictures_sent += 1
            return client.backlog.popleft()
        channel = self._channels[client.kind]
        if channel.version > client.frame_version:
            if channel.payload is None:
                client.frame_version = channel.version
                return waiting_message(channel.reason)
            if client.credit:
                client.frame_version = channel.version
                client.credit = False
                client.sent_at = now
                client.pictures_sent += 1
                return channel.payload
        return None

    async def pump(
        self,
        client: Client,
        send: Callable[[str | bytes], Awaitable[None]],
        clock: Callable[[], float],
    ) -> None:
        """Send ``client`` what it should get, as it becomes due, until the hub closes."""
        while not self.closed:
            message = self.next_message(client, clock())
            if message is None:
                await client.wake.wait()
                client.wake.clear()
                continue
            await send(message)
