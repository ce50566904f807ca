"""FolderWatcher on real files and real inotify events: each complete file handed out once.

The race these pin down came from CI: a Philips .par was read with its
.rec partner while the .rec's writer still held it open (all its bytes
were there), and the .rec's close event, arriving after, put the pair up
for a second read, which the sequencer then reported as a duplicate.
"""

from __future__ import annotations

import os
from pathlib import Path

import pylsl

from rt_recon.acquire.watch import FolderWatcher


def _names(watcher: FolderWatcher, seconds: float) -> list[str]:
    """Every file handed out within ``seconds`` (waiting the whole time)."""
    deadline = pylsl.local_clock() + seconds
    out: list[str] = []
    while (left := deadline - pylsl.local_clock()) > 0:
        out += [ready.path.name for ready in watcher.wait(left)]
    return out


def _handed_out(watcher: FolderWatcher, expected: list[str], timeout: float = 10.0) -> list[str]:
    """Files handed out until ``expected`` have been (or ``timeout`` s have passed), then for
    0.2 s more, so a second handout of the same file shows."""
    deadline = pylsl.local_clock() + timeout
    out: list[str] = []
    while sorted(out) != sorted(expected) and (left := deadline - pylsl.local_clock()) > 0:
        out += [ready.path.name for ready in watcher.wait(left)]
    return out + _names(watcher, 0.2)


def _watcher(folder: Path) -> FolderWatcher:
    return FolderWatcher(folder, settle_without_close=30.0, rescan_interval=0.2)


def test_a_closed_file_is_handed_out_once(tmp_path):
    with _watcher(tmp_path) as watcher:
        (tmp_path / "a.nii").write_bytes(b"x" * 1000)
        assert _handed_out(watcher, ["a.nii"]) == ["a.nii"]
        watcher.finished(tmp_path / "a.nii")
        assert _names(watcher, 0.5) == []


def test_a_partner_read_before_its_writer_closed_it_is_not_read_again(tmp_path):
    rec = tmp_path / "dump.rec"
    with _watcher(tmp_path) as watcher:
        with rec.open("wb") as fh:
            for _ in range(8):
                fh.write(b"x" * 4096)
                fh.flush()
            # the .par arrives, is read with this .rec (already whole), and both are done
            (tmp_path / "dump.par").write_text("header")
            assert _handed_out(watcher, ["dump.par"]) == ["dump.par"]
            watcher.finished(tmp_path / "dump.par")
            watcher.finished(rec)
        # the .rec's writer lets go only now; its events are handled after the read
        assert _names(watcher, 0.7) == []


def test_a_file_written_again_with_the_same_bytes_and_time_is_read_again(tmp_path):
    path = tmp_path / "a.nii"
    with _watcher(tmp_path) as watcher:
        path.write_bytes(b"x" * 1000)
        assert _handed_out(watcher, ["a.nii"]) == ["a.nii"]
        watcher.finished(path)
        stat = path.stat()
        path.write_bytes(b"x" * 1000)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert _handed_out(watcher, ["a.nii"]) == ["a.nii"]


def test_a_file_tried_before_it_was_closed_is_tried_again_at_its_close(tmp_path):
    path = tmp_path / "a.nii"
    with FolderWatcher(tmp_path, settle_without_close=0.1, rescan_interval=0.2) as watcher:
        with path.open("wb") as fh:
            fh.write(b"x" * 1000)
            fh.flush()
            assert _handed_out(watcher, ["a.nii"]) == ["a.nii"]  # quiet long enough without a close
            watcher.incomplete(path)
            assert _names(watcher, 0.3) == []
        assert _handed_out(watcher, ["a.nii"]) == ["a.nii"]


def test_a_changed_file_is_handed_out_again(tmp_path):
    path = tmp_path / "a.nii"
    with _watcher(tmp_path) as watcher:
        path.write_bytes(b"x" * 1000)
        assert _handed_out(watcher, ["a.nii"]) == ["a.nii"]
        watcher.finished(path)
        path.write_bytes(b"y" * 2000)
        assert _handed_out(watcher, ["a.nii"]) == ["a.nii"]
