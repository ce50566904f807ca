"""The sequencer's ordering rule, on volumes built in memory (no files, no sockets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rt_recon.acquire.sequence import Sequencer
from rt_recon.acquire.volume import Volume


def _volume(index: int, name: str | None = None) -> Volume:
    return Volume(
        data=np.full((2, 2, 2), index, dtype=np.int16),
        affine=np.eye(4),
        index=index,
        series="s",
        series_label="7",
        scanner_time=None,
        date=None,
        tr_s=1.0,
        sources=(Path(name or f"v{index}.dcm"),),
    )


def _indices(volumes: list[Volume]) -> list[int]:
    return [v.index for v in volumes]


def test_in_order_volumes_go_out_at_once():
    seq = Sequencer(1, reorder_wait=0.5)
    assert [_indices(seq.add(_volume(i), now=i)) for i in (1, 2, 3)] == [[1], [2], [3]]
    assert seq.issues == []


def test_a_volume_after_a_gap_waits_and_the_gap_fills_in_time():
    seq = Sequencer(1, reorder_wait=0.5)
    assert _indices(seq.add(_volume(1), 0.0)) == [1]
    assert seq.add(_volume(3), 1.0) == []
    assert seq.deadline() == 1.5
    assert seq.due(1.2) == []
    assert _indices(seq.add(_volume(2), 1.3)) == [2, 3]
    assert [(i.kind, i.index) for i in seq.issues] == [("out_of_order", 2)]


def test_a_gap_is_given_up_after_the_wait_and_a_late_volume_is_not_streamed():
    seq = Sequencer(1, reorder_wait=0.5)
    seq.add(_volume(1), 0.0)
    assert seq.add(_volume(3), 1.0) == []
    assert _indices(seq.due(1.5)) == [3]
    assert seq.add(_volume(2), 2.0) == []
    assert [(i.kind, i.index) for i in seq.issues] == [("missing", 2), ("late", 2)]
    assert "v2.dcm" in str(seq.issues[-1])


def test_duplicates_are_reported_whether_streamed_or_held():
    seq = Sequencer(1, reorder_wait=0.5)
    seq.add(_volume(1), 0.0)
    assert seq.add(_volume(1, "copy.dcm"), 0.1) == []
    seq.add(_volume(3), 0.2)
    assert seq.add(_volume(3, "again.dcm"), 0.3) == []
    assert [(i.kind, i.index, i.file) for i in seq.issues] == [
        ("duplicate", 1, "copy.dcm"),
        ("duplicate", 3, "again.dcm"),
    ]


def test_joining_a_series_under_way_starts_at_the_lowest_volume_seen():
    seq = Sequencer(None, reorder_wait=0.5)
    assert seq.add(_volume(42), 0.0) == []
    assert _indices(seq.add(_volume(41), 0.1)) == []
    assert _indices(seq.due(0.5)) == [41, 42]
    # nothing before the first volume counts as missing; 41 after 42 is out of order
    assert [(i.kind, i.index) for i in seq.issues] == [("out_of_order", 41)]


def test_flush_releases_everything_held_reporting_the_gaps():
    seq = Sequencer(1, reorder_wait=10.0)
    seq.add(_volume(1), 0.0)
    seq.add(_volume(4), 0.0)
    seq.add(_volume(5), 0.0)
    assert _indices(seq.flush()) == [4, 5]
    assert [i.index for i in seq.issues if i.kind == "missing"] == [2, 3]
