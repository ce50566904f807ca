"""Live data quality per TR: tSNR per ROI over a sliding window, global signal, DVARS and volume
outliers, against series whose figures are known."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from rt_recon.errors import ShapeMismatchError
from rt_recon.preprocess.quality import QualityMonitor


def _noisy(n_trs: int, means: np.ndarray, sd: float, seed: int = 0) -> np.ndarray:
    """``(n_trs, n_voxels)`` float32: each voxel its mean plus white noise of ``sd``."""
    rng = np.random.default_rng(seed)
    return (means + rng.normal(0.0, sd, (n_trs, means.size))).astype(np.float32)


def _run(monitor: QualityMonitor, volumes: np.ndarray) -> list:
    return [monitor.update(v) for v in volumes]


def test_the_tsnr_of_each_roi_is_its_voxels_mean_over_std_in_the_window():
    # Each voxel alternates mean + s, mean - s: over an even window its mean is exact and
    # its std (ddof=1) is s * sqrt(w / (w - 1)), so the tSNR is known to the last digit.
    window, n_trs = 20, 45
    means = np.r_[np.full(30, 1000.0), np.full(20, 400.0)]
    steps = np.r_[np.full(30, 10.0), np.full(20, 16.0)]
    sign = np.where(np.arange(n_trs) % 2 == 0, 1.0, -1.0)[:, None]
    volumes = (means + sign * steps).astype(np.float32)
    monitor = QualityMonitor(50, {"ev": np.arange(30), "hv": np.arange(30, 50)}, window=window)
    measures = _run(monitor, volumes)
    inflate = np.sqrt(window / (window - 1))
    assert measures[-1].tsnr["ev"] == pytest.approx(100.0 / inflate, rel=1e-9)
    assert measures[-1].tsnr["hv"] == pytest.approx(25.0 / inflate, rel=1e-9)
    assert measures[-1].window_trs == window
    # before min_trs volumes there is no figure; then one over the volumes so far
    assert [m.tsnr["ev"] is None for m in measures[:11]] == [True] * 9 + [False] * 2
    assert measures[9].tsnr["ev"] == pytest.approx(1000.0 / np.std(volumes[:10, 0], ddof=1))
    # a constant series never drops out of the DVARS rule: every change is the same size
    assert not any(m.outlier for m in measures)


def test_the_running_sums_match_a_direct_computation_over_a_long_run():
    rng = np.random.default_rng(1)
    n_trs, window = 600, 30
    means = rng.uniform(200.0, 2000.0, 80)
    drift = np.linspace(0.0, 0.05, n_trs)[:, None] * means  # 5% drift over the run
    volumes = (_noisy(n_trs, means, 15.0, seed=2) + drift).astype(np.float32)
    rois = {"a": np.arange(0, 50), "b": np.arange(40, 80)}
    monitor = QualityMonitor(80, rois, window=window, outlier_z=1e9)  # no outliers
    for t, volume in enumerate(volumes):
        measures = monitor.update(volume)
        if t in (40, 299, 599):
            recent = volumes[t - window + 1 : t + 1].astype(np.float64)
            tsnr = recent.mean(axis=0) / recent.std(axis=0, ddof=1)
            for name, idx in rois.items():
                assert measures.tsnr[name] == pytest.approx(np.median(tsnr[idx]), rel=1e-9)
            baseline = volumes[t - window : t].astype(np.float64).mean()
            level = volumes[t].astype(np.float64).mean()
            assert measures.global_pct == pytest.approx(100 * (level - baseline) / baseline)
            change = volumes[t].astype(np.float64) - volumes[t - 1]
            rms = np.sqrt(np.mean(change**2))
            assert measures.dvars_pct == pytest.approx(100 * rms / baseline, rel=1e-9)


def test_a_spike_is_an_outlier_left_out_of_the_tsnr_and_a_clean_run_has_none():
    means = np.full(400, 800.0)
    clean = _noisy(120, means, 8.0, seed=3)
    spiked = clean.copy()
    spiked[60, :200] += 80.0  # half the voxels jump by 10 noise SDs for one volume
    quiet = _run(QualityMonitor(400, {"roi": np.arange(400)}, window=30), clean)
    loud = _run(QualityMonitor(400, {"roi": np.arange(400)}, window=30), spiked)
    assert not any(m.outlier for m in quiet)
    assert max(m.dvars_z for m in quiet if m.dvars_z is not None) < 4.0
    # the jump and the jump back are the two outliers; nothing else is
    assert [t for t, m in enumerate(loud) if m.outlier] == [60, 61]
    assert loud[60].dvars_z > 20.0 and loud[60].dvars_pct > 3 * quiet[60].dvars_pct
    assert loud[61].outliers == 2 and loud[61].window_trs == 28
    assert loud[61 + 30].outliers == 0  # both left the window
    # the spike does not spoil the tSNR of the TRs after it: they are the clean run's
    assert loud[70].tsnr["roi"] == pytest.approx(quiet[70].tsnr["roi"], rel=0.03)
    # kept in, it would halve the tSNR of the voxels it hit for a whole window
    rois = {"hit": np.arange(200)}
    unguarded = _run(QualityMonitor(400, rois, window=30, outlier_z=1e9), spiked)
    assert unguarded[70].tsnr["hit"] < 0.6 * quiet[70].tsnr["roi"]


def test_a_global_step_shows_in_the_global_signal_until_the_baseline_takes_it_in():
    window = 30
    means = np.full(300, 1000.0)
    volumes = _noisy(140, means, 5.0, seed=4)
    volumes[60:] *= 1.03  # every voxel 3% brighter from TR 60
    measures = _run(QualityMonitor(300, {"roi": np.arange(300)}, window=window), volumes)
    assert all(abs(m.global_pct) < 0.1 for m in measures[10:60])
    assert measures[60].global_pct == pytest.approx(3.0, abs=0.1)
    assert measures[60].outlier and not measures[61].outlier  # a step: one change
    assert measures[61].global_pct == pytest.approx(3.0, abs=0.1)  # TR 60 is no baseline
    halfway = measures[61 + window // 2].global_pct
    assert 1.0 < halfway < 2.0
    assert abs(measures[62 + window].global_pct) < 0.1  # the baseline is the new level


def test_dvars_is_the_rms_change_in_percent_of_the_global_baseline():
    volumes = np.full((8, 10), 500.0, dtype=np.float32)
    volumes[7, :5] += 10.0  # half the voxels up 10: RMS change sqrt(50) over a mean of 500
    measures = _run(QualityMonitor(10, {"all": np.arange(10)}, window=10), volumes)
    assert measures[0].dvars_pct is None
    assert measures[1].dvars_pct == 0.0
    assert measures[7].dvars_pct == pytest.approx(100 * np.sqrt(50.0) / 500.0)


def test_reset_forgets_the_run():
    monitor = QualityMonitor(50, {"roi": np.arange(50)}, window=10)
    _run(monitor, _noisy(20, np.full(50, 100.0), 1.0))
    monitor.reset()
    first = monitor.update(np.full(50, 300.0, dtype=np.float32))
    assert first.tsnr == {"roi": None} and first.global_pct is None and first.dvars_pct is None
    assert first.window_trs == 1 and first.outliers == 0


def test_the_memory_it_holds_does_not_grow_with_the_run():
    monitor = QualityMonitor(5000, {"a": np.arange(2500), "b": np.arange(2500, 5000)}, window=30)
    volumes = _noisy(40, np.full(5000, 500.0), 5.0)
    _run(monitor, volumes)
    tracemalloc.start()
    try:
        _run(monitor, volumes)
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(10):
            _run(monitor, volumes)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 4096, f"{grown} bytes more after 400 TRs"


def test_bad_inputs_are_named():
    with pytest.raises(ShapeMismatchError, match="ROI 'v1' needs 1-d indices into 10 voxels"):
        QualityMonitor(10, {"v1": np.array([3, 10])})
    with pytest.raises(ValueError, match="min_trs <= window"):
        QualityMonitor(10, {"v1": np.arange(3)}, window=4, min_trs=5)
    monitor = QualityMonitor(10, {"v1": np.arange(3)})
    with pytest.raises(ShapeMismatchError, match=r"expected \(10,\) values, found \(9,\)"):
        monitor.update(np.zeros(9, np.float32))
