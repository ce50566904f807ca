"""The console's inputs, each on its own thread: ZeroMQ frames and heartbeats, LSL markers,
and a look every two seconds for the volume stream (the scanner bridge or a replay).

A feed validates every message into the protocol's type (:class:`~rt_recon.protocol.Frame`,
:class:`~rt_recon.protocol.Status`, :class:`~rt_recon.protocol.Marker`) and hands it to a
callback together with its receive time (``time.monotonic()``) or, for a marker, its LSL
timestamp; the server's callbacks move them onto its event loop. A message that breaks the
protocol is dropped, logged with the fields it got wrong, counted (``malformed``) and
reported to ``on_malformed``. Frames are taken latest-only (drain the socket, keep the
newest), heartbeats and markers one by one. The ZeroMQ feed also watches each heartbeat
socket's connection (a libzmq socket monitor): a node whose process dies closes its end at
once, long before three heartbeats are missed, and the console can say it is reconnecting
rather than merely silent.

The volume-stream feed (:class:`VolumeSourceFeed`) never opens the stream: it resolves it by
its ``source_id`` and reads its description (one short request to the outlet, no data
connection), so the bridge has no more consumers for it and sends it no volume.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

import pylsl
import zmq
from pylsl.util import LostError
from pylsl.util import TimeoutError as LslTimeoutError
from zmq.utils.monitor import recv_monitor_message

from rt_recon.config import SecuritySection
from rt_recon.display.sources import VolumeSourceReport
from rt_recon.errors import ProtocolError, StreamError
from rt_recon.protocol import (
    TOPIC_FRAME,
    TOPIC_STATUS,
    Frame,
    Marker,
    Message,
    Status,
    parse_volume_stream_info,
)
from rt_recon.transport.lsl import MarkerInlet, resolve_stream
from rt_recon.transport.zmq import Subscriber

log = logging.getLogger(__name__)

#: Frames buffered per socket before ZeroMQ drops: the console only ever wants the newest.
_FRAME_HWM = 4
_POLL_MS = 100

#: Socket-monitor events that mean the connection to a node is up, or lost.
_LINK_UP = zmq.EVENT_CONNECTED
_LINK_DOWN = zmq.EVENT_DISCONNECTED

#: ``on_malformed(kind, reason, time)``: a message of ``kind`` (``frame``, ``status``,
#: ``marker``) was dropped because it broke the protocol, for ``reason``.
MalformedCallback = Callable[[str, str, float], None]

_FRAMING = "it broke the message framing (docs/protocol.md 3; the log names how)"


class _Feed:
    """A worker thread with ``start()`` / ``stop()``; errors are logged, never silent."""

    name = "feed"

    def __init__(self, on_malformed: MalformedCallback | None = None) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._guarded, name=self.name, daemon=True)
        self._on_malformed = on_malformed
        #: Messages dropped because they broke the protocol, by kind.
        self.malformed: dict[str, int] = {}

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _guarded(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("%s thread failed", self.name)
            raise

    def _run(self) -> None:
        raise NotImplementedError

    def _dropped(self, kind: str, reason: str, now: float, logged: bool = False) -> None:
        """Count, log (unless the transport ``logged`` it) and report a message that broke
        the protocol."""
        self.malformed[kind] = self.malformed.get(kind, 0) + 1
        if not logged:
            log.warning("dropped a malformed %s message: %s", kind, reason)
        if self._on_malformed is not None:
            self._on_malformed(kind, reason, now)


class ZmqFeed(_Feed):
    """Frames from the renderer's endpoint, heartbeats from every node's endpoint.

    Args:
        frames_endpoint: the renderer's frames socket.
        status_endpoints: node name -> the endpoint it publishes heartbeats on.
        on_frame, on_status: called with each valid frame or heartbeat and its receive time.
        on_link: called with (node, connected, time) when the connection to a
            node's heartbeat socket comes up or is lost.
        curve: the config's security section.
        on_malformed: told of every message dropped for breaking the protocol.
    """

    name = "console-zmq"

    def __init__(
        self,
        frames_endpoint: str,
        status_endpoints: Mapping[str, str],
        on_frame: Callable[[Frame, float], None],
        on_status: Callable[[Status, float], None],
        on_link: Callable[[str, bool, float], None] | None = None,
        curve: SecuritySection | None = None,
        on_malformed: MalformedCallback | None = None,
    ):
        super().__init__(on_malformed)
        self._curve = curve
        self.frames_endpoint = frames_endpoint
        self.status_endpoints = dict(status_endpoints)
        self._on_frame = on_frame
        self._on_status = on_status
        self._on_link = on_link
        self.skipped_frames = 0

    def _run(self) -> None:
        context = zmq.Context()
        frames = Subscriber(
            self.frames_endpoint, [TOPIC_FRAME], context, rcvhwm=_FRAME_HWM, curve=self._curve
        )
        statuses = [
            Subscriber(ep, [TOPIC_STATUS], context, curve=self._curve)
            for ep in self.status_endpoints.values()
        ]
        # one monitor per heartbeat socket, started before it can connect: no event is missed
        monitors = {
            sub.socket.get_monitor_socket(_LINK_UP | _LINK_DOWN): (node, sub)
            for node, sub in zip(self.status_endpoints, statuses, strict=True)
        }
        poller = zmq.Poller()
        for socket in (frames.socket, *(sub.socket for sub in statuses), *monitors):
            poller.register(socket, zmq.POLLIN)
        log.info(
            "console listening: frames on %s, heartbeats on %s",
            self.frames_endpoint,
            ", ".join(self.status_endpoints.values()),
        )
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(_POLL_MS))
                now = time.monotonic()
                for sub in statuses:
                    if sub.socket in ready:
                        self._take_statuses(sub, now)
                for monitor, (node, sub) in monitors.items():
                    if monitor not in ready:
                        continue
                    # heartbeats that came before the connection changed go first: one the
                    # node sent just before it died must not mark the link up again after
                    self._take_statuses(sub, now)
                    while monitor.poll(0):
                        event = recv_monitor_message(monitor)
                        if self._on_link is not None:
                            self._on_link(node, event["event"] == _LINK_UP, now)
                if frames.socket in ready:
                    got = frames.receive_latest(timeout=0)
                    self.skipped_frames += got.skipped
                    for _ in range(got.malformed):
                        self._dropped("frame", _FRAMING, now, logged=True)
                    if got.message is not None:
                        self._take_frame(got.message, now)
        finally:
            for sub in statuses:
                sub.socket.disable_monitor()
            for monitor in monitors:
                monitor.close(linger=0)
            for sub in (frames, *statuses):
                sub.close()
            context.term()

    def _take_statuses(self, sub: Subscriber, now: float) -> None:
        """Every heartbeat waiting on ``sub``, validated."""
        while True:
            framing_errors = sub.malformed
            message = sub.receive(timeout=0)
            for _ in range(sub.malformed - framing_errors):
                self._dropped("status", _FRAMING, now, logged=True)
            if message is None:
                return
            try:
                status = Status.from_json(message.header)
            except ProtocolError as exc:
                self._dropped("status", str(exc), now)
                continue
            self._on_status(status, now)

    def _take_frame(self, message: Message, now: float) -> None:
        try:
            frame = Frame.from_message(message)
        except ProtocolError as exc:
            self._dropped("frame", str(exc), now)
            return
        self._on_frame(frame, now)


class MarkerFeed(_Feed):
    """Events from the LSL marker stream with ``source_id``; waits for it, follows restarts.

    ``on_inlet(present, time)`` is told when the stream is opened (True) and, until then,
    when a look did not find it (False, once per change).
    """

    name = "console-markers"

    def __init__(
        self,
        source_id: str,
        on_marker: Callable[[Marker, float], None],
        on_malformed: MalformedCallback | None = None,
        on_inlet: Callable[[bool, float], None] | None = None,
    ):
        super().__init__(on_malformed)
        self.source_id = source_id
        self._on_marker = on_marker
        self._on_inlet = on_inlet
        self._told: bool | None = None
        #: True once the stream is open.
        self.present = False

    def _run(self) -> None:
        inlet: MarkerInlet | None = None
        try:
            while not self._stop.is_set():
                if inlet is None:
                    inlet = self._open()
                    self.present = inlet is not None
                    self._tell(self.present)
                    continue
                try:
                    got = inlet.pull(timeout=0.2)
                except ProtocolError as exc:
                    self._dropped("marker", str(exc), time.monotonic())
                    continue
                if got is not None:
                    self._on_marker(*got)
                elif inlet.lost:  # the marker outlet is gone: say so, then look for it again
                    log.warning("marker stream %r lost", self.source_id)
                    inlet.close()
                    inlet = None
                    self.present = False
                    self._tell(False)
        finally:
            if inlet is not None:
                inlet.close()

    def _open(self) -> MarkerInlet | None:
        try:
            info = resolve_stream("source_id", self.source_id, timeout=1.0)
            inlet = MarkerInlet(info, recover=False)
        except (StreamError, LostError, LslTimeoutError) as exc:
            log.debug("marker stream %r not there yet: %s", self.source_id, exc)
            return None
        log.info("reading markers from %r (source_id %r)", info.name(), self.source_id)
        return inlet

    def _tell(self, present: bool) -> None:
        if self._on_inlet is not None and present != self._told:
            self._told = present
            self._on_inlet(present, time.monotonic())


#: Seconds between looks for the volume stream, and how long one look waits for an answer.
VOLUME_LOOK_EVERY_S = 2.0
VOLUME_LOOK_TIMEOUT_S = 1.0


class VolumeSourceFeed(_Feed):
    """Looks for the volume stream with ``source_id`` every :data:`VOLUME_LOOK_EVERY_S` and
    reports what it found (:class:`~rt_recon.display.sources.VolumeSourceReport`) to
    ``on_report(report, time)``, after every look.

    A look resolves the stream (:func:`~rt_recon.transport.lsl.resolve_stream`: a multicast
    query, no connection); the first time a stream (a uid) is seen, its description is read
    once and parsed by the protocol (:func:`~rt_recon.protocol.parse_volume_stream_info`),
    without opening its data: the bridge does not count the console as a consumer.
    """

    name = "console-volume-source"

    def __init__(
        self,
        source_id: str,
        on_report: Callable[[VolumeSourceReport, float], None],
        every_s: float = VOLUME_LOOK_EVERY_S,
        timeout_s: float = VOLUME_LOOK_TIMEOUT_S,
    ):
        super().__init__()
        self.source_id = source_id
        self._on_report = on_report
        self.every_s = every_s
        self.timeout_s = timeout_s
        #: The last report.
        self.report: VolumeSourceReport | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            report = self.look()
            if self.report is None or report.present != self.report.present:
                if report.present:
                    log.info("volume stream %r found on %s", report.name, report.host)
                else:
                    log.info("no volume stream with source_id %r", self.source_id)
            self.report = report
            self._on_report(report, time.monotonic())
            self._stop.wait(max(self.every_s - (time.monotonic() - started), 0.0))

    def look(self) -> VolumeSourceReport:
        """One look: the stream under ``source_id`` now, described."""
        try:
            info = resolve_stream("source_id", self.source_id, self.timeout_s)
        except StreamError:
            return VolumeSourceReport(self.source_id, present=False)
        last = self.report
        if last is not None and last.present and last.uid == info.uid() and last.meta is not None:
            return last  # the same outlet: its description has not changed
        found = {"name": info.name(), "host": info.hostname(), "uid": info.uid()}
        try:
            meta = parse_volume_stream_info(_full_info(info, self.timeout_s))
        except (ProtocolError, StreamError) as exc:
            log.warning("volume stream %r on %s: %s", info.name(), info.hostname(), exc)
            return VolumeSourceReport(self.source_id, present=True, error=str(exc), **found)
        return VolumeSourceReport(self.source_id, present=True, meta=meta, **found)


def _full_info(info: pylsl.StreamInfo, timeout: float) -> pylsl.StreamInfo:
    """The stream's full info, its ``desc`` included (a resolved info has none), asked of its
    outlet in one short request; no data connection is made (the inlet is never opened)."""
    inlet = pylsl.StreamInlet(info, recover=False)
    try:
        return inlet.info(timeout=timeout)
    except (LslTimeoutError, LostError):
        raise StreamError(
            f"stream {info.name()!r} answered, but its description did not arrive within "
            f"{timeout:g} s"
        ) from None
    finally:
        del inlet
