"""Bad files in an export folder, each named for what it is (issue #15, item 8).

An empty file, a text file named ``.dcm``, a DICOM preamble with nothing
after it, a PAR without its REC (and a REC without its PAR): the reader
finds each one not whole and the bridge waits (a writer may still be adding
to it), then, once it has stayed unchanged for ``give_up`` seconds, reports
it by name with what it is, not as "still incomplete". Synthetic files, so
these run without the shared data; tests/acquire/test_bad_files_scanner_data.py
does the same with real exports.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from rt_recon.acquire._incomplete import IncompleteFileError
from rt_recon.acquire.formats import read_file
from rt_recon.acquire.series import read_series
from rt_recon.errors import DataError
from tests.acquire._enhanced_builder import oblique_affine, write_enhanced, write_slices
from tests.acquire._harness import FakeClock, RunningBridge, wait_until

#: name -> (content, kind of IncompleteFileError, what the bridge reports once given up)
NOT_WHOLE = {
    "empty.dcm": (b"", "empty", "empty.dcm: empty file (0 bytes)"),
    "note.dcm": (
        b"scanner export notes\n",
        "not_dicom",
        "note.dcm: not a DICOM file (21 bytes, text: 'scanner export notes'; "
        "no 'DICM' marker at byte 128)",
    ),
    "preamble.dcm": (
        b"\0" * 128 + b"DICM",
        "preamble_only",
        "preamble.dcm: DICOM preamble only, no data elements (132 bytes)",
    ),
    "Dump-0007.par": (
        b"# a PAR header, its REC never written\n",
        "par_without_rec",
        "Dump-0007.par: PAR header without its REC data file (Dump-0007.rec)",
    ),
    "Dump-0009.rec": (
        b"\0" * 4096,
        "rec_without_par",
        "Dump-0009.rec: REC data without its PAR header (Dump-0009.par)",
    ),
}

#: A text file long enough to hold a DICOM preamble: not DICOM at once, no waiting.
LONG_TEXT = ("junk.dcm", b"this is not a scanner file\n" * 20)


def _write(folder: Path, name: str, content: bytes) -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("name", sorted(NOT_WHOLE))
def test_each_kind_of_bad_file_is_not_whole_yet_and_says_what_it_would_be(tmp_path, name):
    content, kind, what = NOT_WHOLE[name]
    path = _write(tmp_path, name, content)
    with pytest.raises(IncompleteFileError) as info:
        read_file(path)
    assert info.value.kind == kind
    assert info.value.what == what
    assert info.value.given_up(5) == f"{what}, unchanged for 5 s"


def test_a_truncated_file_is_still_incomplete_when_given_up(tmp_path):
    full = write_enhanced(tmp_path / "full.dcm", np.ones((4, 5, 3), np.uint16), np.eye(4))
    cut = _write(tmp_path, "cut.dcm", full.read_bytes()[:-100])
    with pytest.raises(IncompleteFileError) as info:
        read_file(cut)
    assert info.value.kind == "truncated" and info.value.what is None
    assert info.value.given_up(2).startswith("cut.dcm: pixel data has ")
    assert info.value.given_up(2).endswith("; still incomplete after 2 s without a change")


def test_a_text_file_longer_than_a_preamble_is_not_dicom_at_once(tmp_path):
    path = _write(tmp_path, *LONG_TEXT)
    with pytest.raises(DataError) as info:
        read_file(path)
    assert not isinstance(info.value, IncompleteFileError)
    assert str(info.value) == (
        "junk.dcm: not a DICOM file (expected the 'DICM' marker at byte 128, found "
        "b'r fi'; the file starts with text: 'this is not a scanner file this is not \u2026')"
    )


def test_offline_conversion_names_bad_files_for_what_they_are(tmp_path):
    write_enhanced(tmp_path / "vol_001.dcm", np.ones((4, 5, 3), np.uint16), np.eye(4))
    for name in ("empty.dcm", "preamble.dcm"):
        _write(tmp_path, name, NOT_WHOLE[name][0])
    series = read_series(tmp_path)
    assert {p.name: r for p, r in series.unreadable} == {
        name: NOT_WHOLE[name][2] for name in ("empty.dcm", "preamble.dcm")
    }


# ---------------------------------------------------------------- through the bridge


@pytest.fixture
def run11(tmp_path) -> dict[int, Path]:
    """Volumes 1..5 of series 11 (enhanced DICOM), written outside the watch folder."""
    return _series(tmp_path / "run11", "1.2.826.0.1.3680043.8.498.11", 11, seed=11)


@pytest.fixture
def run12(tmp_path) -> dict[int, Path]:
    """Volumes 1..5 of series 12, the same geometry: the next run."""
    return _series(tmp_path / "run12", "1.2.826.0.1.3680043.8.498.12", 12, seed=12)


def _series(folder: Path, uid: str, number: int, seed: int) -> dict[int, Path]:
    folder.mkdir()
    rng = np.random.default_rng(seed)
    out = {}
    for index in range(1, 6):
        data = rng.integers(0, 3000, size=(10, 12, 6)).astype(np.uint16)
        out[index] = write_enhanced(
            folder / f"s{number}_vol_{index:03d}.dcm",
            data,
            oblique_affine(),
            instance=index,
            series_uid=uid,
            series_number=number,
            start=f"20240102103{number % 10}00.000000",
        )
    return out


def _expected(path: Path) -> np.ndarray:
    (volume,) = read_file(path)
    return volume.flat()


def _drop(src: Path, folder: Path) -> Path:
    dest = folder / src.name
    dest.write_bytes(src.read_bytes())
    return dest


def test_each_bad_file_is_reported_by_name_for_what_it_is_and_the_stream_goes_on(
    tmp_path, run11, caplog
):
    watch = tmp_path / "export"
    watch.mkdir()
    caplog.set_level(logging.ERROR, logger="rt_recon.acquire.bridge")
    bad = {name: content for name, (content, _, _) in NOT_WHOLE.items()}
    bad[LONG_TEXT[0]] = LONG_TEXT[1]
    with RunningBridge(watch, give_up=1.0) as bridge:
        _drop(run11[1], watch)
        names = sorted(bad)
        for name in names[:3]:
            _write(watch, name, bad[name])
        _drop(run11[2], watch)
        for name in names[3:]:
            _write(watch, name, bad[name])
        _drop(run11[3], watch)
        _, values = bridge.collect(3)
        wait_until(
            lambda: set(dict(bridge.bridge.report.unreadable)) >= set(bad),
            timeout=15,
            what="every bad file reported",
        )
        report = bridge.stop()
    assert [v.index for v in report.streamed] == [1, 2, 3]
    for got, index in zip(values, (1, 2, 3), strict=True):
        np.testing.assert_array_equal(got, _expected(run11[index]))
    reasons = dict(report.unreadable)
    assert set(reasons) == set(bad)
    for name, (_, _, what) in NOT_WHOLE.items():
        assert reasons[name] == f"{what}, unchanged for 1 s", name
    assert reasons["junk.dcm"].startswith("junk.dcm: not a DICOM file (expected the 'DICM'")
    assert not any("still incomplete" in reason for reason in reasons.values())
    for name in bad:
        assert f"{name} skipped: {name}: " in caplog.text


def test_a_stray_slice_of_another_vendor_and_a_stray_volume_are_reported_not_streamed(
    tmp_path, run11, run12
):
    """A GE slice file and a lone volume of series 12 land among series 11's volumes.

    The fake clock stands still, so series 11 never counts as stopped: the
    strays are held back, whatever the machine's load.
    """
    watch = tmp_path / "export"
    watch.mkdir()
    ge = tmp_path / "ge"
    ge.mkdir()
    rng = np.random.default_rng(3)
    (ge_slice, *_) = write_slices(ge, rng.normal(size=(8, 8, 4, 1)) * 100, oblique_affine())
    with RunningBridge(watch, clock=FakeClock()) as bridge:
        _drop(run11[1], watch)
        _drop(run11[2], watch)
        _, values = bridge.collect(2)
        _drop(ge_slice, watch)
        wait_until(lambda: bridge.bridge.report.foreign, timeout=10, what="the GE slice reported")
        _drop(run12[1], watch)
        wait_until(
            lambda: len(bridge.bridge.report.foreign) == 2, timeout=10, what="series 12 reported"
        )
        for index in (3, 4):
            _drop(run11[index], watch)
        _, got = bridge.collect(2)
        values += got
        report = bridge.stop()
    assert report.series == ["11"]
    assert [v.index for v in report.streamed] == [1, 2, 3, 4]
    for got, index in zip(values, (1, 2, 3, 4), strict=True):
        np.testing.assert_array_equal(got, _expected(run11[index]))
    streaming = "series 11 (SIEMENS enhanced DICOM of series 11) is streaming"
    assert report.foreign == [
        (
            ge_slice.name,
            f"{ge_slice.name}: a GE MEDICAL SYSTEMS slice DICOM of series 5 (one of the 4 "
            f"slices of its volume 1) arrived while {streaming}; not streamed unless its "
            "series goes on (a new run)",
        ),
        (
            run12[1].name,
            f"{run12[1].name}: volume 1 of a SIEMENS enhanced DICOM of series 12 arrived while "
            f"{streaming}; held back: streamed only if its series goes on (a new run), else "
            "not at all",
        ),
    ]
    # at the end, the GE slice's volume is still 1 slice of 4
    assert dict(report.unreadable) == {ge_slice.name: "volume 1: only 1 of 4 slices arrived"}


def test_a_series_that_goes_on_while_the_streaming_one_stopped_is_a_new_run(tmp_path, run11, run12):
    """Two volumes of series 12 with none of series 11 between them: a new run, streamed."""
    watch = tmp_path / "export"
    watch.mkdir()
    with RunningBridge(watch, clock=FakeClock(), consumer_wait=0.0) as bridge:
        for index in (1, 2):
            _drop(run11[index], watch)
        wait_until(lambda: len(bridge.bridge.report.streamed) == 2, 10, "series 11 streamed")
        _drop(run12[1], watch)
        wait_until(lambda: bridge.bridge.report.foreign, 10, "series 12's first volume held")
        assert len(bridge.bridge.report.streamed) == 2
        _drop(run12[2], watch)
        wait_until(lambda: len(bridge.bridge.report.streamed) == 4, 10, "series 12 streamed")
        report = bridge.stop()
    assert report.series == ["11", "12"]
    assert [(v.series, v.index) for v in report.streamed] == [
        ("11", 1),
        ("11", 2),
        ("12", 1),
        ("12", 2),
    ]
    assert [name for name, _ in report.foreign] == [run12[1].name]
    assert report.issues == []


def test_a_series_after_the_streaming_one_stopped_starts_at_once(tmp_path, run11, run12):
    watch = tmp_path / "export"
    watch.mkdir()
    clock = FakeClock()
    with RunningBridge(watch, clock=clock, consumer_wait=0.0) as bridge:
        _drop(run11[1], watch)
        wait_until(lambda: len(bridge.bridge.report.streamed) == 1, 10, "series 11 streamed")
        clock.advance(2.0)  # over two TRs (0.8 s) without a volume: series 11 has stopped
        _drop(run12[1], watch)
        wait_until(lambda: len(bridge.bridge.report.streamed) == 2, 10, "series 12 streamed")
        report = bridge.stop()
    assert [(v.series, v.index) for v in report.streamed] == [("11", 1), ("12", 1)]
    assert report.foreign == []


# ------------------------------------------------------- restarted bridge (issue #15, item 9)


def _restarted(tmp_path, before: list, after: list):
    """A bridge started on a folder holding the files ``before``, then given ``after``:
    ``(stamps, values, report)`` of the ``len(after) + caught-up`` volumes it streamed."""
    watch = tmp_path / "export"
    watch.mkdir()
    for source in before:
        _drop(source, watch)
    with RunningBridge(watch) as bridge:
        for source in after:
            _drop(source, watch)
        n = len(after) + sum(1 for b in before if b.parent == after[0].parent)
        stamps, values = bridge.collect(n)
        report = bridge.stop()
    return stamps, values, report


def test_a_restarted_bridge_catches_up_on_the_series_that_goes_on(tmp_path, run11, run12, caplog):
    """Series 12's run is over; the bridge died during series 11 (volumes 1-3 on disk)."""
    caplog.set_level(logging.WARNING, logger="rt_recon.acquire.bridge")
    before = [run12[1], run12[2], run11[1], run11[2], run11[3]]
    stamps, values, report = _restarted(tmp_path, before, [run11[4], run11[5]])
    assert [(v.series, v.index, v.catch_up) for v in report.streamed] == [
        ("11", 1, True),
        ("11", 2, True),
        ("11", 3, True),
        ("11", 4, False),
        ("11", 5, False),
    ]
    for got, index in zip(values, range(1, 6), strict=True):
        np.testing.assert_array_equal(got, _expected(run11[index]))
    assert np.all(np.diff(stamps) > 0)
    assert report.caught_up() == [1, 2, 3]
    # paced (4 per TR of 0.8 s), so that an inlet buffering a few TRs loses none
    assert np.all(np.diff([v.pushed_at for v in report.streamed[:4]]) >= 0.8 / 4 - 0.02)
    assert report.issues == [] and report.unreadable == []
    assert report.left_alone == {"12": 2}
    assert "catching up on its 3 files" in caplog.text
    assert "series 12: 2 files from before the bridge started were left alone" in caplog.text
    assert "restart the bridge with --existing" in caplog.text
    assert "caught up late [1, 2, 3]" in report.summary()


def test_a_restarted_bridge_leaves_a_finished_series_alone(tmp_path, run11, run12):
    """Series 11 is on disk, but what comes next is series 12: 11 is not streamed."""
    _, values, report = _restarted(tmp_path, [run11[1], run11[2], run11[3]], [run12[1], run12[2]])
    assert [(v.series, v.index, v.catch_up) for v in report.streamed] == [
        ("12", 1, False),
        ("12", 2, False),
    ]
    np.testing.assert_array_equal(values[0], _expected(run12[1]))
    assert report.left_alone == {"11": 3}
    assert report.issues == []  # joined at the start of series 12: nothing missing
