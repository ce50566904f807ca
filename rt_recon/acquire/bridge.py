"""The scanner bridge: a real-time export folder in, the LSL volume stream out.

Per file, top to bottom: the watcher hands out a file its writer is done
with -> the file is read (DICOM mosaic / enhanced / slice, PAR/REC, NIfTI) and
checked against its own header (an incomplete one waits for its next change)
-> slices are stacked into volumes -> the sequencer puts each series' volumes
in acquisition order (missing, duplicate, late and out-of-order volumes are
reported) -> each volume is pushed, flattened in the stream's voxel order
(closest canonical RAS+, x fastest), stamped with its acquisition time on the
LSL clock (:mod:`rt_recon.acquire.clock`).

One stream per series, and a series is a run: the first volume of a series
opens its outlet (its shape, affine and TR are the stream's geometry; ``run``
and ``series`` are the series number); every volume carries its acquisition
index (0-based) in the index channel; a new series ends the previous run (the
end-of-run sample), closes its outlet a moment later (so consumers take what
is buffered) and opens a new one under the same name and source id, which
consumers resolve again as a new run (docs/protocol.md 1). A file that cannot be read is reported
with its name and skipped; the stream goes on. The files are never changed
or moved.

Bad files are named for what they are (an empty file, a file that is not
DICOM, a DICOM preamble without data, a PAR without its REC): a file that is
not whole is retried when it changes, and once unchanged for ``give_up``
seconds it is reported with what it is (:class:`IncompleteFileError`'s
``given_up``). A file of another series (or vendor) arriving while a series
streams is a stray: reported by name, with its series and kind and the
series streaming, and held back; it starts a new stream only if its series
goes on (a second volume with none of the streaming series in between) or
the streaming series has stopped (no volume for two TRs). A bridge started
on a folder that already holds files (restarted mid-run) sorts them by
series; when a series goes on, its files already on disk are streamed first,
in order, flagged ``catch_up`` (late); the others are left alone, with advice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import pylsl

from rt_recon.acquire._incomplete import IncompleteFileError
from rt_recon.acquire.clock import AcquisitionClock, ClockMode
from rt_recon.acquire.formats import ReadOptions, identify, read_file, unit_key
from rt_recon.acquire.sequence import SequenceIssue, Sequencer
from rt_recon.acquire.series import natural_key
from rt_recon.acquire.slices import SliceImage, SliceStacker
from rt_recon.acquire.volume import Volume
from rt_recon.acquire.watch import FolderWatcher, Ready, WatchMode
from rt_recon.errors import DataError
from rt_recon.protocol import VolumeStreamMeta
from rt_recon.transport.lsl import VolumeOutlet

log = logging.getLogger(__name__)

#: Seconds the last outlet stays up after the end, so inlets can take what is buffered.
_LINGER_S = 1.0
#: TRs without a volume after which a streaming series counts as stopped (a file of
#: another series then starts a new stream at once instead of being held as a stray).
_STOPPED_AFTER_TRS = 2.0


class ReadyCheck(Protocol):
    """True once the consumers that matter have their inlets on one outlet
    (:class:`rt_recon.nodes.ReadyWatcher` is one)."""

    def __call__(self) -> bool: ...

    def missing(self) -> list[str]:
        """The consumers not on it yet, by name."""
        ...

    def close(self) -> None: ...


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
        consumer_wait: seconds a new series' outlet waits for its consumers
            before its first volume (so they all get volume 1); 0 never waits.
        await_ready: ``await_ready(stream_uid)`` gives the check a new series'
            outlet (LSL uid ``stream_uid``) waits on: the consumers that matter
            (``bridge.await_nodes``: the decoder and the recorder) on it. None:
            any one inlet will do (the second consumer may then miss the first
            volumes, which it flags as missed).
        buffer_trs: LSL outlet buffer, in TRs.
        series: stream only this series (label = series number); None: all.
        watch_mode, poll_interval, settle, give_up: see
            :class:`~rt_recon.acquire.watch.FolderWatcher`.
        include_existing: stream every file already in the folder at start,
            of every series. Otherwise (a restarted bridge) files already
            there are streamed, flagged late, only for a series that goes on
            (its next file arrives); the rest are left alone and reported.
        catch_up_per_tr: volumes per TR when catching up on those: paced, so
            that a consumer whose inlet buffers ``buffer_trs`` volumes and
            takes each in under TR / ``catch_up_per_tr`` loses none; the
            series' new volumes wait behind them.
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
    consumer_wait: float = 30.0
    await_ready: Callable[[str], ReadyCheck] | None = None
    buffer_trs: int = 4
    series: str | None = None
    watch_mode: WatchMode = "events"
    poll_interval: float = 0.05
    settle: float = 0.25
    give_up: float = 5.0
    include_existing: bool = False
    catch_up_per_tr: float = 4.0
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
    catch_up: bool = False  # written before the bridge started: streamed late (restart)


@dataclass
class BridgeReport:
    """Everything the bridge did, for the operator's log and for tests."""

    streamed: list[StreamedVolume] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason)
    issues: list[SequenceIssue] = field(default_factory=list)
    series: list[str] = field(default_factory=list)
    incomplete_reads: int = 0  # reads that found a file not yet whole (retried later)
    #: (file name, message): files of another series (or vendor) than the one streaming,
    #: held back and not streamed unless their series went on.
    foreign: list[tuple[str, str]] = field(default_factory=list)
    #: series label -> files already in the folder at start that were not streamed.
    left_alone: dict[str, int] = field(default_factory=dict)

    def latencies(self, steady: bool = False) -> np.ndarray:
        """Seconds from file complete to LSL push, per streamed volume.

        ``steady=True`` leaves out volumes that waited for a stream's first
        consumer (``BridgeOptions.consumer_wait``) and volumes caught up after
        a restart (written before the bridge started), which is not bridge latency.
        """
        return np.array(
            [
                v.pushed_at - v.complete_at
                for v in self.streamed
                if not (steady and (v.queued or v.catch_up))
            ]
        )

    def caught_up(self) -> list[int]:
        """Indices of volumes written before the bridge started, streamed late (restart)."""
        return [v.index for v in self.streamed if v.catch_up]

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
            + (f"; caught up late {self.caught_up()}" if self.caught_up() else "")
            + (f"; strays {[name for name, _ in self.foreign]}" if self.foreign else "")
            + (f"; left alone {self.left_alone}" if self.left_alone else "")
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
            series=first.series_label,
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
            self._await_consumers(options, stop)
        # volumes complete before this waited for a consumer, not for the bridge
        waited = pylsl.local_clock() - opened
        self.ready_at = pylsl.local_clock() if waited > 0.01 else -np.inf

    def _await_consumers(self, options: BridgeOptions, stop: threading.Event) -> None:
        """Hold the first volume until the consumers that matter are on this outlet, or
        ``consumer_wait`` seconds pass (then stream anyway: a consumer that joins later
        flags the volumes before it as missed, by their acquisition indices)."""
        check = options.await_ready(self.outlet.uid) if options.await_ready else None
        deadline = time.monotonic() + options.consumer_wait
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                if check is None:
                    if self.outlet.wait_for_consumers(0.2):
                        return
                elif check():
                    log.info("series %s: its consumers are on the stream", self.label)
                    return
                else:
                    stop.wait(0.05)
            if not stop.is_set():
                who = "no inlet" if check is None else " and ".join(check.missing())
                log.warning(
                    "series %s: %s on %r after %.0f s; streaming anyway (a consumer that "
                    "joins later flags the volumes before it as missed)",
                    self.label,
                    who if check is None else f"{who} not",
                    options.name,
                    options.consumer_wait,
                )
        finally:
            if check is not None:
                check.close()

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
        self.outlet.push(volume.flat(), stamp, index=volume.index - 1)  # 0-based on the wire
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
        self._closing: list[tuple[_SeriesStream, float]] = []  # ended runs' outlets, close-by
        self._skipped_series: set[str] = set()
        self._incomplete: dict[Path, IncompleteFileError] = {}  # why each file is not whole
        self._on_disk: dict[str, list[Path]] = {}  # series -> its files from before the start
        self._on_disk_labels: dict[str, str] = {}
        self._catch_up_keys: set[tuple[str, int]] = set()  # (series, index) read from those
        self._strays: dict[str, tuple[list[tuple[Volume, float]], int]] = {}  # _hold_stray
        self._warned_series: set[str] = set()  # series whose strays were warned about
        self._kinds: dict[str, str] = {}  # series -> what its files are (for messages)
        self._n_taken = 0  # volumes of the streaming series taken so far
        self._last_taken = -np.inf  # when the last of them was taken (bridge clock)
        self._stream_source: Path | None = None  # first file of the streaming series
        self._paced: deque[tuple[_SeriesStream, Volume]] = deque()  # behind a catch-up
        self._next_paced = 0.0  # when the next caught-up volume may go (time.monotonic)
        self._last_new = clock()
        self._stop = threading.Event()
        #: Set once the folder is being watched (files written from then on are seen by events).
        self.watching = threading.Event()

    def run(self, stop: threading.Event | None = None) -> BridgeReport:
        self._stop = stop or threading.Event()
        if self._joined_late:
            self._sort_existing()
        with self._watcher:
            self.watching.set()
            try:
                while not self._stop.is_set() and not self._finished():
                    for ready in self._watcher.wait(self._wait_timeout()):
                        self._handle(ready)
                    for path in self._watcher.stalled():
                        self._give_up(path)
                    if self._stream is not None:
                        for volume in self._stream.sequencer.due(self._clock()):
                            self._push(self._stream, volume)
                    self._release_paced()
                    self._close_due()
            finally:
                self._close_stream(linger=True)
                self._close_due(everything=True)
        for first, index, have, need in self._stacker.pending_summary():
            self._unreadable(first.name, f"volume {index}: only {have} of {need} slices arrived")
        self._report_left_alone()
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
            self._incomplete[path] = exc  # what it is, if it never changes again
            log.debug("%s", exc)
            self._watcher.incomplete(path)
            return
        except DataError as exc:
            self._incomplete.pop(path, None)
            self._watcher.failed(path)
            self._unreadable(path.name, str(exc))
            return
        self._last_new = self._clock()
        for item in items:
            sources = (item.source,) if isinstance(item, SliceImage) else item.sources
            for source in sources:
                self._watcher.finished(source)
                self._incomplete.pop(source, None)
            if item.series in self._on_disk and self._may_catch_up(item.series):
                self._catch_up(item.series)
            if isinstance(item, SliceImage):
                self._check_stray_slice(item)
                volume = self._stacker.add(item)
            else:
                volume = item
            if volume is not None:
                self._take(volume, ready.complete_at)

    def _take(self, volume: Volume, complete_at: float, start: int | None = None) -> None:
        """Stream ``volume`` (in order), hold it back as a stray, or ignore it (``--series``).

        ``start``: the index a new stream starts at (the first caught-up volume).
        """
        wanted = self.options.series
        if wanted is not None and volume.series_label != str(wanted):
            if volume.series not in self._skipped_series:
                self._skipped_series.add(volume.series)
                log.warning(
                    "%s: a %s, not series %s (--series); ignored",
                    volume.name,
                    self._describe(volume.series, volume.sources),
                    wanted,
                )
            return
        if self._stream is not None and self._stream.key != volume.series:
            held = self._hold_stray(volume, complete_at)
            if held is None:
                return
            self._close_stream(linger=False)
            for earlier, when in held:
                self._into_stream(earlier, when, None)
        self._into_stream(volume, complete_at, start)

    def _into_stream(self, volume: Volume, complete_at: float, start: int | None) -> None:
        if self._stream is None:
            first = start if start is not None else (None if self._joined_late else 1)
            try:
                self._stream = _SeriesStream(volume, self.options, first, self._stop)
            except DataError as exc:
                self._unreadable(volume.name, str(exc))
                return
            self._joined_late = False
            self._n_taken = 0
            self._stream_source = volume.sources[0] if volume.sources else None
            self.report.series.append(volume.series_label)
        stream = self._stream
        stream.complete_at[volume.index] = complete_at
        self._n_taken += 1
        self._last_taken = self._clock()
        for ready in stream.sequencer.add(volume, self._clock()):
            self._push(stream, ready)

    def _push(self, stream: _SeriesStream, volume: Volume) -> None:
        """Push ``volume`` now, or queue it: caught-up volumes go out paced
        (``catch_up_per_tr``), and whatever comes after them waits its turn."""
        if self._paced or (volume.series, volume.index) in self._catch_up_keys:
            self._paced.append((stream, volume))
            self._release_paced()
            return
        self._push_now(stream, volume)

    def _release_paced(self, everything: bool = False) -> None:
        """Push queued volumes whose turn has come (``everything``: all of them, now).

        Every queued volume is paced, the new ones behind the caught-up ones too,
        so a consumer still working through the catch-up gets no burst.
        """
        while self._paced:
            stream, volume = self._paced[0]
            now = time.monotonic()
            if not everything and now < self._next_paced:
                return
            self._paced.popleft()
            self._push_now(stream, volume)
            speed = max(self.options.speed, 1e-9)
            gap = stream.meta.tr_s / speed / max(self.options.catch_up_per_tr, 1e-9)
            # counted from the end of this push, so that a slow push (the first opens the
            # outlet's connection) does not shorten the gap before the next one
            self._next_paced = time.monotonic() + gap

    def _push_now(self, stream: _SeriesStream, volume: Volume) -> None:
        """Push ``volume``; a volume caught up after a restart is flagged so in the report."""
        before = len(self.report.streamed)
        stream.push(volume, self.report)
        key = (volume.series, volume.index)
        if key in self._catch_up_keys and len(self.report.streamed) > before:
            self._catch_up_keys.discard(key)
            self.report.streamed[-1] = replace(self.report.streamed[-1], catch_up=True)
            log.info(
                "series %s: volume %d (%s) caught up: written before the bridge started, "
                "streamed late",
                volume.series_label,
                volume.index,
                volume.name,
            )

    # ------------------------------------------------------ strays of another series
    def _stopped(self) -> bool:
        """True when no series streams, or the streaming one has had no volume for 2 TRs."""
        stream = self._stream
        if stream is None:
            return True
        quiet = _STOPPED_AFTER_TRS * stream.meta.tr_s / max(self.options.speed, 1e-9)
        return self._clock() - self._last_taken >= quiet

    def _hold_stray(self, volume: Volume, complete_at: float) -> list[tuple[Volume, float]] | None:
        """A volume of another series than the streaming one: None while it is held back as a
        stray, else the held volumes of its series that start its stream before it.

        Its series replaces the streaming one when the streaming one has stopped,
        or when this is its second volume with none of the streaming series
        in between (a new run began). A lone stray stays held (the last one of
        its series only) and is reported; it is never streamed.
        """
        held, since = self._strays.get(volume.series, ([], -1))
        if self._stopped():
            self._strays.pop(volume.series, None)
            return [(v, c) for v, c in held if v.index < volume.index]
        if held and since == self._n_taken and all(v.index != volume.index for v, _ in held):
            del self._strays[volume.series]
            log.warning(
                "series %s goes on (volumes %s) and series %s has stopped meanwhile: a new "
                "run; its stream replaces series %s's",
                volume.series_label,
                [v.index for v, _ in held] + [volume.index],
                self._stream.label if self._stream else "?",
                self._stream.label if self._stream else "?",
            )
            return held
        self._strays[volume.series] = ([(volume, complete_at)], self._n_taken)
        self._stray(
            volume.series,
            volume.name,
            f"volume {volume.index} of a {self._describe(volume.series, volume.sources)}",
            "held back: streamed only if its series goes on (a new run), else not at all",
        )
        return None

    def _check_stray_slice(self, image: SliceImage) -> None:
        """Report a slice file of another series arriving while a series streams."""
        stream = self._stream
        if stream is None or stream.key == image.series or self._stopped():
            return
        wanted = self.options.series
        if wanted is not None and image.series_label != str(wanted):
            return  # ignored by --series (reported once its volume is complete)
        self._stray(
            image.series,
            image.source.name,
            f"a {self._describe(image.series, (image.source,))} (one of the "
            f"{image.n_slices} slices of its volume {image.volume_index})",
            "not streamed unless its series goes on (a new run)",
        )

    def _stray(self, series: str, name: str, what: str, fate: str) -> None:
        """Report a file of ``series`` (not the streaming one): ``name: what ...; fate``."""
        stream = self._stream
        streaming = "?"
        if stream is not None:
            kind = self._describe(stream.key, (self._stream_source,) if self._stream_source else ())
            streaming = f"series {stream.label} ({kind})"
        message = f"{name}: {what} arrived while {streaming} is streaming; {fate}"
        self.report.foreign.append((name, message))
        if series in self._warned_series:
            log.info("%s", message)
        else:
            self._warned_series.add(series)
            log.warning("%s", message)

    def _describe(self, series: str, sources: tuple[Path, ...]) -> str:
        """What the files of ``series`` are, e.g. ``GE MEDICAL SYSTEMS slice DICOM of series 6``."""
        if series not in self._kinds:
            found = identify(sources[0]) if sources else None
            self._kinds[series] = str(found) if found is not None else "scanner file"
        return self._kinds[series]

    # ------------------------------------------------------- restart: files on disk
    def _sort_existing(self) -> None:
        """Sort the files in the folder at start by series (headers only) and say what
        becomes of them: a series that goes on is caught up, the others are left alone."""
        began = time.monotonic()
        files = self._watcher.existing
        unknown = 0
        for path in files:
            found = identify(path)
            if found is None:
                unknown += 1
                continue
            self._on_disk.setdefault(found.series, []).append(path)
            self._on_disk_labels[found.series] = found.label
            self._kinds.setdefault(found.series, str(found))
        counts = [f"series {self._on_disk_labels[k]}: {len(v)}" for k, v in self._on_disk.items()]
        if unknown:
            counts.append(f"{unknown} without a readable header")
        folder = self._watcher.folder
        log.warning(
            "%d files were already in %s when the bridge started (%s; sorted in %.1f s). A "
            "series that goes on is caught up: when its next file arrives, its files already "
            "here are streamed first, in order, flagged late. The others are left alone; to "
            "stream them, restart with --existing (every file, every series), or convert one "
            "offline: rt-recon convert %s OUT.nii.gz --series N",
            len(files),
            folder,
            ", ".join(counts),
            time.monotonic() - began,
            folder,
        )

    def _may_catch_up(self, series: str) -> bool:
        """A series on disk from before the start is caught up when it would start the stream."""
        wanted = self.options.series
        if wanted is not None and self._on_disk_labels.get(series) != str(wanted):
            return False
        return self._stream is None or self._stopped()

    def _catch_up(self, series: str) -> None:
        """Stream the files of ``series`` already in the folder at start, in order, flagged late:
        the series goes on, so the bridge was restarted in the middle of it."""
        files = self._on_disk.pop(series)
        label = self._on_disk_labels[series]
        log.warning(
            "series %s goes on: catching up on its %d files from before the bridge started "
            "(streamed first, in order, flagged late)",
            label,
            len(files),
        )
        volumes: list[tuple[Volume, float]] = []
        units: set[Path] = set()
        for path in sorted(files, key=natural_key):
            unit = unit_key(path)
            if unit in units or not self._watcher.is_done(path):
                continue  # read with its partner, or changed since: it comes as a new file
            units.add(unit)
            try:
                items = read_file(path, self.options.read)
            except IncompleteFileError as exc:
                self._incomplete[path] = exc
                self._watcher.incomplete(path)  # reported if it stays so for give_up
                continue
            except DataError as exc:
                self._watcher.failed(path)
                self._unreadable(path.name, str(exc))
                continue
            complete = _written_at(path)
            for item in items:
                sources = (item.source,) if isinstance(item, SliceImage) else item.sources
                for source in sources:
                    self._watcher.finished(source)
                volume = self._stacker.add(item) if isinstance(item, SliceImage) else item
                if volume is not None and volume.series == series:
                    volumes.append((volume, complete))
        volumes.sort(key=lambda pair: pair[0].index)
        for volume, complete in volumes:
            self._catch_up_keys.add((volume.series, volume.index))
            self._take(volume, complete, start=volumes[0][0].index)

    def _report_left_alone(self) -> None:
        folder = self._watcher.folder
        for series, files in self._on_disk.items():
            label = self._on_disk_labels[series]
            self.report.left_alone[label] = len(files)
            log.warning(
                "series %s: %d files from before the bridge started were left alone (the "
                "series did not go on). To stream them, restart the bridge with --existing, "
                "or convert them offline: rt-recon convert %s OUT.nii.gz --series %s",
                label,
                len(files),
                folder,
                label,
            )

    def _close_stream(self, linger: bool) -> None:
        if self._stream is None:
            return
        stream, self._stream = self._stream, None
        for volume in stream.sequencer.flush():
            self._push(stream, volume)
        self._release_paced(everything=True)
        self.report.issues.extend(stream.sequencer.issues)
        stream.outlet.end_run()  # consumers know the run is over, not lost
        # Consumers need the outlet a moment longer to take (and clock-correct) what they
        # have buffered: a closed outlet loses it. At the end, wait; between series, close
        # it later while the next series streams.
        self._closing.append((stream, time.monotonic() + _LINGER_S))
        if linger:
            time.sleep(_LINGER_S)
        self._close_due(everything=linger)

    def _close_due(self, everything: bool = False) -> None:
        now = time.monotonic()
        for item in [c for c in self._closing if everything or c[1] <= now]:
            self._closing.remove(item)
            item[0].outlet.close()
            log.info("series %s: stream closed", item[0].label)

    def _give_up(self, path: Path) -> None:
        """``path`` stayed not whole, unchanged, for ``give_up`` s: report what it is."""
        seconds = self.options.give_up
        exc = self._incomplete.pop(path, None)
        if exc is not None:
            reason = exc.given_up(seconds)
        else:
            reason = f"{path.name}: still incomplete after {seconds:g} s without a change"
        self._unreadable(path.name, reason)

    def _unreadable(self, name: str, reason: str) -> None:
        self.report.unreadable.append((name, reason))
        log.error("%s skipped: %s", name, reason)

    def _wait_timeout(self) -> float:
        timeout = 0.1
        if self._stream is not None:
            deadline = self._stream.sequencer.deadline()
            if deadline is not None:
                timeout = min(timeout, max(deadline - self._clock(), 0.0))
        if self._paced:
            timeout = min(timeout, max(self._next_paced - time.monotonic(), 0.0))
        return timeout

    def _finished(self) -> bool:
        if self._paced:
            return False  # caught-up volumes still to go
        o = self.options
        if o.max_volumes is not None and len(self.report.streamed) >= o.max_volumes:
            return True
        if o.idle_stop is not None and self.report.streamed:
            return self._clock() - self._last_new >= o.idle_stop
        return False


def run_bridge(folder, options: BridgeOptions, stop: threading.Event | None = None) -> BridgeReport:
    """Stream ``folder`` until ``stop`` is set; see :class:`ScannerBridge`."""
    return ScannerBridge(folder, options).run(stop)


def _written_at(path: Path) -> float:
    """When ``path`` was last written, on the LSL clock (from its modification time; never
    later than now, as a share's clock may run ahead)."""
    now = pylsl.local_clock()
    try:
        age = time.time() - path.stat().st_mtime
    except OSError:
        return now
    return now - max(age, 0.0)
