"""Watch a scanner's export folder and hand out files once their writer is done with them.

Two ways to learn that a file is finished (``mode``):

``events`` (default)
    The operating system's file events through ``watchdog`` (inotify on
    Linux): a file is ready when its writer closes it (IN_CLOSE_WRITE) or
    renames it into the folder. A file that changes without a close event
    (written from another machine onto a share) is ready once unchanged for
    ``settle_without_close`` seconds, and a rescan every ``rescan_interval``
    seconds finds files no event announced (inotify does not see writes made
    by another machine on a network share).
``poll``
    No events: the folder is listed every ``poll_interval`` seconds and a
    file is ready once its size and modification time have not changed for
    ``settle`` seconds. For network shares (SMB/NFS), where events miss files.

Neither way can prove a file is whole (a writer may close and reopen it), so
the reader checks the file against its own header; a file found incomplete
is handed out again only after it changes (:meth:`FolderWatcher.incomplete`),
and listed by :meth:`FolderWatcher.stalled` once unchanged for ``give_up``
seconds. All times are LSL clock seconds.
"""

from __future__ import annotations

import logging
import os
import queue
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pylsl
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from rt_recon.acquire.formats import classify
from rt_recon.errors import DataError

log = logging.getLogger(__name__)

WatchMode = Literal["events", "poll"]
WATCH_MODES: tuple[WatchMode, ...] = ("events", "poll")

Status = Literal["pending", "taken", "attempted", "done", "failed"]


@dataclass
class Ready:
    """A file handed out: ``path``, and when it was found complete (LSL clock, s)."""

    path: Path
    complete_at: float


@dataclass
class _Tracked:
    size: int
    mtime_ns: int
    changed_at: float
    closed_at: float | None = None
    evented: bool = False  # a file event mentioned it (so a close event is expected)
    status: Status = "pending"


class _Handler(FileSystemEventHandler):
    def __init__(self, sink: queue.SimpleQueue):
        self._sink = sink

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        if event.event_type == "moved":
            self._sink.put(("closed", os.fsdecode(event.dest_path), pylsl.local_clock()))
        elif event.event_type in ("created", "modified", "closed", "deleted"):
            self._sink.put((event.event_type, os.fsdecode(event.src_path), pylsl.local_clock()))


class FolderWatcher:
    """Hands out complete files of one folder (not its subfolders), each once per change.

    Use as a context manager; call :meth:`wait` in a loop and tell the
    watcher what became of each file (:meth:`finished`, :meth:`incomplete`,
    :meth:`failed`).

    Args:
        folder: the export folder.
        mode: ``"events"`` or ``"poll"`` (module doc).
        poll_interval: seconds between listings in poll mode.
        settle: seconds a file must stay unchanged in poll mode.
        settle_without_close: seconds in events mode for a file that changed
            but was never closed by a local writer.
        rescan_interval: seconds between safety listings in events mode.
        give_up: seconds an incomplete file may stay unchanged before
            :meth:`stalled` lists it.
        include_existing: hand out files already in the folder at start
            (else they are taken as done and listed in :attr:`existing`: a
            bridge restarted mid-run decides what to do with them).
        accept: which files to consider (default: scanner files, see
            :func:`rt_recon.acquire.formats.classify`).
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        mode: WatchMode = "events",
        poll_interval: float = 0.05,
        settle: float = 0.25,
        settle_without_close: float = 2.0,
        rescan_interval: float = 1.0,
        give_up: float = 5.0,
        include_existing: bool = False,
        accept: Callable[[Path], bool] | None = None,
    ):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DataError(f"watch folder not found: {self.folder} (expected a directory)")
        if mode not in WATCH_MODES:
            raise ValueError(f"watch mode must be one of {WATCH_MODES}, found {mode!r}")
        self.mode = mode
        self.poll_interval = poll_interval
        self.settle = settle
        self.settle_without_close = settle_without_close
        self.rescan_interval = rescan_interval if mode == "events" else poll_interval
        self.give_up = give_up
        self._accept = accept or (lambda p: classify(p) is not None)
        self._files: dict[Path, _Tracked] = {}
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._observer: Observer | None = None
        self._next_scan = 0.0
        self._scan(pylsl.local_clock(), initial=not include_existing)
        #: Files already in the folder at start and taken as done (``include_existing=False``),
        #: in name order: a bridge restarted mid-run reads those of a series that goes on.
        self.existing: list[Path] = [] if include_existing else sorted(self._files)

    # ------------------------------------------------------------ lifecycle
    def start(self) -> FolderWatcher:
        if self.mode == "events" and self._observer is None:
            observer = Observer()
            observer.schedule(_Handler(self._events), str(self.folder), recursive=False)
            observer.daemon = True
            observer.start()
            self._observer = observer
            # A file may have appeared between the first listing and the observer's start.
            self._scan(pylsl.local_clock(), initial=False)
        log.info("watching %s (%s mode)", self.folder, self.mode)
        return self

    def close(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def __enter__(self) -> FolderWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------- handing out
    def wait(self, timeout: float) -> list[Ready]:
        """Files ready now, waiting up to ``timeout`` seconds for the first."""
        deadline = pylsl.local_clock() + timeout
        while True:
            now = pylsl.local_clock()
            self._drain(now)
            if now >= self._next_scan:
                self._scan(now, initial=False)
            ready = self._collect(now)
            remaining = deadline - now
            if ready or remaining <= 0:
                return ready
            nap = min(remaining, max(self._next_scan - now, 0.0), self._next_settle(now))
            try:
                event = self._events.get(timeout=max(nap, 0.001))
            except queue.Empty:
                continue
            self._apply(event)

    def finished(self, path: Path) -> None:
        """``path`` was read (or belongs to a unit that was): never hand it out again unchanged.

        The file is looked at again first: a partner read before its own
        events were handled (the .rec of a .par, checked whole against the
        header while its writer had not yet closed it) is taken as it is now,
        so those late events are not news about it.
        """
        self._observe(path, pylsl.local_clock())
        self._set(path, "done")

    def incomplete(self, path: Path) -> None:
        """``path`` is not whole yet: hand it out again when it changes."""
        self._set(path, "attempted")

    def failed(self, path: Path) -> None:
        """``path`` is unreadable and was reported: hand it out again only if it changes."""
        self._set(path, "failed")

    def is_done(self, path: Path) -> bool:
        """True if ``path`` was marked finished since it was handed out (e.g. with its PAR/REC
        partner), so it need not be read again."""
        tracked = self._files.get(path)
        return tracked is not None and tracked.status == "done"

    def stalled(self) -> list[Path]:
        """Incomplete files unchanged for ``give_up`` seconds (each listed once, then failed)."""
        now = pylsl.local_clock()
        out = []
        for path, tracked in self._files.items():
            if tracked.status == "attempted" and now - tracked.changed_at >= self.give_up:
                tracked.status = "failed"
                out.append(path)
        return out

    @property
    def n_tracked(self) -> int:
        return len(self._files)

    # ------------------------------------------------------------- internals
    def _set(self, path: Path, status: Status) -> None:
        tracked = self._files.get(path)
        if tracked is not None:
            tracked.status = status

    def _drain(self, now: float) -> None:
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            self._apply(event)

    def _apply(self, event: tuple[str, str, float]) -> None:
        kind, name, when = event
        path = Path(name)
        if path.parent != self.folder or not self._accept(path):
            return
        if kind == "deleted":
            self._files.pop(path, None)
            return
        changed = self._observe(path, when)
        tracked = self._files.get(path)
        if tracked is None:
            return
        tracked.evented = True
        if kind == "closed":
            closed_before = tracked.closed_at is not None
            tracked.closed_at = when
            if not changed and self._read_again_on_close(tracked.status, closed_before):
                tracked.status = "pending"

    @staticmethod
    def _read_again_on_close(status: Status, closed_before: bool) -> bool:
        """Whether a close event that changed nothing calls for another read.

        A file tried before its writer closed it (``attempted``, ``failed``)
        gets its read now. A ``done`` file is read again only if it had been
        closed before: then this close is a second write of the same bytes
        with the same time. A ``done`` file closed for the first time was read
        whole before its writer let go of it (a PAR/REC partner): nothing new.
        """
        if status in ("attempted", "failed"):
            return True
        return status == "done" and closed_before

    def _observe(self, path: Path, now: float, initial: bool = False) -> bool:
        """Stat ``path`` and record a change; True if it changed (or is new)."""
        try:
            st = path.stat()
        except FileNotFoundError:
            self._files.pop(path, None)
            return False
        tracked = self._files.get(path)
        if tracked is None:
            status: Status = "done" if initial else "pending"
            self._files[path] = _Tracked(st.st_size, st.st_mtime_ns, now, status=status)
            return True
        if (st.st_size, st.st_mtime_ns) == (tracked.size, tracked.mtime_ns):
            return False
        tracked.size, tracked.mtime_ns = st.st_size, st.st_mtime_ns
        tracked.changed_at = now
        tracked.closed_at = None
        if tracked.status in ("done", "failed", "attempted"):
            tracked.status = "pending"
        return True

    def _scan(self, now: float, initial: bool) -> None:
        self._next_scan = now + self.rescan_interval
        try:
            entries = list(os.scandir(self.folder))
        except OSError as exc:
            log.warning("cannot list %s: %s", self.folder, exc)
            return
        present = set()
        for entry in entries:
            path = Path(entry.path)
            if not entry.is_file() or not self._accept(path):
                continue
            present.add(path)
            self._observe(path, now, initial)
        for gone in set(self._files) - present:
            del self._files[gone]
        if initial and self._files:
            log.info(
                "%d files already in %s at start are not handed out (include_existing=False)",
                len(self._files),
                self.folder,
            )

    def _is_ready(self, tracked: _Tracked, now: float) -> bool:
        if tracked.status != "pending":
            return False
        if tracked.closed_at is not None:
            return True
        quiet = now - tracked.changed_at
        if self.mode == "poll" or not tracked.evented:
            return quiet >= self.settle
        return quiet >= self.settle_without_close

    def _collect(self, now: float) -> list[Ready]:
        ready = []
        for path, tracked in sorted(self._files.items()):
            if self._is_ready(tracked, now):
                # a last look: a file that changed (or went) since is not done
                if self._observe(path, now) or path not in self._files:
                    continue
                tracked.status = "taken"
                complete = tracked.closed_at if tracked.closed_at is not None else now
                ready.append(Ready(path, complete))
        return ready

    def _next_settle(self, now: float) -> float:
        waits = [self.rescan_interval]
        for tracked in self._files.values():
            if tracked.status == "pending" and tracked.closed_at is None:
                need = (
                    self.settle
                    if (self.mode == "poll" or not tracked.evented)
                    else (self.settle_without_close)
                )
                waits.append(max(tracked.changed_at + need - now, 0.0))
        return min(waits)
