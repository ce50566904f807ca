"""A recording that cannot be written (a full disk, a file size limit): a StorageError naming
the file and the cause, and a file that keeps every entry flushed before, readable.

The writers run in subprocesses: under a real RLIMIT_FSIZE (EFBIG) and on a real, small
tmpfs (ENOSPC); h5py is not trusted to survive a failed write in the test process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from rt_recon.errors import DataError
from rt_recon.record.recording import RecordingReader, RecordingShapes, RecordingWriter
from tests._disk import file_size_limit, small_tmpfs
from tests.conftest import REPO
from tests.record.test_recording_truncated import _expected

WRITER = textwrap.dedent(
    """
    import json, sys
    from rt_recon.errors import StorageError
    from tests.record.test_recording_truncated import _append_tr, SHAPES
    from rt_recon.record.recording import RecordingWriter
    try:
        rec = RecordingWriter(sys.argv[1], SHAPES, attrs={"config": {"a": 1}})
    except StorageError as exc:
        print(json.dumps({"created": False, "message": str(exc), "errno": exc.errno}))
        raise SystemExit(0)
    t = 0
    try:
        while t < 100_000:
            _append_tr(rec, t)
            rec.flush()
            t += 1
    except StorageError as exc:
        report = {"created": True, "tr": t, "message": str(exc), "errno": exc.errno,
                  "committed": rec.committed}
        try:  # every later call refuses with the same error
            rec.add_status({"after": "failure"})
        except StorageError as again:
            report["again"] = str(again)
        rec.close()
        print(json.dumps(report))
    """
)


def _write_until_it_fails(path, preexec_fn=None) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", WRITER, str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,  # it imports tests.record
        timeout=120,
        preexec_fn=preexec_fn,
    )
    assert result.returncode == 0, result.stderr[-3000:]  # no crash, no raw traceback
    lines = result.stdout.splitlines()
    assert lines, f"the writer never failed: {result.stderr[-2000:]}"
    return json.loads(lines[-1])


def _assert_keeps_every_flushed_entry(path, report: dict) -> None:
    committed = report["committed"]
    assert committed["volumes"] == report["tr"] > 3  # everything up to the TR in flight
    with RecordingReader(path) as reader:
        values, times = reader.volumes()
        np.testing.assert_array_equal(times, np.arange(committed["volumes"]))
        assert all(np.all(v == i) for i, v in enumerate(values))
        headers, z, _ = reader.latents()
        assert [h["tr"] for h in headers] == list(range(committed["latents"]))
        assert np.all(z[:, 0, 0, 0] == np.arange(committed["latents"]))
        frame_headers, images = reader.frames()
        assert len(frame_headers) == committed["frames"]
        assert np.all(images[:, 0, 0, 0] == np.arange(committed["frames"]) % 256)
        assert reader.status() == [_expected("status", i)[0] for i in range(committed["status"])]
        assert reader.attr("config") == {"a": 1}


@pytest.mark.slow
@pytest.mark.parametrize("limit", [60_000, 150_000, 333_333])
def test_a_file_size_limit_is_a_clear_error_and_the_file_keeps_what_was_flushed(tmp_path, limit):
    path = tmp_path / "rec.h5"
    report = _write_until_it_fails(path, file_size_limit(limit))
    assert report["created"] and report["errno"] == 27
    message = report["message"]
    assert message.startswith(f"cannot write the recording {path}: File too large (EFBIG)")
    assert "file size limit" in message
    committed = report["committed"]
    assert f"keeps the {committed['volumes']} volumes, {committed['latents']} latents" in message
    assert report["again"] == message
    _assert_keeps_every_flushed_entry(path, report)


@pytest.mark.slow
def test_a_file_that_cannot_even_be_created_is_a_clear_error(tmp_path):
    path = tmp_path / "rec.h5"
    report = _write_until_it_fails(path, file_size_limit(100))
    assert not report["created"]
    assert report["message"].startswith(f"cannot create the recording {path}: File too large")
    assert not path.exists()  # nothing recorded, nothing left to refuse a retry


@pytest.mark.slow
def test_a_full_disk_is_a_clear_error_and_the_file_keeps_what_was_flushed(tmp_path):
    with small_tmpfs(tmp_path / "disk", "400k") as disk:
        path = disk / "rec.h5"
        report = _write_until_it_fails(path)
        assert report["created"] and report["errno"] == 28
        assert report["message"].startswith(
            f"cannot write the recording {path}: No space left on device (ENOSPC): the disk is full"
        )
        _assert_keeps_every_flushed_entry(path, report)


def test_a_refused_entry_leaves_no_trace(tmp_path):
    path = tmp_path / "rec.h5"
    shapes = RecordingShapes(n_channels=10, z_shape=(2, 3), c_shape=(4,), image_shape=(2, 2, 3))
    with RecordingWriter(path, shapes) as rec:
        rec.add_latents({"tr": 0}, np.zeros((2, 3)), np.zeros(4))
        with pytest.raises(ValueError, match=r"latents/c: expected shape \(4,\), found \(5,\)"):
            rec.add_latents({"tr": 1}, np.ones((2, 3)), np.zeros(5))
        rec.add_latents({"tr": 2}, np.full((2, 3), 2.0), np.full(4, 2.0))
    with RecordingReader(path) as reader:
        headers, z, c = reader.latents()
    assert [h["tr"] for h in headers] == [0, 2]
    assert z[1].tolist() == np.full((2, 3), 2.0).tolist() and c[1].tolist() == [2.0] * 4


def _three_volumes(path, dtype=np.float32) -> None:
    shapes = RecordingShapes(n_channels=6, z_shape=(1,), c_shape=(1,), image_shape=(1, 1, 3))
    with RecordingWriter(path, shapes) as rec:
        for t in range(3):
            rec.add_volume(np.arange(6, dtype=dtype) + 10 * t, float(t))


def test_volumes_of_an_int16_stream_pass_their_crc(tmp_path):
    path = tmp_path / "rec.h5"
    _three_volumes(path, np.int16)  # the CRC is of the int16 volume as received
    with RecordingReader(path) as reader:
        values, times = reader.volumes()
    assert values.dtype == np.float32 and times.tolist() == [0.0, 1.0, 2.0]
    assert values[2].tolist() == [20.0, 21.0, 22.0, 23.0, 24.0, 25.0]


def test_a_volume_that_fails_its_crc_is_never_returned(tmp_path):
    tail, inside = tmp_path / "tail.h5", tmp_path / "inside.h5"
    _three_volumes(tail)
    _three_volumes(inside)
    with h5py.File(tail, "r+") as f:
        f["volumes/values"][2, 0] = -1.0  # the last volume damaged: left out
    with h5py.File(inside, "r+") as f:
        f["volumes/values"][1, 0] = -1.0  # one inside: the file is damaged
    with RecordingReader(tail) as reader:
        values, times = reader.volumes()
        assert times.tolist() == [0.0, 1.0] and len(values) == 2
    with (
        RecordingReader(inside) as reader,
        pytest.raises(DataError, match=rf"{inside}: volume 1 does not match its CRC-32"),
    ):
        reader.volumes()


def test_a_value_h5py_cannot_convert_leaves_no_trace(tmp_path):
    path = tmp_path / "rec.h5"
    shapes = RecordingShapes(n_channels=10, z_shape=(2, 3), c_shape=(4,), image_shape=(2, 2, 3))
    with RecordingWriter(path, shapes) as rec:
        rec.add_latents({"tr": 0}, np.zeros((2, 3)), np.zeros(4))
        with pytest.raises((TypeError, ValueError)):
            rec.add_latents({"tr": 1}, np.ones((2, 3)), np.array(["a", "b", "c", "d"], object))
        rec.add_latents({"tr": 2}, np.full((2, 3), 2.0), np.full(4, 2.0))
    with RecordingReader(path) as reader:
        headers, z, c = reader.latents()
    assert [h["tr"] for h in headers] == [0, 2]
    assert z[1].tolist() == np.full((2, 3), 2.0).tolist() and c[1].tolist() == [2.0] * 4
