"""The recorder node: everything that crosses a wire in a session, into its recording.

The recording is one file per segment (:mod:`rt_recon.record.segments`): the
first at ``recorder.path``; the recorder begins the next beside it when it
starts and finds the session's files there (restarted after a crash: nothing
is overwritten) and when a run on another grid than the current segment's
begins (that run is recorded in the new segment, with its own grid).

It reads the volume and marker streams with its own LSL inlets (so it
records even if the decoder stops), and subscribes to the decoder's latents
and status and the renderer's frames and status. Every item is appended and
flushed as it arrives (:mod:`rt_recon.record.recording`); markers are kept
as they were sent, also one the decoder and console refuse as malformed.
Frames the renderer interpolates between two TRs' own (``renderer.interpolate_fps``,
up to dozens a second) are counted (``interpolated``), not recorded: they are
rendered again, exactly, from the two TRs' recorded latents.
Its own heartbeats go out on ``recorder.status_endpoint``.

When the file cannot be written (a full disk, a file size limit), the
recorder logs the error, keeps the file as it was at its last flush, and
stays up in state ``write_failed`` with the error on every heartbeat, taking
its inputs without recording them: it never stops the session or makes
another node wait. It exits with the error once asked to stop. Before it comes to that, every
heartbeat carries the free space and the minutes of recording left, and
``disk_low`` under ``recorder.low_disk_mb`` / ``low_disk_minutes``
(:mod:`rt_recon.record.disk`), which the console shows as a warning.

The operator can stop and start recording (the console's button) through
``recorder.control_endpoint`` (:mod:`rt_recon.transport.control`): while
stopped, the recorder is in state ``paused`` and takes its inputs without
recording them (counted as ``paused``); each stop and start is itself
recorded, as a ``status`` entry (``record_stop`` / ``record_start``, who
asked and when), so the file says where its gaps are and why.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pylsl
import zmq

from rt_recon.config import SessionConfig
from rt_recon.decode.specs import ModelSpec, read_specs
from rt_recon.errors import StorageError
from rt_recon.nodes.runner import Node, NodeContext, run_node
from rt_recon.protocol import (
    TOPIC_FRAME,
    TOPIC_LATENTS,
    TOPIC_STATUS,
    ControlReply,
    ControlRequest,
    Message,
    RecorderCounters,
    VolumeStreamMeta,
    is_interpolated,
)
from rt_recon.record.disk import DiskWatch
from rt_recon.record.feedback import resolve_feedback
from rt_recon.record.recording import RecordingShapes, RecordingWriter
from rt_recon.record.segments import next_segment
from rt_recon.transport.control import ControlServer
from rt_recon.transport.lsl import (
    MarkerInlet,
    MarkerSource,
    VolumeInlet,
    VolumeSource,
)
from rt_recon.transport.zmq import Subscriber

log = logging.getLogger(__name__)

#: The recorder's inlet holds this many TRs: unlike the decoder, which wants
#: only the newest volumes, the recorder must catch up on a backlog, never drop it.
_BACKLOG_TRS = 300


class RecordSwitch:
    """Recording on or off at the operator's request; answers control requests.

    Commands (:class:`~rt_recon.protocol.ControlRequest`): ``start``, ``stop``,
    ``query``. Each change is kept in :attr:`changes` until the recorder writes
    it. A change takes effect at the time it was asked for (LSL clock), not
    when the recorder gets to it: a volume acquired before a stop but still on
    its way is recorded, one acquired before a start (a backlog from the pause)
    is not (:meth:`records`).
    """

    COMMANDS = ("start", "stop", "query")

    def __init__(self, recording: bool = True):
        self.changes: list[dict[str, Any]] = []
        self.refusal: str | None = None  # set once the file cannot be written
        # (since when, recording): one entry per change, a few per session (operators' clicks)
        self._since: list[tuple[float, bool]] = [(-float("inf"), recording)]

    @property
    def recording(self) -> bool:
        """Whether the recorder records now."""
        return self._since[-1][1]

    def records(self, stamp: float) -> bool:
        """Whether an item stamped ``stamp`` (LSL clock) falls in a recorded stretch."""
        return next(recording for since, recording in reversed(self._since) if stamp >= since)

    def handle(self, request: ControlRequest) -> ControlReply:
        command = request.command
        if command not in self.COMMANDS:
            raise ValueError(f"unknown command {command!r}; expected one of {list(self.COMMANDS)}")
        if command != "query":
            if self.refusal is not None:
                raise ValueError(f"cannot {command} recording: {self.refusal}")
            wanted = command == "start"
            if wanted != self.recording:
                event = "record_start" if wanted else "record_stop"
                now = pylsl.local_clock()
                self._since.append((now, wanted))
                self.changes.append(
                    {"node": "recorder", "event": event, "by": request.by, "t": now}
                )
                done = "started" if wanted else "stopped"
                log.warning("recording %s at the request of %s", done, request.by)
        return ControlReply(ok=True, recording=self.recording)


def stream_attrs(meta: VolumeStreamMeta) -> dict:
    """What a recording stores about the volume stream, enough to stream it again."""
    return {
        "shape": list(meta.shape),
        "affine": meta.affine.ravel().tolist(),
        "tr": meta.tr_s,
        "session": meta.session,
        "run": meta.run,
        "series": meta.series,
        "series_description": meta.series_description,
        "mask_id": meta.mask_id,
        "n_channels": meta.n_channels,
        "speed": meta.speed,
    }


def _open_markers(config: SessionConfig) -> MarkerInlet | None:
    inlet = MarkerInlet.find(config.stream.markers_source_id)
    if inlet is None:
        log.warning(
            "no marker stream %r; recording volumes without events", config.stream.markers_source_id
        )
    return inlet


class MessageSource(Protocol):
    """The ZeroMQ messages to record (:class:`ZmqMessages`, or a test's fake)."""

    def receive(self, wait_ms: int) -> list[Message]:
        """Every valid message waiting (the first up to ``wait_ms`` away), in arrival order."""
        ...

    def take(self, wait_ms: int) -> int:
        """Drop every message waiting; how many."""
        ...

    def close(self) -> None: ...


class ZmqMessages:
    """The decoder's latents and status and the renderer's frames and status, as they come."""

    def __init__(self, config: SessionConfig):
        curve = config.security
        self.decoder = Subscriber(
            config.decoder.latents_endpoint, [TOPIC_LATENTS, TOPIC_STATUS], curve=curve
        )
        self.renderer = Subscriber(
            config.renderer.frames_endpoint, [TOPIC_FRAME, TOPIC_STATUS], curve=curve
        )
        self.poller = zmq.Poller()
        self.poller.register(self.decoder.socket, zmq.POLLIN)
        self.poller.register(self.renderer.socket, zmq.POLLIN)

    def receive(self, wait_ms: int) -> list[Message]:
        ready = dict(self.poller.poll(wait_ms))
        messages = []
        for sub in (self.decoder, self.renderer):
            if sub.socket in ready:
                while (message := sub.receive(timeout=0.0)) is not None:
                    messages.append(message)
        return messages

    def take(self, wait_ms: int) -> int:
        taken = 0
        for socket, _ in self.poller.poll(wait_ms):
            while True:
                try:
                    socket.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                taken += 1
        return taken

    def close(self) -> None:
        self.decoder.close()
        self.renderer.close()


@dataclass
class RecorderInputs:
    """Everything the recorder takes in: volumes, markers and ZeroMQ messages."""

    volumes: VolumeSource
    markers: MarkerSource | None
    messages: MessageSource

    def record(
        self,
        recording: RecordingWriter,
        counters: RecorderCounters,
        switch: RecordSwitch,
    ) -> None:
        """Append everything waiting that ``switch`` says to record (volumes and markers by
        their stamps, messages by the switch as it is now); count the rest as ``paused``.
        Waits up to 10 ms for messages."""
        while (stamp := self.volumes.pull(timeout=0.0)) is not None:
            counters.last_volume_t = pylsl.local_clock()
            if switch.records(stamp):
                recording.add_volume(self.volumes.values, stamp)
                counters.volumes += 1
            else:
                counters.paused += 1
        while self.markers is not None and (got := self.markers.pull_text(timeout=0.0)):
            text, stamp = got
            if not switch.records(stamp):
                counters.paused += 1
                continue
            try:
                event = json.loads(text)
            except json.JSONDecodeError:
                event = None
            if not isinstance(event, dict):
                counters.rejected += 1
                log.warning("not recorded: a marker that is no JSON object: %.80r", text)
                continue
            recording.add_marker(event, stamp)  # as sent: validated by whoever reads it
            counters.markers += 1
        if not switch.recording:
            counters.paused += self.messages.take(wait_ms=10)
            return
        for message in self.messages.receive(wait_ms=10):
            _record_message(message, recording, counters)

    def take(self, wait_ms: int) -> int:
        """Take everything waiting without recording it (so nothing waits on the recorder);
        how many items."""
        taken = 0
        while self.volumes.pull(timeout=0.0) is not None:
            taken += 1
        while self.markers is not None and self.markers.pull_text(timeout=0.0) is not None:
            taken += 1
        return taken + self.messages.take(wait_ms)

    def close(self) -> None:
        for part in (self.markers, self.volumes, self.messages):
            if part is not None:
                part.close()


def _record_message(
    message: Message, recording: RecordingWriter, counters: RecorderCounters
) -> None:
    """One message into the recording, its header as it arrived (the file keeps what was
    sent); one that does not fit is counted and logged."""
    try:
        if message.topic == TOPIC_LATENTS:
            recording.add_latents(message.header, message.arrays["z"], message.arrays["c"])
            counters.latents += 1
        elif message.topic == TOPIC_FRAME and is_interpolated(message.header):
            counters.interpolated += 1  # between two TRs' frames: rendered again from latents
        elif message.topic == TOPIC_FRAME:
            recording.add_frame(message.header, message.arrays["image"])
            counters.frames += 1
        elif message.topic == TOPIC_STATUS:
            recording.add_status(message.header)
            counters.status += 1
    except (KeyError, TypeError, ValueError) as exc:
        counters.rejected += 1
        log.warning(
            "not recorded: %s message seq %s does not fit the recording: %s",
            message.topic,
            message.header.get("seq"),
            exc,
        )


#: The shapes of a recording made without a decoder bundle: its volumes (n_channels from
#: the stream), markers and status; a latents or frame message that comes anyway does not
#: fit and is counted as rejected.
NO_LATENTS = RecordingShapes(n_channels=0, z_shape=(1,), c_shape=(1,), image_shape=(1, 1, 3))


class RecorderNode(Node):
    """Records a session (see the module docstring)."""

    name = "recorder"
    working_state = "streaming"

    def __init__(self, config: SessionConfig):
        self.config = config
        self.path = config.recording_path
        self.counters = RecorderCounters(source_id=config.stream.source_id, path=str(self.path))
        self.switch = RecordSwitch()
        self.failure: StorageError | None = None
        self.ctx: NodeContext | None = None
        self._stack = contextlib.ExitStack()
        self.inputs: RecorderInputs | None = None
        self.recording: RecordingWriter | None = None
        self.control: ControlServer | None = None
        self.shapes: RecordingShapes | None = None
        self.model: ModelSpec | None = None
        # the stream again once it ended (None while it is not back): a short look per step
        self.reopen: Callable[[], VolumeSource | None] | None = None
        self.grid: VolumeStreamMeta | None = None  # the grid of the segment written now
        self.segment = 0  # its number (rt_recon.record.segments), and its file:
        self.segment_path = self.path

    @property
    def endpoint(self) -> str:
        return self.config.recorder.status_endpoint

    def prepare(self) -> None:
        """The shapes to record, from the decoder bundle's metadata; without a bundle (the
        training runs of a visit, before the fit) volumes, markers and status only."""
        # the true condition, blinded or not (a bad study file or yoked recording fails here)
        self.feedback = resolve_feedback(self.config)
        if self.config.decoder.bundle is None:
            log.info(
                "no decoder.bundle: recording volumes, markers and status (training runs); "
                "latents and frames are recorded once a session has a bundle"
            )
            self.model, self.shapes = None, NO_LATENTS
            return
        stream, model = read_specs(self.config.decoder.bundle)
        self.model = model
        self.shapes = RecordingShapes(
            n_channels=stream.n_channels,
            z_shape=model.latent_shape,
            c_shape=model.cond_shape,
            image_shape=(model.image_size, model.image_size, 3),
        )

    def open(self, ctx: NodeContext) -> None:
        config = self.config
        endpoint = config.recorder.control_endpoint
        if endpoint is not None:
            self.control = self._stack.enter_context(ControlServer(endpoint, curve=config.security))

        def waiting() -> None:
            self._serve()
            ctx.check_stop()

        with contextlib.ExitStack() as opened:  # closed here only if opening fails
            messages = ZmqMessages(config)
            opened.callback(messages.close)
            ctx.state = "waiting_for_stream"
            inlet = VolumeInlet.resolve(
                config.stream.source_id,
                config.stream.resolve_timeout_s,
                _BACKLOG_TRS,
                on_wait=waiting,
            )
            opened.callback(inlet.close)
            markers = _open_markers(config)
            if markers is not None:
                opened.callback(markers.close)
            opened.pop_all()  # start() takes them over

        def resolve_again() -> VolumeSource | None:
            assert self.inputs is not None and isinstance(self.inputs.volumes, VolumeInlet)
            return self.inputs.volumes.next_stream(0.2)

        self.reopen = resolve_again
        self.start(ctx, RecorderInputs(inlet, markers, messages))

    def start(self, ctx: NodeContext, inputs: RecorderInputs) -> None:
        """Record from ``inputs``: the segment file is created now, with the stream's geometry
        (the first segment, or the next free one beside it after a restart).

        ZeroMQ messages wait in their sockets meanwhile (none flow before volumes do).
        """
        if self.shapes is None:
            self.prepare()
        assert self.shapes is not None
        self.ctx, self.inputs = ctx, inputs
        self._stack.callback(lambda: self.inputs.close() if self.inputs is not None else None)
        number, _ = next_segment(self.path)
        reason = "start" if number == 1 else "recorder restart"
        if number > 1:
            log.warning(
                "%s exists (a restart after a crash?): recording segment %d beside it, "
                "the files there are left as they are", self.path, number,
            )  # fmt: skip
        self._follows(inputs.volumes)
        self._open_segment(inputs.volumes.meta, reason)

    def _follows(self, volumes: VolumeSource) -> None:
        """Heartbeats say which stream and run the recorder's inlet is on (a bridge waits
        for it: docs/protocol.md 3.3)."""
        self.counters.run, self.counters.series = volumes.meta.run, volumes.meta.series
        self.counters.stream_uid = getattr(volumes, "uid", None)

    def _open_segment(self, meta: VolumeStreamMeta, reason: str) -> None:
        """Begin the session's next segment (:mod:`rt_recon.record.segments`) for a stream
        with ``meta``'s grid: its n_channels from the stream, latents and frames from the
        bundle. A file that cannot be created is a write failure (the session goes on)."""
        assert self.shapes is not None
        number, path = next_segment(self.path)
        self.grid = meta
        self.segment, self.segment_path = number, path
        self.counters.path = str(path)
        config = self.config
        attrs = {
            "config": config.redacted().model_dump(mode="json"),  # no secrets on disk
            **({} if self.model is None else {"bundle_model": self.model.to_json()}),
            "stream": stream_attrs(meta),
            "segment": {"number": number, "reason": reason, "first": self.path.name},
            "feedback": self.feedback.to_json(),
        }
        self.disk = DiskWatch(
            path,
            low_free_mb=config.recorder.low_disk_mb,
            low_minutes=config.recorder.low_disk_minutes,
        )
        shapes = dataclasses.replace(self.shapes, n_channels=meta.n_channels)
        try:
            self.recording = RecordingWriter(path, shapes, attrs=attrs)
        except StorageError as exc:  # no room for even an empty file: the session goes on
            self._failed(exc)
            return
        log.info("recording to %s (segment %d: %s)", path, number, reason)

    def _serve(self) -> None:
        if self.control is not None:
            self.control.serve(self.switch.handle)

    def step(self) -> None:
        """Answer control requests, then record (or, after a failed write, take) what waits."""
        assert self.ctx is not None and self.inputs is not None, "open() first"
        self._serve()
        if self.failure is not None:  # nothing waits on the recorder; it says what is wrong
            self.counters.unrecorded += self.inputs.take(wait_ms=100)
            return
        assert self.recording is not None
        try:
            for change in self.switch.changes:  # where the gaps are, and who asked
                self.recording.add_status(change)
            self.switch.changes.clear()
            if self.inputs.volumes.ended is None:
                self.ctx.state = "streaming" if self.switch.recording else "paused"
            for key, value in self.disk.fields(time.monotonic()).items():
                setattr(self.counters, key, value)
            self.inputs.record(self.recording, self.counters, self.switch)
            self.recording.flush()
        except StorageError as exc:  # disk full, file size limit: the session goes on
            self._failed(exc)
            return
        if self.inputs.volumes.ended is not None and self.reopen is not None:
            self._follow_stream()

    def _follow_stream(self) -> None:
        """The volume stream ended (end of its run, or lost): look for its next run, without
        blocking (markers and messages go on being recorded meanwhile). The next run is
        recorded in this segment when it has the segment's grid; a run on another grid
        closes this segment and is recorded in the next one, with its own grid."""
        assert self.ctx is not None and self.inputs is not None and self.reopen is not None
        old = self.inputs.volumes
        if self.ctx.state != "waiting_for_stream":
            log.info("volume stream of run %s: %s; waiting for the next", old.meta.run, old.ended)
            self.ctx.state = "waiting_for_stream"
        new = self.reopen()
        if new is None:
            return
        old.close()
        self.inputs.volumes = new
        self._follows(new)
        self.ctx.state = "streaming" if self.switch.recording else "paused"
        if self.recording is None:  # the file cannot be written: nothing to begin
            return
        run_start = {
            "node": "recorder", "event": "run_start", "t": pylsl.local_clock(),
            "stream": stream_attrs(new.meta),
        }  # fmt: skip
        if not new.meta.same_grid(self.grid):
            log.warning(
                "run %s (series %s) has another grid, %s, than %s's %s: recording it in the "
                "next segment",
                new.meta.run, new.meta.series or "?", new.meta.describe_grid(),
                self.segment_path.name, self.grid.describe_grid(),
            )  # fmt: skip
            try:
                self.recording.add_status(
                    {**run_start, "event": "segment_end", "next": next_segment(self.path)[1].name}
                )
                self.recording.close()
                self.recording = None
                self._open_segment(new.meta, "new grid")
                if self.recording is not None:
                    self.recording.add_status(run_start)
                    self.recording.flush()
            except StorageError as exc:
                self._failed(exc)
        elif new.meta.run != old.meta.run:
            self.recording.add_status(run_start)
            log.info(
                "run %s (series %s) recorded in %s", new.meta.run, new.meta.series,
                self.segment_path,
            )  # fmt: skip

    def _failed(self, exc: StorageError) -> None:
        assert self.ctx is not None
        self.failure = exc
        self.switch.refusal = str(exc)
        self.counters.error, self.counters.errno = str(exc), exc.errno
        log.error("%s; the session goes on without a recording", exc)
        self.ctx.state = "write_failed"
        if self.recording is not None:
            with contextlib.suppress(StorageError):
                self.recording.close()  # keeps the file as it was at its last flush
            self.recording = None

    def close(self) -> None:
        try:
            if self.recording is not None:
                self.recording.close()
        except StorageError as exc:
            self.failure = self.failure or exc
        finally:
            self.recording = None
            self._stack.close()
        if self.failure is not None:
            raise self.failure  # the node's own last word: what went wrong with its file


def run_recorder(config: SessionConfig, stop: threading.Event) -> Any:
    """Record until ``stop`` is set; returns the counters."""
    return run_node(RecorderNode(config), stop, config.security)
