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
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass

import zmq

from rt_recon.config import SessionConfig
from rt_recon.decode.bundle import DecoderBundle
from rt_recon.errors import BundleError, StorageError, StreamError
from rt_recon.nodes._signals import waiting
from rt_recon.nodes._status import StatusPublisher
from rt_recon.protocol import TOPIC_FRAME, TOPIC_LATENTS, TOPIC_STATUS, VolumeStreamMeta
from rt_recon.record.disk import DiskWatch
from rt_recon.record.recording import RecordingShapes, RecordingWriter
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
    with (
        Publisher(config.recorder.status_endpoint, curve=config.security) as pub,
        Subscriber(
            config.decoder.latents_endpoint, [TOPIC_LATENTS, TOPIC_STATUS], curve=config.security
        ) as decoder,
        Subscriber(
            config.renderer.frames_endpoint, [TOPIC_FRAME, TOPIC_STATUS], curve=config.security
        ) as renderer,
    ):
        status = StatusPublisher(pub, "recorder")
        inlet = VolumeInlet.resolve(
            config.stream.source_id,
            config.stream.resolve_timeout_s,
            _BACKLOG_TRS,
            on_wait=waiting(
                stop, lambda: status.beat("waiting_for_stream", path=str(path), **asdict(stats))
            ),
        )
        # The file is created once the stream is known, so it carries its geometry;
        # ZeroMQ messages wait in the sockets meanwhile (none flow before volumes do).
        attrs = {
            "config": config.model_dump(mode="json"),
            "bundle_model": bundle.model,
            "stream": stream_attrs(inlet.meta),
        }
        markers = _open_markers(config)
        poller = zmq.Poller()
        poller.register(decoder.socket, zmq.POLLIN)
        poller.register(renderer.socket, zmq.POLLIN)
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
                        status.beat(
                            "streaming",
                            source_id=config.stream.source_id,
                            path=str(path),
                            **disk.fields(time.monotonic()),
                            **asdict(stats),
                        )
                        while (stamp := inlet.pull(timeout=0.0)) is not None:
                            recording.add_volume(inlet.values, stamp)
                            stats.volumes += 1
                        while markers is not None and (event := markers.pull(timeout=0.0)):
                            recording.add_marker(*event)
                            stats.markers += 1
                        ready = dict(poller.poll(10))
                        for sub in (decoder, renderer):
                            if sub.socket in ready:
                                _record_message(sub, recording, stats)
                        recording.flush()
            except StorageError as exc:  # disk full, file size limit: the session goes on
                failure = exc
                log.error("%s; the session goes on without a recording", exc)
                _drain_until_stopped(stop, status, inlet, markers, poller, stats, exc, str(path))
            failed = {} if failure is None else {"error": str(failure), "errno": failure.errno}
            status.beat("stopped", path=str(path), **failed, **asdict(stats))
        if markers is not None:
            markers.close()
    log.info("recorder stopped: %s", stats)
    if failure is not None:
        raise failure  # the node's own last word: what went wrong with its file
    return stats


def _drain_until_stopped(
    stop: threading.Event,
    status: StatusPublisher,
    inlet: VolumeInlet,
    markers: MarkerInlet | None,
    poller: zmq.Poller,
    stats: RecorderStats,
    error: StorageError,
    path: str,
) -> None:
    """After a failed write: report it on every heartbeat and take (and count) every input
    without recording it, so that nothing waits on the recorder, until ``stop`` is set."""
    while not stop.is_set():
        status.beat("write_failed", path=path, error=str(error), errno=error.errno, **asdict(stats))
        while inlet.pull(timeout=0.0) is not None:
            stats.unrecorded += 1
        while markers is not None and markers.pull(timeout=0.0) is not None:
            stats.unrecorded += 1
        for socket, _ in poller.poll(100):
            while True:
                try:
                    socket.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                stats.unrecorded += 1


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
