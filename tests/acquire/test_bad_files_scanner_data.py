"""Issue #15 items 8 and 9 with real exports: a Siemens run with bad files and strays dropped
into its folder, and a bridge restarted in the middle of it."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from rt_recon.acquire.series import read_series
from tests.acquire._harness import FakeClock, RunningBridge, wait_until
from tests.acquire._shared import shared_path

pytestmark = pytest.mark.shared_data


def _siemens_files() -> list[Path]:
    return sorted(shared_path("siemens_trio_mosaic_run", "dicom").glob("*.dcm"))


def _copy(src: Path, folder: Path, name: str | None = None) -> Path:
    dest = folder / (name or src.name)
    shutil.copyfile(src, dest)
    return dest


def test_bad_files_and_a_ge_slice_in_a_siemens_export_are_each_named_for_what_they_are(tmp_path):
    siemens = _siemens_files()[:4]
    vendors = shared_path("pyneal_vendor_samples")
    ge_slice = sorted((vendors / "GE_env" / "funcData" / "s1925").iterdir())[0]
    lone_par = vendors / "Philips_env" / "funcData" / "0001" / "Dump-0000.par"
    direct = read_series(siemens[0].parent)
    watch = tmp_path / "export"
    watch.mkdir()
    # a still clock: the Siemens series never counts as stopped, whatever the load
    with RunningBridge(watch, clock=FakeClock(), give_up=1.0) as bridge:
        _copy(siemens[0], watch)
        _copy(siemens[1], watch)
        _, values = bridge.collect(2)
        (watch / "001_000007_000099.dcm").write_bytes(b"")
        (watch / "001_000007_000098.dcm").write_bytes(siemens[2].read_bytes()[:132])
        _copy(lone_par, watch)
        _copy(ge_slice, watch)
        _copy(siemens[2], watch)
        _copy(siemens[3], watch)
        _, got = bridge.collect(2)
        values += got
        bad = {"001_000007_000099.dcm", "001_000007_000098.dcm", "Dump-0000.par"}
        wait_until(
            lambda: set(dict(bridge.bridge.report.unreadable)) == bad, 15, "the bad files reported"
        )
        report = bridge.stop()
    assert [v.index for v in report.streamed] == [1, 2, 3, 4]
    for got, volume in zip(values, direct.volumes[:4], strict=True):
        np.testing.assert_array_equal(got, volume.flat())
    assert dict(report.unreadable) == {
        "001_000007_000099.dcm": "001_000007_000099.dcm: empty file (0 bytes), unchanged for 1 s",
        "001_000007_000098.dcm": "001_000007_000098.dcm: DICOM preamble only, no data elements "
        "(132 bytes), unchanged for 1 s",
        "Dump-0000.par": "Dump-0000.par: PAR header without its REC data file (Dump-0000.rec), "
        "unchanged for 1 s",
        # reported as a stray when it came (below), and as an unfinished volume at the end
        ge_slice.name: "volume 1: only 1 of 18 slices arrived",
    }
    ((name, message),) = report.foreign
    assert name == ge_slice.name
    assert message == (
        f"{ge_slice.name}: a GE MEDICAL SYSTEMS slice DICOM of series 6 (one of the 18 slices "
        "of its volume 1) arrived while series 7 (SIEMENS mosaic DICOM of series 7) is "
        "streaming; not streamed unless its series goes on (a new run)"
    )


def test_a_bridge_restarted_mid_run_catches_up_on_the_run_on_disk(tmp_path):
    files = _siemens_files()[:12]
    direct = read_series(files[0].parent)
    watch = tmp_path / "export"
    watch.mkdir()
    # written before the restart, one per TR as the scanner wrote them (the file times
    # are what the caught-up volumes are stamped from)
    times = direct.times()
    written_8 = time.time() - 1.0
    for path, t in zip(files[:8], times[:8], strict=True):
        when = written_8 - (times[7] - t)
        os.utime(_copy(path, watch), (when, when))
    with RunningBridge(watch) as bridge:
        for path in files[8:]:
            _copy(path, watch)
        stamps, values = bridge.collect(12)
        report = bridge.stop()
    assert [(v.index, v.catch_up) for v in report.streamed] == [(i, i <= 8) for i in range(1, 13)]
    for got, volume in zip(values, direct.volumes[:12], strict=True):
        np.testing.assert_array_equal(got, volume.flat())
    # paced at 4 per TR, so that an inlet buffering a few TRs (the test's: 4) loses none
    pushed = [v.pushed_at for v in report.streamed[:9]]
    assert np.all(np.diff(pushed) >= direct.tr_s / 4 - 0.02)
    # the caught-up volumes keep the scanner's own spacing (anchored clock, from file times)
    np.testing.assert_allclose(np.diff(stamps[:8]), np.diff(direct.times()[:8]), atol=1e-3)
    assert report.issues == [] and report.unreadable == [] and report.left_alone == {}
