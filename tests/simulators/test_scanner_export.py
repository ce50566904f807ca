"""The scanner-export simulator: byte-identical files, one volume per TR, by target times."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from rt_recon.errors import DataError
from rt_recon.simulators.scanner_export import export_plan, export_series
from tests.acquire._enhanced_builder import oblique_affine, write_enhanced, write_slices


@pytest.fixture
def ge_run(tmp_path):
    folder = tmp_path / "ge"
    folder.mkdir()
    data = np.random.default_rng(1).integers(0, 900, size=(6, 5, 4, 5)).astype(np.int16)
    write_slices(folder, data, oblique_affine(), tr_ms=400.0)
    return folder


def test_the_plan_groups_slice_files_per_volume_in_acquisition_order(ge_run):
    plan, tr_s = export_plan(ge_run)
    assert tr_s == pytest.approx(0.4)
    assert [index for index, _ in plan] == [1, 2, 3, 4, 5]
    assert all(len(files) == 4 for _, files in plan)
    assert {p.name for p in plan[1][1]} == {f"i{1000 + k}.MRDC.{k}" for k in range(5, 9)}


@pytest.mark.parametrize("atomic", [False, True])
def test_files_arrive_byte_identical_one_volume_per_tr(ge_run, tmp_path, atomic):
    dest = tmp_path / "export"
    report = export_series(ge_run, dest, speed=2.0, start_delay=0.1, atomic=atomic)
    written = sorted(p.name for p in dest.iterdir())
    assert written == sorted(p.name for p in ge_run.iterdir())  # no temporary files left
    for path in ge_run.iterdir():
        assert (dest / path.name).read_bytes() == path.read_bytes()
    closed = report.closed_at()
    intervals = np.diff([closed[i] for i in sorted(closed)])
    np.testing.assert_allclose(intervals, 0.2, atol=0.1)  # 0.4 s / 2; loose for a loaded machine
    assert np.median(report.lateness()) < 0.05


def test_a_gap_in_the_recording_is_a_gap_in_time(tmp_path):
    source = tmp_path / "xa"
    source.mkdir()
    data = np.random.default_rng(2).integers(0, 900, size=(4, 4, 3)).astype(np.uint16)
    for index in (1, 2, 4):  # volume 3 was never written by the scanner
        write_enhanced(
            source / f"v{index}.dcm",
            data,
            oblique_affine(),
            instance=index,
            tr_ms=300.0,
            series_uid="1.2.3",
        )
    report = export_series(source, tmp_path / "out", start_delay=0.05)
    closed = report.closed_at()
    assert sorted(closed) == [1, 2, 4]
    assert closed[4] - closed[2] == pytest.approx(0.6, abs=0.1)


def test_stop_ends_the_export_between_volumes(ge_run, tmp_path):
    stop = threading.Event()
    stop.set()
    report = export_series(ge_run, tmp_path / "out", stop=stop)
    assert report.written == []


def test_a_folder_without_scanner_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="no DICOM, PAR/REC or NIfTI files"):
        export_series(tmp_path, tmp_path / "out")
