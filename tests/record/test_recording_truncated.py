"""A recording cut short (bytes chopped off its end) opens with every complete entry or fails
with a DataError naming the file: never a raw h5py error, never a wrong value, never a hang.

The reading runs in a subprocess with a timeout, because the failure this guards against
includes HDF5's SWMR reader retrying a bad checksum for up to an hour. It reports what it
read as plain numbers; every assertion is here.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zlib

import numpy as np
import pytest

from rt_recon.record.recording import RecordingReader, RecordingShapes, RecordingWriter

SHAPES = RecordingShapes(n_channels=500, z_shape=(4, 8, 8), c_shape=(6, 5), image_shape=(16, 16, 3))
N_TRS = 40

#: Fractions of the file kept, and a few cuts in absolute bytes (inside the superblock).
FRACTIONS = [0.03, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99]
HEAD_CUTS = [0, 5, 20, 47, 100]
TAIL_CUTS = [1, 16, 200, 2000]  # bytes chopped off the end


def _write(path, stop_after: int = N_TRS) -> None:
    with RecordingWriter(path, SHAPES, attrs={"config": {"a": 1}}) as rec:
        for t in range(stop_after):
            _append_tr(rec, t)
            rec.flush()


def _append_tr(rec: RecordingWriter, t: int) -> None:
    rec.add_volume(np.full(SHAPES.n_channels, t, np.float32), float(t))
    if t % 3 == 0:
        rec.add_marker({"type": "event", "trial": t // 3}, float(t))
    rec.add_latents({"tr": t}, np.full(SHAPES.z_shape, t, np.float32), np.zeros(SHAPES.c_shape))
    rec.add_frame({"tr": t}, np.full(SHAPES.image_shape, t % 256, np.uint8))
    rec.add_status({"node": "decoder", "tr": t})


def _expected(group: str, i: int) -> list:
    """The fingerprint (see READER) of entry ``i`` of ``group`` as it was written."""
    if group == "volumes":
        return [float(i), float(i), float(i), zlib.crc32(np.full(SHAPES.n_channels, i, np.float32))]
    if group == "markers":
        return [{"type": "event", "trial": i}, float(3 * i)]
    if group == "latents":
        return [{"tr": i}, float(i), float(i), 0.0, 0.0]
    if group == "frames":
        return [{"tr": i}, i % 256, i % 256]
    return [{"node": "decoder", "tr": i}]


READER = textwrap.dedent(
    """
    import json, sys, zlib
    from rt_recon.errors import RtReconError
    from rt_recon.record.recording import RecordingReader

    def fingerprints(reader, group):
        if group == "volumes":
            values, times = reader.volumes()
            return [[float(v.min()), float(v.max()), float(t), zlib.crc32(v)]
                    for v, t in zip(values, times)]
        if group == "markers":
            return [[e, s] for e, s in reader.markers()]
        if group == "latents":
            headers, z, c = reader.latents()
            return [[h, float(a.min()), float(a.max()), float(b.min()), float(b.max())]
                    for h, a, b in zip(headers, z, c)]
        if group == "frames":
            headers, images = reader.frames()
            return [[h, int(i.min()), int(i.max())] for h, i in zip(headers, images)]
        return [[s] for s in reader.status()]

    def failure(exc):
        return {"error": type(exc).__name__, "message": str(exc),
                "ours": isinstance(exc, RtReconError)}

    for path in sys.argv[1:]:
        report = {"path": path}
        try:
            reader = RecordingReader(path)
        except Exception as exc:
            report["open"] = failure(exc)
        else:
            report["truncated"] = reader.truncated
            report["config"] = reader.attr("config")
            for group in ("volumes", "markers", "latents", "frames", "status"):
                try:
                    report[group] = fingerprints(reader, group)
                except Exception as exc:
                    report[group] = failure(exc)
            reader.close()
        print(json.dumps(report), flush=True)
    """
)


def _read_in_subprocess(paths: list) -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-c", READER, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,  # a hang (SWMR retrying a bad checksum) fails here
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"] for r in reports] == [str(p) for p in paths]
    return reports


def _cut_copies(source, tmp_path) -> list:
    size = source.stat().st_size
    cuts = sorted({int(size * f) for f in FRACTIONS} | set(HEAD_CUTS))
    cuts += [size - k for k in TAIL_CUTS]
    paths = []
    for cut in cuts:
        path = tmp_path / f"cut-{cut:08d}.h5"
        shutil.copyfile(source, path)
        with path.open("r+b") as fh:
            fh.truncate(cut)
        paths.append(path)
    return paths


def _check(report: dict, size_of: dict, full_size: int) -> dict[str, int]:
    """Assert one truncated file's report; returns complete entries per group read."""
    path = report["path"]

    def assert_clear(failure: dict) -> None:
        assert failure["error"] == "DataError" and failure["ours"], failure
        assert path in failure["message"], failure  # names the file
        assert "Traceback" not in failure["message"]

    if "open" in report:
        assert_clear(report["open"])
        message = report["open"]["message"]
        assert "truncated" in message or "cut short" in message or "empty" in message, message
        return {}
    assert report["truncated"] == [size_of[path], full_size]
    assert report["config"] == {"a": 1}
    counts = {}
    for group in ("volumes", "markers", "latents", "frames", "status"):
        got = report[group]
        if isinstance(got, dict):
            assert_clear(got)
            assert "truncated" in got["message"]
            continue
        # Whatever is returned is exactly the first entries written: a complete prefix.
        assert got == [_expected(group, i) for i in range(len(got))], (path, group)
        counts[group] = len(got)
    return counts


@pytest.mark.slow
def test_a_closed_recording_cut_short_reads_complete_entries_or_fails_clearly(tmp_path):
    source = tmp_path / "full.h5"
    _write(source)
    full_size = source.stat().st_size
    paths = _cut_copies(source, tmp_path)
    size_of = {str(p): p.stat().st_size for p in paths}
    reports = _read_in_subprocess([source, *paths])

    whole = reports[0]
    assert whole["truncated"] is None
    assert len(whole["volumes"]) == N_TRS and len(whole["frames"]) == N_TRS

    counts = [_check(r, size_of, full_size) for r in reports[1:]]
    by_cut = dict(zip([size_of[str(p)] for p in paths], counts, strict=True))
    # Cut inside the superblock: refused, with what is wrong.
    for cut in HEAD_CUTS[:4]:
        assert by_cut[cut] == {}
    # Cut near the end: almost everything is still there, and read.
    assert by_cut[full_size - 1]["volumes"] == N_TRS
    assert by_cut[full_size - 2000]["volumes"] >= N_TRS - 2
    # The more is cut, the less is read, never more.
    volumes = [c.get("volumes", 0) for _, c in sorted(by_cut.items())]
    assert volumes == sorted(volumes)
    assert sum(1 for c in counts if c.get("volumes")) >= len(counts) // 2


CRASHING_WRITER = textwrap.dedent(
    """
    import sys
    from tests.record.test_recording_truncated import _append_tr, SHAPES
    from rt_recon.record.recording import RecordingWriter
    rec = RecordingWriter(sys.argv[1], SHAPES, attrs={"config": {"a": 1}})
    t = 0
    while True:
        _append_tr(rec, t)
        rec.flush()
        if t == 20:
            print("ready", flush=True)
        t += 1
    """
)


@pytest.mark.slow
def test_a_crashed_writers_file_cut_short_reads_complete_entries_or_fails_clearly(
    node_processes, tmp_path
):
    source = tmp_path / "crashed.h5"
    writer = node_processes.python("writer", "-c", CRASHING_WRITER, source)  # imports this module
    writer.wait_for_line("^ready$", timeout=60)
    time.sleep(0.5)  # the moment of the kill, in the middle of some write
    writer.send_signal(signal.SIGKILL)  # the SWMR writer never closes the file
    assert writer.wait(timeout=10) == -signal.SIGKILL
    with RecordingReader(source) as reader:
        flushed = reader.count("volumes")
        assert reader.truncated is None  # a SIGKILL alone loses nothing flushed
    assert flushed > 20
    # The writer may have written past the superblock's end of file: cut from what it records.
    paths = _cut_copies(source, tmp_path)
    size_of = {str(p): p.stat().st_size for p in paths}
    reports = _read_in_subprocess(paths)
    for report in reports:
        counts = _check_crashed(report, size_of)
        assert all(n <= flushed + 1 for n in counts.values())


def _check_crashed(report: dict, size_of: dict) -> dict[str, int]:
    """As :func:`_check`, for a file whose recorded size is not the size the test knows."""
    truncated = report.get("truncated")
    if truncated is not None:
        return _check(report, size_of, truncated[1])
    if "open" in report:
        return _check(report, size_of, 0)
    # Cut beyond the recorded end of file (what the writer had written since its last
    # flush): an ordinary file.
    counts = {}
    for group in ("volumes", "markers", "latents", "frames", "status"):
        got = report[group]
        assert isinstance(got, list), got
        assert got == [_expected(group, i) for i in range(len(got))]
        counts[group] = len(got)
    return counts
