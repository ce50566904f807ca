"""Replay pacing over 100 TRs at TR 0.2 s: on schedule, no drift (real time, about 20 s).

The bounds are loose enough for a loaded CI machine; the real figures are
in benchmarks/bench_bridge.py.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from rt_recon.acquire.nifti import RecordedRun
from rt_recon.nodes.replay import replay
from rt_recon.transport.lsl import VolumeInlet
from tests.conftest import unique


@pytest.mark.slow
def test_100_trs_at_a_fifth_of_a_second_keep_to_their_schedule():
    n, tr_s = 100, 0.2
    run = RecordedRun(
        volumes=np.arange(n * 64, dtype=np.float32).reshape(n, 64),
        shape=(4, 4, 4),
        affine=np.eye(4),
        tr_s=tr_s,
    )
    ids = {k: unique(k) for k in ("name", "source_id", "markers_name", "markers_source_id")}
    result: dict = {}
    thread = threading.Thread(
        target=lambda: result.update(report=replay(run, consumer_timeout=20, **ids)), daemon=True
    )
    thread.start()
    stamps = []
    with VolumeInlet.resolve(ids["source_id"], timeout=20) as inlet:
        for k in range(n):
            stamp = inlet.pull(timeout=5)
            assert stamp is not None, f"volume {k} never arrived"
            assert inlet.values[0] == k * 64, "volumes out of order"
            stamps.append(stamp)
    thread.join(timeout=20)
    stamps = np.array(stamps)
    deviation = stamps - stamps[0] - np.arange(n) * tr_s  # from the ideal schedule, seconds
    slope = np.polyfit(np.arange(n), stamps, 1)[0]
    assert abs(slope - tr_s) < 1e-3, f"drift: {slope:.5f} s per TR"  # lateness must not accumulate
    assert np.median(np.abs(deviation)) < 0.02
    assert np.abs(deviation).max() < 0.25  # one scheduling hiccup allowed, never a trend
    assert abs(deviation[-1]) < 0.25
    lateness = np.array(result["report"].lateness)
    assert np.median(lateness) < 0.02
