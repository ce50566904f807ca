"""DiskWatch on a real folder: free space, minutes left from the file's growth, the low flag."""

from __future__ import annotations

import shutil

from rt_recon.record.disk import DiskWatch

MB = 1024 * 1024


def test_free_space_is_reported_and_nothing_is_low_on_a_roomy_disk(tmp_path):
    watch = DiskWatch(tmp_path / "rec.h5", low_free_mb=0, low_minutes=0)
    fields = watch.fields(0.0)
    free = shutil.disk_usage(tmp_path).free / MB
    assert abs(fields["disk_free_mb"] - free) < 64  # others write to this disk too
    assert fields["disk_minutes_left"] is None  # no file yet, no rate
    assert fields["disk_low"] is False


def test_minutes_left_follow_the_files_growth(tmp_path):
    path = tmp_path / "rec.h5"
    path.write_bytes(b"\0" * MB)
    watch = DiskWatch(path, low_free_mb=0, low_minutes=0, every_s=0)
    assert watch.fields(0.0)["disk_minutes_left"] is None  # one sample: no rate yet
    with path.open("ab") as fh:
        fh.write(b"\0" * (3 * MB))  # 3 MB in 60 s
    fields = watch.fields(60.0)
    expected = fields["disk_free_mb"] / 3.0  # minutes at 3 MB a minute
    assert abs(fields["disk_minutes_left"] - expected) <= 0.01 * expected + 0.1


def test_the_disk_is_low_under_either_threshold(tmp_path):
    free_mb = shutil.disk_usage(tmp_path).free / MB
    assert DiskWatch(tmp_path / "r", low_free_mb=free_mb * 10, low_minutes=0).fields(0.0)[
        "disk_low"
    ]
    path = tmp_path / "rec.h5"
    path.write_bytes(b"\0")
    watch = DiskWatch(path, low_free_mb=0, low_minutes=10**12, every_s=0)
    assert watch.fields(0.0)["disk_low"] is False  # no rate yet: only free space counts
    path.write_bytes(b"\0" * MB)
    assert watch.fields(1.0)["disk_low"] is True and watch.low


def test_the_disk_is_looked_at_once_per_period(tmp_path):
    path = tmp_path / "rec.h5"
    path.write_bytes(b"\0")
    watch = DiskWatch(path, low_free_mb=0, low_minutes=0, every_s=1.0)
    first = watch.fields(0.0)
    path.write_bytes(b"\0" * MB)
    assert watch.fields(0.5) is first
    assert watch.fields(1.0)["disk_minutes_left"] is not None
