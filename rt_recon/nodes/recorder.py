"""The recorder node: everything that crosses a wire in a session, into one recording file.

It reads the volume and marker streams with its own LSL inlets (so it
records even if the decoder stops), and subscribes to the decoder's latents
and status and the renderer's frames and status. Every item is appended and
flushed as it arrives (:mod:`rt_recon.record.recording`). Its own heartbeats
go out on ``recorder.status_endpoint``.

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
import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import pylsl
import zmq

from rt_recon.config import SessionConfig
from rt_recon.decode.bundle import DecoderBundle
from rt_recon.errors import BundleError, StorageError, StreamError
from rt_recon.nodes._signals import waiting
from rt_recon.nodes._status import StatusPublisher
from rt_recon.protocol import TOPIC_FRAME, TOPIC_LATENTS, TOPIC_STATUS, VolumeStreamMeta
from rt_recon.record.disk import DiskWatch
from rt_recon.record.recording import RecordingShapes, RecordingWriter
from rt_recon.transport.control import ControlServer
from rt_recon.transport.lsl import MarkerInlet, VolumeInlet, resolve_stream
from rt_recon.transport.zmq import Publisher, Subscriber

log = logging.getLogger(__name__)

#: The recorder's inlet holds this many TRs: unlike the decoder, which wants
#: only the newest volumes, the recorder must catch up on a backlog, never drop it.
_BACKLOG_TRS = 300


@dataclass
class RecorderStats:
    volumes: int = 0
    markers: int = 0
    latents: int = 0
    frames: int = 0
    status: int = 0
    rejected: int = 0
    unrecorded: int = 0  # items taken after a failed write (disk full), not recorded
    paused: int = 0  # items taken while the operator had stopped recording


class RecordSwitch:
    """Recording on or off at the operator's request; answers control requests.

    Commands (``{"command": ..., "by": ...}``): ``start``, ``stop``, ``query``.
    Each change is kept in :attr:`changes` until the recorder writes it. A
    change takes effect at the time it was asked for (LSL clock), not when
    the recorder gets to it: a volume acquired before a stop but still on its
    way is recorded, one acquired before a start (a backlog from the pause)
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

    def handle(self, header: dict[str, Any]) -> dict[str, Any]:
        command = header.get("command")
        if command not in self.COMMANDS:
            raise ValueError(f"unknown command {command!r}; expected one of {list(self.COMMANDS)}")
        if command != "query":
            if self.refusal is not None:
                raise ValueError(f"cannot {command} recording: {self.refusal}")
            wanted = command == "start"
            if wanted != self.recording:
                by = str(header.get("by", "unknown"))
                event = "record_start" if wanted else "record_stop"
                now = pylsl.local_clock()
                self._since.append((now, wanted))
                self.changes.append({"node": "recorder", "event": event, "by": by, "t": now})
                done = "started" if wanted else "stopped"
                log.warning("recording %s at the request of %s", done, by)
        return {"recording": self.recording}


def _shapes(bundle: DecoderBundle) -> RecordingShapes:
    side = int(bundle.model["image_size"])
    return RecordingShapes(
        n_channels=int(bundle.stream["n_channels"]),
        z_shape=tuple(bundle.model["latent_shape"]),
        c_shape=tuple(bundle.model["cond_shape"]),
        image_shape=(side, side, 3),
    )


def run_recorder(config: SessionConfig, stop: threading.Event) -> RecorderStats:
    """Record until ``stop`` is set; returns what was written."""
    if config.decoder.bundle is None:
        raise BundleError("the recorder needs decoder.bundle to know the shapes it records")
    bundle = DecoderBundle.load(config.decoder.bundle)
    stats = RecorderStats()
    path = config.recording_path
    switch = RecordSwitch()
    with (
        Publisher(config.recorder.status_endpoint, curve=config.security) as pub,
        _control_server(config) as control,
        Subscriber(
            config.decoder.latents_endpoint, [TOPIC_LATENTS, TOPIC_STATUS], curve=config.security
        ) as decoder,
        Subscriber(
            config.renderer.frames_endpoint, [TOPIC_FRAME, TOPIC_STATUS], curve=config.security
        ) as renderer,
    ):
        status = StatusPublisher(pub, "recorder")

        def serve() -> None:
            if control is not None:
                control.serve(switch.handle)

        def waiting_beat() -> None:
            serve()
            status.beat("waiting_for_stream", path=str(path), **asdict(stats))

        inlet = VolumeInlet.resolve(
            config.stream.source_id,
            config.stream.resolve_timeout_s,
            _BACKLOG_TRS,
            on_wait=waiting(stop, waiting_beat),
        )
        # The file is created once the stream is known, so it carries its geometry;
        # ZeroMQ messages wait in the sockets meanwhile (none flow before volumes do).
        attrs = {
            "config": config.model_dump(mode="json"),
            "bundle_model": bundle.model,
            "stream": stream_attrs(inlet.meta),
        }
        inputs = _Inputs(inlet, _open_markers(config), decoder, renderer)
        failure: StorageError | None = None
        disk = DiskWatch(
            path,
            low_free_mb=config.recorder.low_disk_mb,
            low_minutes=config.recorder.low_disk_minutes,
        )
        with inlet:
            try:
                with RecordingWriter(path, _shapes(bundle), attrs=attrs) as recording:
                    log.info("recording to %s", path)
                    while not stop.is_set():
                        serve()
                        for change in switch.changes:  # where the gaps are, and who asked
                            recording.add_status(change)
                        switch.changes.clear()
                        status.beat(
                            "streaming" if switch.recording else "paused",
                            source_id=config.stream.source_id,
                            path=str(path),
                            **disk.fields(time.monotonic()),
                            **asdict(stats),
                        )
                        inputs.record(recording, stats, switch)
                        recording.flush()
            except StorageError as exc:  # disk full, file size limit: the session goes on
                failure = exc
                switch.refusal = str(exc)
                log.error("%s; the session goes on without a recording", exc)
                while not stop.is_set():  # nothing waits on the recorder; it says what is wrong
                    serve()
                    status.beat("write_failed", path=str(path), error=str(exc),
                                errno=exc.errno, **asdict(stats))  # fmt: skip
                    stats.unrecorded += inputs.take(wait_ms=100)
            failed = {} if failure is None else {"error": str(failure), "errno": failure.errno}
            status.beat("stopped", path=str(path), **failed, **asdict(stats))
        inputs.close()
    log.info("recorder stopped: %s", stats)
    if failure is not None:
        raise failure  # the node's own last word: what went wrong with its file
    return stats


def _control_server(config: SessionConfig) -> contextlib.AbstractContextManager:
    """The recorder's control socket, or nothing where ``recorder.control_endpoint`` is null."""
    endpoint = config.recorder.control_endpoint
    if endpoint is None:
        return contextlib.nullcontext(None)
    return ControlServer(endpoint, curve=config.security)


@dataclass
class _Inputs:
    """Everything the recorder takes in: volumes, markers, and two ZeroMQ subscriptions."""

    inlet: VolumeInlet
    markers: MarkerInlet | None
    decoder: Subscriber
    renderer: Subscriber

    def __post_init__(self) -> None:
        self.poller = zmq.Poller()
        self.poller.register(self.decoder.socket, zmq.POLLIN)
        self.poller.register(self.renderer.socket, zmq.POLLIN)

    def record(
        self, recording: RecordingWriter, stats: RecorderStats, switch: RecordSwitch
    ) -> None:
        """Append everything waiting that ``switch`` says to record (volumes and markers by
        their stamps, messages by the switch as it is now); count the rest as ``paused``.
        Waits up to 10 ms for messages."""
        while (stamp := self.inlet.pull(timeout=0.0)) is not None:
            if switch.records(stamp):
                recording.add_volume(self.inlet.values, stamp)
                stats.volumes += 1
            else:
                stats.paused += 1
        while self.markers is not None and (event := self.markers.pull(timeout=0.0)):
            if switch.records(event[1]):
                recording.add_marker(*event)
                stats.markers += 1
            else:
                stats.paused += 1
        if not switch.recording:
            stats.paused += self._take_messages(wait_ms=10)
            return
        ready = dict(self.poller.poll(10))
        for sub in (self.decoder, self.renderer):
            if sub.socket in ready:
                _record_message(sub, recording, stats)

    def take(self, wait_ms: int) -> int:
        """Take everything waiting without recording it (so nothing waits on the recorder);
        how many items."""
        taken = 0
        while self.inlet.pull(timeout=0.0) is not None:
            taken += 1
        while self.markers is not None and self.markers.pull(timeout=0.0) is not None:
            taken += 1
        return taken + self._take_messages(wait_ms)

    def _take_messages(self, wait_ms: int) -> int:
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
        if self.markers is not None:
            self.markers.close()


def stream_attrs(meta: VolumeStreamMeta) -> dict:
    """What a recording stores about the volume stream, enough to stream it again."""
    return {
        "shape": list(meta.shape),
        "affine": meta.affine.ravel().tolist(),
        "tr": meta.tr,
        "session": meta.session,
        "run": meta.run,
        "mask_id": meta.mask_id,
        "n_channels": meta.n_channels,
        "speed": meta.speed,
    }


def _open_markers(config: SessionConfig) -> MarkerInlet | None:
    try:
        return MarkerInlet(resolve_stream("source_id", config.stream.markers_source_id, 2.0))
    except StreamError:
        log.warning(
            "no marker stream %r; recording volumes without events", config.stream.markers_source_id
        )
        return None


def _record_message(sub: Subscriber, recording: RecordingWriter, stats: RecorderStats) -> None:
    """Drain one socket's waiting messages into the recording (every message, not the latest)."""
    while (message := sub.receive(timeout=0.0)) is not None:
        try:
            if message.topic == TOPIC_LATENTS:
                recording.add_latents(message.header, message.arrays["z"], message.arrays["c"])
                stats.latents += 1
            elif message.topic == TOPIC_FRAME:
                recording.add_frame(message.header, message.arrays["image"])
                stats.frames += 1
            elif message.topic == TOPIC_STATUS:
                recording.add_status(message.header)
                stats.status += 1
        except (KeyError, TypeError, ValueError) as exc:
            stats.rejected += 1
            log.warning(
                "not recorded: %s message seq %s does not fit the recording: %s",
                message.topic,
                message.header.get("seq"),
                exc,
            )
