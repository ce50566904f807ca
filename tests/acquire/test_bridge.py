"""The bridge end to end: files written into a folder as a scanner does -> a real LSL inlet.

Synthetic enhanced DICOM volumes (built with pydicom) make these tests run
without the shared data; tests/acquire/test_bridge_scanner_data.py does the
same with real scanner exports.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pylsl
import pytest

from rt_recon.acquire.formats import read_file
from tests.acquire._enhanced_builder import oblique_affine, write_enhanced
from tests.acquire._harness import FakeClock, RunningBridge, wait_until

SERIES_UID = "1.2.826.0.1.3680043.8.498.1"

#: The writer's pause between the two halves of a file: well over the poll mode's
#: ``settle`` (0.2 s here), so a poll does look at the half file, and well under
#: the events mode's ``settle_without_close`` (2 s), so events wait for the close.
_WRITER_PAUSE_S = 1.0


@pytest.fixture
def volumes(tmp_path) -> dict[int, Path]:
    """Seven single-volume enhanced DICOM files (XA-style), written outside the watch folder."""
    source = tmp_path / "source"
    source.mkdir()
    rng = np.random.default_rng(7)
    affine = oblique_affine()
    out = {}
    for index in range(1, 8):
        data = rng.integers(0, 3000, size=(10, 12, 6)).astype(np.uint16)
        out[index] = write_enhanced(
            source / f"vol_{index:03d}.dcm", data, affine, instance=index, series_uid=SERIES_UID
        )
    return out


def _expected(path: Path) -> np.ndarray:
    (volume,) = read_file(path)
    return volume.flat()


def _drop(src: Path, dest: Path) -> None:
    dest.write_bytes(src.read_bytes())


@pytest.mark.parametrize(
    ("mode", "reopen"), [("events", False), ("events", True), ("poll", False), ("poll", True)]
)
def test_a_file_written_in_two_halves_with_a_pause_is_read_only_when_complete(
    tmp_path, volumes, mode, reopen
):
    watch = tmp_path / "export"
    watch.mkdir()
    content = volumes[1].read_bytes()
    half = len(content) // 2
    with RunningBridge(watch, watch_mode=mode, settle=0.2, consumer_wait=20.0) as bridge:
        target = watch / "vol_001.dcm"
        if reopen:  # the writer closes after the first half and opens again to append
            target.write_bytes(content[:half])
            time.sleep(_WRITER_PAUSE_S)  # the scenario itself: a writer that pauses
            with target.open("ab") as fh:
                fh.write(content[half:])
        else:  # one open handle, a pause between the halves
            with target.open("wb") as fh:
                fh.write(content[:half])
                fh.flush()
                time.sleep(_WRITER_PAUSE_S)  # the scenario itself: a writer that pauses
                fh.write(content[half:])
        second_half_done = pylsl.local_clock()
        _drop(volumes[2], watch / "vol_002.dcm")
        _, values = bridge.collect(2)
        report = bridge.stop()
    assert len(values) == 2
    np.testing.assert_array_equal(values[0], _expected(volumes[1]))
    np.testing.assert_array_equal(values[1], _expected(volumes[2]))
    assert report.unreadable == []
    first = report.streamed[0]
    assert first.index == 1 and first.pushed_at >= second_half_done
    if mode == "events" and not reopen:
        assert report.incomplete_reads == 0  # never even opened before the close


def test_a_corrupt_file_is_reported_by_name_and_the_stream_goes_on(tmp_path, volumes, caplog):
    watch = tmp_path / "export"
    watch.mkdir()
    caplog.set_level(logging.ERROR, logger="rt_recon.acquire.bridge")
    with RunningBridge(watch, reorder_wait=0.3) as bridge:
        _drop(volumes[1], watch / "vol_001.dcm")
        _drop(volumes[2], watch / "vol_002.dcm")
        (watch / "vol_003.dcm").write_bytes(b"\x00" * 128 + b"NOPE" + bytes(range(256)) * 20)
        truncated = volumes[4].read_bytes()
        (watch / "vol_004.dcm").write_bytes(truncated[: len(truncated) * 2 // 3])  # never finished
        for index in (5, 6):
            _drop(volumes[index], watch / f"vol_{index:03d}.dcm")
        stamps, values = bridge.collect(4)
        # the truncated file is given up once unchanged for give_up (2 s)
        wait_until(
            lambda: "vol_004.dcm" in dict(bridge.bridge.report.unreadable),
            timeout=10,
            what="vol_004.dcm reported unreadable",
        )
        report = bridge.stop()
    assert [v.index for v in report.streamed] == [1, 2, 5, 6]
    for got, index in zip(values, (1, 2, 5, 6), strict=True):
        np.testing.assert_array_equal(got, _expected(volumes[index]))
    assert np.all(np.diff(stamps) > 0)
    unreadable = dict(report.unreadable)
    assert set(unreadable) == {"vol_003.dcm", "vol_004.dcm"}
    assert "not a DICOM file" in unreadable["vol_003.dcm"]
    assert "incomplete" in unreadable["vol_004.dcm"]
    assert report.issues_of("missing") == [3, 4]
    assert "vol_003.dcm" in caplog.text and "vol_004.dcm" in caplog.text


def test_missing_duplicate_late_and_out_of_order_volumes_are_reported(tmp_path, volumes):
    """The reorder wait runs on a fake clock: it runs out when the test advances it, never before.

    The files are named in the order they are written, so the watcher hands
    them out in that order however it batches them (events come in order, a
    batch goes in name order): the sequencer sees the arrival order set here.
    """
    watch = tmp_path / "export"
    watch.mkdir()
    clock = FakeClock()
    with RunningBridge(watch, clock=clock, reorder_wait=0.5) as bridge:
        _drop(volumes[1], watch / "01_vol_001.dcm")
        _, values = bridge.collect(1)
        _drop(volumes[2], watch / "02_vol_002.dcm")
        _drop(volumes[4], watch / "03_vol_004.dcm")  # held: 3 is missing
        _drop(volumes[3], watch / "04_vol_003.dcm")  # after 4, within the wait: put back in order
        _drop(volumes[2], watch / "05_copy_of_002.dcm")  # the same volume again
        _drop(volumes[6], watch / "06_vol_006.dcm")  # held: 5 is missing
        stamps, got = bridge.collect(4, timeout=1.0)
        values += got
        # 2, 3, 4 only: 6 waits for 5 while the fake clock stands still, although
        # the real time passed (over 1 s) is twice the reorder wait
        assert len(stamps) == 3
        # the reorder wait runs out: 5 is given up, 6 goes (at the first step, unless
        # the bridge had not taken 6 yet when the clock moved: then at the next)
        got = []
        for _ in range(10):
            clock.advance(0.5)
            _, got = bridge.collect(1, timeout=1.0)
            if got:
                break
        values += got
        _drop(volumes[5], watch / "07_vol_005.dcm")  # late: its slot was given up
        _drop(volumes[7], watch / "08_vol_007.dcm")
        _, got = bridge.collect(1)  # 7: so 5 was handled by now
        values += got
        report = bridge.stop()
    assert [v.index for v in report.streamed] == [1, 2, 3, 4, 6, 7]
    for got, index in zip(values, (1, 2, 3, 4, 6, 7), strict=True):
        np.testing.assert_array_equal(got, _expected(volumes[index]))
    assert report.issues_of("out_of_order") == [3]
    assert report.issues_of("duplicate") == [2]
    assert report.issues_of("missing") == [5]
    assert report.issues_of("late") == [5]
    late = next(i for i in report.issues if i.kind == "late")
    assert late.file == "07_vol_005.dcm"
    assert (watch / "07_vol_005.dcm").is_file()  # the data stays on disk


def test_files_already_in_the_folder_are_caught_up_when_their_series_goes_on(tmp_path, volumes):
    """A restarted bridge: what is on disk waits for the series' next file, then goes first
    (flagged late); ``include_existing`` streams it all at once. More in test_bad_files.py."""
    watch = tmp_path / "export"
    watch.mkdir()
    for index in (1, 2):
        _drop(volumes[index], watch / f"vol_{index:03d}.dcm")
    with RunningBridge(watch) as bridge:
        _drop(volumes[3], watch / "vol_003.dcm")
        _drop(volumes[4], watch / "vol_004.dcm")
        _, values = bridge.collect(4)
        report = bridge.stop()
    assert [(v.index, v.catch_up) for v in report.streamed] == [
        (1, True),
        (2, True),
        (3, False),
        (4, False),
    ]
    for got, index in zip(values, (1, 2, 3, 4), strict=True):
        np.testing.assert_array_equal(got, _expected(volumes[index]))
    assert report.issues == []
    with RunningBridge(watch, include_existing=True, idle_stop=1.0) as bridge:
        _, values = bridge.collect(4)
        report = bridge.stop()
    assert [(v.index, v.catch_up) for v in report.streamed] == [(i, False) for i in (1, 2, 3, 4)]
    assert len(values) == 4


def test_stream_metadata_carries_the_canonical_geometry(tmp_path, volumes):
    watch = tmp_path / "export"
    watch.mkdir()
    with RunningBridge(watch, session="s9") as bridge:
        _drop(volumes[1], watch / "vol_001.dcm")
        meta = bridge.inlet().meta
        bridge.collect(1)
        bridge.stop()
    (volume,) = read_file(volumes[1])
    assert meta.shape == volume.shape
    np.testing.assert_allclose(meta.affine, volume.affine, atol=1e-9)
    assert meta.tr_s == pytest.approx(0.8) and meta.run == "11" and meta.session == "s9"


def test_nifti_volumes_written_one_per_file_are_streamed_in_canonical_order(tmp_path):
    import nibabel as nib

    from rt_recon.acquire.formats import ReadOptions

    watch = tmp_path / "export"
    watch.mkdir()
    rng = np.random.default_rng(5)
    affine = np.diag([-2.0, 2.0, 3.0, 1.0])  # LAS: the stream must flip x
    data = rng.normal(size=(5, 6, 4, 3)).astype(np.float32)
    with RunningBridge(watch, read=ReadOptions(tr_s=1.5)) as bridge:
        for t in range(3):
            nib.save(nib.Nifti1Image(data[..., t], affine), watch / f"vol_{t + 1:04d}.nii.gz")
        meta = bridge.inlet().meta
        _, values = bridge.collect(3)
        report = bridge.stop()
    assert [v.index for v in report.streamed] == [1, 2, 3]
    assert meta.tr_s == 1.5 and meta.affine[0, 0] == 2.0  # reoriented to RAS+
    for t, got in enumerate(values):
        np.testing.assert_array_equal(got, np.ravel(data[::-1, :, :, t], order="F"))
