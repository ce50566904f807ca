"""The scanner bridge: a real-time export folder in, the LSL volume stream out.

Per file, top to bottom: the watcher hands out a file its writer is done
with -> the file is read (DICOM mosaic / enhanced / slice, PAR/REC, NIfTI) and
checked against its own header (an incomplete one waits for its next change)
-> slices are stacked into volumes -> the sequencer puts each series' volumes
in acquisition order (missing, duplicate, late and out-of-order volumes are
reported) -> each volume is pushed, flattened in the stream's voxel order
(closest canonical RAS+, x fastest), stamped with its acquisition time on the
LSL clock (:mod:`rt_recon.acquire.clock`).

One stream per series: the first volume of a series opens its outlet (its
shape, affine and TR are the stream's geometry); a new series closes the
previous outlet and opens a new one under the same name and source id, so a
consumer re-resolves between runs. A file that cannot be read is reported
with its name and skipped; the stream goes on. The files are never changed
or moved.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pylsl

from rt_recon.acquire._incomplete import IncompleteFileError
from rt_recon.acquire.clock import AcquisitionClock, ClockMode
from rt_recon.acquire.formats import ReadOptions, read_file
from rt_recon.acquire.sequence import SequenceIssue, Sequencer
from rt_recon.acquire.slices import SliceImage, SliceStacker
from rt_recon.acquire.volume import Volume
from rt_recon.acquire.watch import FolderWatcher, Ready, WatchMode
from rt_recon.errors import DataError
from rt_recon.protocol import VolumeStreamMeta
from rt_recon.transport.lsl import VolumeOutlet

log = logging.getLogger(__name__)

#: Seconds the last outlet stays up after the end, so inlets can take what is buffered.
_LINGER_S = 1.0


@dataclass(frozen=True)
class BridgeOptions:
    """How the bridge reads, orders, stamps and streams.

    Attributes:
        name, source_id: the LSL volume stream's name and source id.
        session: session id written in the stream's metadata.
        read: slices per volume, Philips image type, TR override.
        clock: how acquisition times map to the LSL clock (``anchored``,
            ``synced``, ``arrival``; see :mod:`rt_recon.acquire.clock`).
        speed: how much faster than real time the files arrive (1 at a
            scanner; a simulator's speed otherwise); also the stream's speed.
        reorder_wait: seconds a volume after a gap waits for the gap to fill.
        consumer_wait: seconds a new series' outlet waits for an inlet before
            its first volume (so a waiting decoder gets volume 1); 0 never waits.
        buffer_trs: LSL outlet buffer, in TRs.
        series: stream only this series (label = series number); None: all.
        watch_mode, poll_interval, settle, give_up, include_existing: see
            :class:`~rt_recon.acquire.watch.FolderWatcher`.
        idle_stop: stop once this many seconds pass without a new file after
            at least one volume was streamed (None: run until stopped).
        max_volumes: stop after this many volumes (None: no limit).
    """

    name: str = "rt_recon_volumes"
    source_id: str = "rt_recon_volumes_scanner"
    session: str = "scanner"
    read: ReadOptions = field(default_factory=ReadOptions)
    clock: ClockMode = "anchored"
    speed: float = 1.0
    reorder_wait: float = 0.3
    consumer_wait: float = 10.0
    buffer_trs: int = 4
    series: str | None = None
    watch_mode: WatchMode = "events"
    poll_interval: float = 0.05
    settle: float = 0.25
    give_up: float = 5.0
    include_existing: bool = False
    idle_stop: float | None = None
    max_volumes: int | None = None


@dataclass(frozen=True)
class StreamedVolume:
    """What happened to one streamed volume (times on the LSL clock, seconds)."""

    series: str
    index: int
    file: str
    timestamp: float  # the sample's LSL timestamp (acquisition time)
    complete_at: float  # when its (last) file was found complete
    pushed_at: float  # when it was pushed
    queued: bool = False  # complete before its stream had a consumer (it waited for one)


@dataclass
class BridgeReport:
    """Everything the bridge did, for the operator's log and for tests."""

    streamed: list[StreamedVolume] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason)
    issues: list[SequenceIssue] = field(default_factory=list)
    series: list[str] = field(default_factory=list)
    incomplete_reads: int = 0  # reads that found a file not yet whole (retried later)

    def latencies(self, steady: bool = False) -> np.ndarray:
        """Seconds from file complete to LSL push, per streamed volume.

        ``steady=True`` leaves out volumes that waited for a stream's first
        consumer (``BridgeOptions.consumer_wait``), which is not bridge latency.
        """
        return np.array(
            [v.pushed_at - v.complete_at for v in self.streamed if not (steady and v.queued)]
        )

    def issues_of(self, kind: str) -> list[int]:
        return [i.index for i in self.issues if i.kind == kind]

    def summary(self) -> str:
        lat = self.latencies(steady=True) * 1000
        lat_text = f", latency median {np.median(lat):.1f} ms" if len(lat) else ""
        return (
            f"{len(self.streamed)} volumes streamed from series {self.series}{lat_text}; "
            f"missing {self.issues_of('missing')}, duplicates {self.issues_of('duplicate')}, "
            f"late {self.issues_of('late')}, out of order {self.issues_of('out_of_order')}, "
            f"unreadable {[name for name, _ in self.unreadable]}"
        )


class _SeriesStream:
    """The outlet, clock and sequencer of one series."""

    def __init__(
        self, first: Volume, options: BridgeOptions, next_index: int | None, stop: threading.Event
    ):
        tr_s = options.read.tr_s or first.tr_s
        if tr_s is None:
            raise DataError(
                f"{first.name}: no repetition time in the header of series "
                f"{first.series_label}; pass --tr SECONDS"
            )
        self.key = first.series
        self.label = first.series_label
        self.meta = VolumeStreamMeta(
            shape=first.shape,
            affine=first.affine,
            tr_s=tr_s,
            session=options.session,
            run=first.series_label,
            speed=options.speed,
        )
        self.sequencer = Sequencer(next_index, options.reorder_wait)
        self.clock = AcquisitionClock(options.clock, tr_s, options.speed)
        self.complete_at: dict[int, float] = {}
        self._last_stamp = -np.inf
        self._warned_affine = False
        self.outlet = VolumeOutlet(self.meta, options.name, options.source_id, options.buffer_trs)
        log.info(
            "series %s: streaming %s voxels, TR %.3f s as %r (source_id %r)",
            self.label,
            self.meta.shape,
            tr_s,
            options.name,
            options.source_id,
        )
        opened = pylsl.local_clock()
        if options.consumer_wait > 0:
            deadline = time.monotonic() + options.consumer_wait
            while not stop.is_set() and time.monotonic() < deadline:
                if self.outlet.wait_for_consumers(0.2):
                    break
            else:
                if not stop.is_set():
                    log.warning(
                        "no inlet on %r after %.0f s; streaming anyway",
                        options.name,
                        options.consumer_wait,
                    )
        # volumes complete before this waited for a consumer, not for the bridge
        waited = pylsl.local_clock() - opened
        self.ready_at = pylsl.local_clock() if waited > 0.01 else -np.inf

    def push(self, volume: Volume, report: BridgeReport) -> None:
        if volume.shape != self.meta.shape:
            reason = (
                f"volume {volume.index} has shape {volume.shape}, the stream of series "
                f"{self.label} has {self.meta.shape}; not streamed"
            )
            report.unreadable.append((volume.name, reason))
            log.error("%s: %s", volume.name, reason)
            return
        if not self._warned_affine and np.abs(volume.affine - self.meta.affine).max() > 1e-3:
            self._warned_affine = True
            log.warning(
                "series %s: volume %d's affine differs from the stream's (prospective motion "
                "correction?); the stream keeps the first volume's geometry",
                self.label,
                volume.index,
            )
        complete = self.complete_at.pop(volume.index, pylsl.local_clock())
        stamp = self.clock.stamp(volume, complete)
        if stamp <= self._last_stamp:  # stamps of one stream must increase
            stamp = self._last_stamp + 1e-6
        self._last_stamp = stamp
        self.outlet.push(volume.flat(), stamp)
        pushed = pylsl.local_clock()
        report.streamed.append(
            StreamedVolume(
                self.label,
                volume.index,
                volume.name,
                stamp,
                complete,
                pushed,
                complete < self.ready_at,
            )
        )
        log.debug("series %s: volume %d pushed (%s)", self.label, volume.index, volume.name)


class ScannerBridge:
    """Watch a folder and stream what the scanner writes there (see the module doc).

    ``run(stop)`` blocks until ``stop`` is set (or ``idle_stop`` /
    ``max_volumes`` end it) and returns the :class:`BridgeReport`.

    ``clock`` (seconds, LSL clock by default) is the "now" of the bridge's
    time decisions: the sequencer's reorder wait (when a gap is given up) and
    ``idle_stop``. Tests pass a fake clock to drive them without waiting. What
    is measured stays on the LSL clock: when a file was found complete (the
    watcher), when a volume was pushed, and so the stamps and latencies.
    """

    def __init__(
        self,
        folder,
        options: BridgeOptions = BridgeOptions(),
        clock: Callable[[], float] = pylsl.local_clock,
    ):
        self.options = options
        self._clock = clock
        self.report = BridgeReport()
        self._watcher = FolderWatcher(
            folder,
            mode=options.watch_mode,
            poll_interval=options.poll_interval,
            settle=options.settle,
            give_up=options.give_up,
            include_existing=options.include_existing,
        )
        self._joined_late = not options.include_existing and self._watcher.n_tracked > 0
        self._stacker = SliceStacker()
        self._stream: _SeriesStream | None = None
        self._skipped_series: set[str] = set()
        self._last_new = clock()
        self._stop = threading.Event()
        #: Set once the folder is being watched (files written from then on are seen by events).
        self.watching = threading.Event()

    def run(self, stop: threading.Event | None = None) -> BridgeReport:
        self._stop = stop or threading.Event()
        with self._watcher:
            self.watching.set()
            try:
                while not self._stop.is_set() and not self._finished():
                    for ready in self._watcher.wait(self._wait_timeout()):
                        self._handle(ready)
                    for path in self._watcher.stalled():
                        self._unreadable(
                            path.name,
                            f"still incomplete after {self.options.give_up:g} s without a change",
                        )
                    if self._stream is not None:
                        for volume in self._stream.sequencer.due(self._clock()):
                            self._stream.push(volume, self.report)
            finally:
                self._close_stream(linger=True)
        for first, index, have, need in self._stacker.pending_summary():
            self._unreadable(first.name, f"volume {index}: only {have} of {need} slices arrived")
        log.info("bridge stopped: %s", self.report.summary())
        return self.report

    # --------------------------------------------------------------- steps
    def _handle(self, ready: Ready) -> None:
        path = ready.path
        if self._watcher.is_done(path):
            return  # read already with its partner (the .par of a .rec)
        try:
            items = read_file(path, self.options.read)
        except IncompleteFileError as exc:
            self.report.incomplete_reads += 1
            log.debug("%s", exc)
            self._watcher.incomplete(path)
            return
        except DataError as exc:
            self._watcher.failed(path)
            self._unreadable(path.name, str(exc))
            return
        self._last_new = self._clock()
        for item in items:
            sources = (item.source,) if isinstance(item, SliceImage) else item.sources
            for source in sources:
                self._watcher.finished(source)
            volume = self._stacker.add(item) if isinstance(item, SliceImage) else item
            if volume is not None:
                self._take(volume, ready.complete_at)

    def _take(self, volume: Volume, complete_at: float) -> None:
        wanted = self.options.series
        if wanted is not None and volume.series_label != str(wanted):
            if volume.series not in self._skipped_series:
                self._skipped_series.add(volume.series)
                log.info("series %s is not series %s; ignored", volume.series_label, wanted)
            return
        if self._stream is None or self._stream.key != volume.series:
            self._close_stream(linger=False)
            try:
                self._stream = _SeriesStream(
                    volume, self.options, None if self._joined_late else 1, self._stop
                )
            except DataError as exc:
                self._unreadable(volume.name, str(exc))
                return
            self._joined_late = False
            self.report.series.append(volume.series_label)
        stream = self._stream
        stream.complete_at[volume.index] = complete_at
        for ready in stream.sequencer.add(volume, self._clock()):
            stream.push(ready, self.report)

    def _close_stream(self, linger: bool) -> None:
        if self._stream is None:
            return
        stream, self._stream = self._stream, None
        for volume in stream.sequencer.flush():
            stream.push(volume, self.report)
        self.report.issues.extend(stream.sequencer.issues)
        if linger:
            time.sleep(_LINGER_S)  # inlets with clock sync need the outlet for buffered samples
        stream.outlet.close()
        log.info("series %s: stream closed", stream.label)

    def _unreadable(self, name: str, reason: str) -> None:
        self.report.unreadable.append((name, reason))
        log.error("%s skipped: %s", name, reason)

    def _wait_timeout(self) -> float:
        timeout = 0.1
        if self._stream is not None:
            deadline = self._stream.sequencer.deadline()
            if deadline is not None:
                timeout = min(timeout, max(deadline - self._clock(), 0.0))
        return timeout

    def _finished(self) -> bool:
        o = self.options
        if o.max_volumes is not None and len(self.report.streamed) >= o.max_volumes:
            return True
        if o.idle_stop is not None and self.report.streamed:
            return self._clock() - self._last_new >= o.idle_stop
        return False


def run_bridge(folder, options: BridgeOptions, stop: threading.Event | None = None) -> BridgeReport:
    """Stream ``folder`` until ``stop`` is set; see :class:`ScannerBridge`."""
    return ScannerBridge(folder, options).run(stop)
