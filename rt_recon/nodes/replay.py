"""Replay a recorded run over LSL at TR pace, as a scanner would have sent it.

Volumes go out on an ``fMRI`` stream (geometry in its ``desc``), events from
a BIDS ``events.tsv`` (or an XDF recording's markers) on a ``Markers``
stream, each at its scheduled time. The run can be a 4D NIfTI, a scanner
series (DICOM, PAR/REC, NIfTI files) or an XDF recording
(:func:`rt_recon.record.runs.load_run`).

Pacing (``pace``):

``realtime``
    By target timestamps: volume ``i`` is due at ``t0 + time_i / speed``,
    where ``time_i`` is the recording's own acquisition time (DICOM, XDF) or
    ``i * TR``; it is not ``sleep(TR)`` after each push, so lateness never
    accumulates. Each volume is stamped with its push time.
``asap``
    As fast as the consumer takes the volumes, never faster: at most
    ``window`` volumes are in flight (pushed but not yet acknowledged by the
    consumer through ``ack``), so the consumer's LSL buffer never overflows
    and nothing is dropped. Volumes are stamped with their push time and the
    stream declares ``pace: asap`` in its ``desc``, so a consumer counts every
    new volume as the next TR instead of reading lost TRs into the gaps (a
    consumer that stalls for longer than a TR now and then, say on its first
    volume, is exactly what asap is for). Each marker is stamped with the stamp
    of the volume its onset is nearest (its onset TR by the trial rule,
    :func:`rt_recon.protocol.onset_tr`) and pushed just before it, so an asap
    replay gives every event the onset TR a real-time replay gives it.
    The consumer is the decoder (:class:`DecoderAck`); given the renderer's
    frames endpoint too (``--ack-frames``), a volume counts as taken once the
    renderer is done with it, so an asap replay through a renderer renders
    every TR rather than the newest latents whenever the renderer is free.

``loop`` plays the run that many times back to back (0: until stopped),
each pass framed by its own ``run_start``/``run_end`` markers (with a
``loop`` number), the timeline continuing without a jump.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import count
from typing import Literal, Protocol

import numpy as np
import pylsl

from rt_recon.acquire.nifti import RecordedRun
from rt_recon.config import SecuritySection
from rt_recon.errors import ConfigError, StreamError
from rt_recon.protocol import (
    TOPIC_FRAME,
    TOPIC_LATENTS,
    TOPIC_STATUS,
    VolumeStreamMeta,
    is_interpolated,
    onset_tr,
)
from rt_recon.transport.lsl import MarkerOutlet, VolumeOutlet

log = logging.getLogger(__name__)

_LINGER_S = 1.0

Pace = Literal["realtime", "asap"]


class Acknowledger(Protocol):
    """How an ``asap`` replay learns how many volumes its consumer has taken."""

    def consumed(self, timeout: float) -> int:
        """Volumes taken so far; may wait up to ``timeout`` seconds for news."""
        ...


@dataclass
class ReplayReport:
    n_volumes: int = 0
    n_markers: int = 0
    lateness: list[float] = field(default_factory=list)  # seconds each push was late (realtime)
    loops: int = 0  # passes completed
    push_times: list[float] = field(default_factory=list)  # LSL clock of each volume push


def _wait_until(target: float, stop: threading.Event) -> None:
    """Sleep until LSL-clock time ``target``: coarse sleep, then a short spin."""
    while True:
        remaining = target - pylsl.local_clock()
        if remaining <= 0 or stop.is_set():
            return
        if remaining > 0.002:
            stop.wait(remaining - 0.0015)


def _wait_for_consumer(outlet: VolumeOutlet, timeout: float, stop: threading.Event) -> bool:
    """Wait for an inlet in short slices, so a stop request is honoured within 0.2 s."""
    deadline = time.monotonic() + timeout
    while not stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if outlet.wait_for_consumers(min(0.2, remaining)):
            return True
    return False


def _wait_ready(ready: Callable[[], bool] | None, timeout: float, stop: threading.Event) -> bool:
    """Poll ``ready`` (e.g. every consumer reports it is streaming) until True or timeout."""
    deadline = time.monotonic() + timeout
    while ready is not None and not ready():
        if stop.is_set() or time.monotonic() > deadline:
            return False
        stop.wait(0.05)
    return True


def volume_offsets(run: RecordedRun) -> np.ndarray:
    """Seconds from the first volume to each volume on the acquisition's own timeline."""
    n = len(run.volumes)
    if run.times is not None and len(run.times) == n:
        times = np.asarray(run.times, dtype=np.float64)
        if n < 2 or np.all(np.diff(times) > 0):
            return times - times[0]
        log.warning("the recording's volume times do not increase; pacing by TR instead")
    return np.arange(n) * run.tr_s


def volume_indexes(run: RecordedRun) -> np.ndarray:
    """Each volume's acquisition index (0-based): its offset in whole TRs, so a volume
    missing from a recording leaves a gap in the indices, as it did in time."""
    return np.rint(volume_offsets(run) / run.tr_s).astype(np.int64)


def _one_pass(
    run: RecordedRun, pace: Pace = "realtime"
) -> tuple[list[tuple[float, str, int]], float]:
    """Items ``(offset s, kind, index)`` of one pass, in order, and the pass period (s):
    the last volume's offset plus one volume interval.

    ``asap``: a marker is placed just before the volume its onset is nearest (the trial
    rule, :func:`rt_recon.protocol.onset_tr`, on the acquisition's own timeline), since
    it will carry that volume's stamp.
    """
    offsets = volume_offsets(run)
    items = [(float(t), "volume", i) for i, t in enumerate(offsets)]
    volumes = range(len(offsets))
    for k, event in enumerate(run.events):
        onset = float(event["onset"])
        if pace == "asap" and len(offsets):
            onset = float(offsets[onset_tr(onset, volumes, offsets)])
        items.append((onset, "marker", k))
    items.sort(key=lambda item: (item[0], item[1] != "marker"))
    step = float(np.median(np.diff(offsets))) if len(offsets) > 1 else run.tr_s
    return items, float(offsets[-1]) + step if len(offsets) else run.tr_s


def _schedule(
    run: RecordedRun, loops: int, pace: Pace = "realtime"
) -> Iterator[tuple[float, str, int, int]]:
    """``(offset s, kind, index, pass)`` for every pass; kinds: start, volume, marker, end."""
    items, period = _one_pass(run, pace)
    passes = count() if loops == 0 else range(loops)
    for k in passes:
        base = k * period
        yield base, "start", 0, k
        for offset, kind, index in items:
            yield base + offset, kind, index, k
        yield base + max(items[-1][0], 0.0), "end", 0, k


class DecoderAck:
    """Acknowledgements from an rt_recon decoder's ZeroMQ publisher (``decoder.latents_endpoint``)
    and, given ``frames_endpoint``, from the renderer's (``renderer.frames_endpoint``).

    A volume counts as taken by the decoder when it published its latents
    (matched on the stream's session and run) or, for volumes it skipped, when
    its status heartbeat's ``volumes`` counter moved past it.

    With ``frames_endpoint`` a volume counts as taken only once the renderer is
    done with its latents too: it published their frame, or the frame of a later
    TR (matched on the latents' ``seq``: a renderer takes the newest latents, so
    every older one is behind it). So an asap replay goes at the renderer's pace;
    with ``window`` 1 the renderer never finds two latents waiting, so it
    renders every TR instead of skipping stale ones (with 2, the decoder's next
    latents can land while the renderer is still publishing and saving the last
    frame). Latents the renderer refuses (another model, wrong shapes) get no
    frame: the next frame moves past them.

    The sockets subscribe on construction; a source that waits for its
    consumers to be ready (``--await-ready``) and nodes that wait for their
    subscribers (these sockets are peers of the publishers, named
    ``replay-ack``) miss no acknowledgement.
    """

    def __init__(
        self,
        endpoint: str,
        session: str,
        run: str,
        curve: SecuritySection | None = None,
        frames_endpoint: str | None = None,
    ):
        import zmq

        from rt_recon.transport.zmq import Subscriber

        self._sub = Subscriber(
            endpoint, [TOPIC_LATENTS, TOPIC_STATUS], curve=curve, name="replay-ack"
        )
        self._frames = (
            None
            if frames_endpoint is None
            else Subscriber(frames_endpoint, [TOPIC_FRAME], curve=curve, name="replay-ack")
        )
        self.session, self.run = session, run
        self._latents = 0
        self._baseline: int | None = None
        self._volumes = 0
        self._unrendered: deque[int] = deque()  # seq of latents the renderer is not done with
        self._rendered_seq = -1  # the seq of the newest frame of this run
        self._poller = zmq.Poller()
        for sub in (self._sub, self._frames):
            if sub is not None:
                self._poller.register(sub.socket, zmq.POLLIN)

    def _ours(self, header: dict) -> bool:
        return header.get("session") == self.session and header.get("run") == self.run

    def consumed(self, timeout: float) -> int:
        self._poller.poll(int(timeout * 1000))  # news from either publisher
        message = self._sub.receive(0.0)
        while message is not None:
            header = message.header
            if message.topic == TOPIC_LATENTS:
                if self._ours(header):
                    self._latents += 1
                    seq = header.get("seq")
                    if isinstance(seq, int) and seq > self._rendered_seq:
                        self._unrendered.append(seq)
            elif header.get("node") == "decoder" and isinstance(header.get("volumes"), int):
                if self._baseline is None:
                    self._baseline = int(header["volumes"])
                self._volumes = int(header["volumes"]) - self._baseline
            message = self._sub.receive(0.0)
        taken = max(self._latents, self._volumes)
        if self._frames is None:
            return taken
        while (frame := self._frames.receive(0.0)) is not None:
            seq = frame.header.get("seq")
            if (
                self._ours(frame.header)
                and isinstance(seq, int)
                and not is_interpolated(frame.header)  # only the TR's own frame acknowledges
            ):
                self._rendered_seq = max(self._rendered_seq, seq)
        while self._unrendered and self._unrendered[0] <= self._rendered_seq:
            self._unrendered.popleft()
        return taken - len(self._unrendered)

    def close(self) -> None:
        self._sub.close()
        if self._frames is not None:
            self._frames.close()


def _wait_for_ack(
    ack: Acknowledger, pushed: int, window: int, timeout: float, stop: threading.Event
) -> None:
    """Block until fewer than ``window`` of the ``pushed`` volumes are unacknowledged."""
    last, last_change = -1, time.monotonic()
    while not stop.is_set():
        taken = ack.consumed(0.05)
        if pushed - taken < window:
            return
        if taken != last:
            last, last_change = taken, time.monotonic()
        elif time.monotonic() - last_change > timeout:
            raise StreamError(
                f"asap replay: the consumer took no volume for {timeout:g} s "
                f"({taken} of {pushed} acknowledged); is it still running?"
            )


def replay(
    run: RecordedRun,
    *,
    name: str,
    source_id: str,
    markers_name: str,
    markers_source_id: str,
    speed: float = 1.0,
    session: str = "replay",
    run_id: str = "01",
    consumer_timeout: float = 60.0,
    stop: threading.Event | None = None,
    buffer_trs: int = 4,
    ready: Callable[[], bool] | None = None,
    loop: int = 1,
    pace: Pace = "realtime",
    ack: Acknowledger | None = None,
    window: int = 2,
) -> ReplayReport:
    """Push every volume of ``run`` at TR pace (divided by ``speed``), events on markers.

    Waits up to ``consumer_timeout`` seconds for an inlet (and for ``ready``,
    if given, to return True) before the first volume, so no volume is sent
    to nobody and no consumer misses the start. ``loop``: passes (0: until
    ``stop``). ``pace="asap"`` needs ``ack`` (see the module doc) and keeps
    at most ``window`` volumes unacknowledged.
    """
    stop = stop or threading.Event()
    if pace not in ("realtime", "asap"):
        raise ConfigError(f"pace must be 'realtime' or 'asap', found {pace!r}")
    if pace == "asap" and ack is None:
        raise ConfigError(
            "an asap replay needs an acknowledgement source (the decoder's latents endpoint): "
            "without one it would overrun the consumer's buffer"
        )
    if loop < 0 or window < 1:
        raise ConfigError(f"loop must be >= 0 and window >= 1, found {loop}, {window}")
    if len(run.volumes) == 0:
        raise StreamError("the run has no volumes to replay")
    meta = VolumeStreamMeta(
        shape=run.shape,
        affine=run.affine,
        tr_s=run.tr_s,
        session=session,
        run=run_id,
        speed=speed,
        pace=pace,
    )
    report = ReplayReport()
    indexes = volume_indexes(run)
    per_pass = int(indexes[-1]) + 1
    with VolumeOutlet(meta, name, source_id, buffer_trs=buffer_trs) as outlet:
        markers = MarkerOutlet(markers_name, markers_source_id)
        log.info("waiting for a consumer of %r (source_id %r)", name, source_id)
        if not _wait_for_consumer(outlet, consumer_timeout, stop) or not _wait_ready(
            ready, consumer_timeout, stop
        ):
            markers.close()
            if stop.is_set():
                return report
            raise StreamError(
                f"stream {name!r}: consumers not connected and ready within {consumer_timeout:g} s"
            )
        log.info(
            "replaying %d volumes, TR %.3f s, speed %g, %s",
            len(run.volumes),
            run.tr_s,
            speed,
            f"{loop} pass(es)" if loop else "looping until stopped",
        )
        t0 = pylsl.local_clock() + 0.05
        finished = True
        # asap: the stamp of the next volume, taken (after its acknowledgement) by the first
        # item that needs it: its markers carry it too, so they get its TR, as in real time
        next_stamp: float | None = None
        for offset, kind, index, k in _schedule(run, loop, pace):
            if pace == "realtime":
                target = t0 + offset / speed
                _wait_until(target, stop)
            elif kind in ("volume", "marker") and next_stamp is None:
                _wait_for_ack(ack, report.n_volumes, window, consumer_timeout, stop)  # type: ignore[arg-type]
                next_stamp = pylsl.local_clock()
            if stop.is_set():
                log.info("replay stopped after %d volumes", report.n_volumes)
                finished = False
                break
            now = pylsl.local_clock()
            if pace == "asap" and kind in ("volume", "marker"):
                now = next_stamp  # type: ignore[assignment]
                if kind == "volume":
                    next_stamp = None
            if kind == "volume":
                # a pass after the first continues the numbering (one long run)
                outlet.push(run.volumes[index], now, int(indexes[index]) + k * per_pass)
                report.n_volumes += 1
                report.push_times.append(now)
                if pace == "realtime":
                    report.lateness.append(now - target)
            elif kind == "marker":
                event = {"type": "event", "run": run_id, "trial": index, **run.events[index]}
                markers.push(event, now)
                report.n_markers += 1
            elif kind == "start":
                start = {
                    "type": "run_start",
                    "run": run_id,
                    "n_volumes": len(run.volumes),
                    "tr": run.tr_s,
                    "speed": speed,
                    "loop": k,
                }
                markers.push(start, now)
            else:  # end of a pass
                end = {"type": "run_end", "run": run_id, "n_volumes": report.n_volumes, "loop": k}
                markers.push(end, now)
                report.loops += 1
        if finished:
            outlet.end_run()  # consumers know the run is over, not lost
            # Keep the outlets up a moment: an inlet with clock sync needs the
            # outlet alive to timestamp the samples it still has buffered.
            time.sleep(_LINGER_S)
        markers.close()
    if report.lateness:
        late = np.array(report.lateness) * 1000
        log.info(
            "replay done: %d volumes, lateness median %.2f ms, max %.2f ms",
            report.n_volumes,
            float(np.median(late)),
            float(late.max()),
        )
    return report
