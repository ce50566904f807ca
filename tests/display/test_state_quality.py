"""The console's data quality: per-TR traces from the frames' ``quality``, the thresholds of
the session's ``quality`` section, and the stop banner when too many recent TRs cross one."""

from __future__ import annotations

from typing import Any

from rt_recon.config import BUDGET_PRESETS_MS, QualitySection
from rt_recon.display.messages import ConsoleStateMessage
from rt_recon.display.state import ConsoleState
from tests.display._helpers import frame_header

INTERVAL = 0.5  # seconds between TRs on the wire


def _quality(
    tsnr_z: float | None = 80.0, tsnr_c: float | None = 60.0, global_pct: float | None = 0.1,
    dvars_pct: float | None = 0.4, dvars_z: float | None = 0.3, outlier: bool = False,
) -> dict[str, Any]:  # fmt: skip
    return {
        "tsnr": {"z": tsnr_z, "c": tsnr_c}, "global_pct": global_pct, "dvars_pct": dvars_pct,
        "dvars_z": dvars_z, "outlier": outlier, "outliers": int(outlier), "window_trs": 30,
    }  # fmt: skip


def _feed(state: ConsoleState, trs: range, t0: float = 100.0, fd: float = 0.1, **quality) -> float:
    """Frames of TRs ``trs`` arriving every INTERVAL s; returns the last arrival time."""
    now = t0
    for tr in trs:
        now = t0 + tr * INTERVAL
        header = frame_header(tr, 50.0 + tr * INTERVAL, fd=fd, quality=_quality(**quality))
        state.on_frame(header, now)
    return now


def _alerts(state: ConsoleState, now: float, kind: str = "quality") -> list[str]:
    return [a.text for a in state.warnings(now) if a.kind == kind]


def _state(**quality) -> ConsoleState:
    return ConsoleState(BUDGET_PRESETS_MS["cpu"], quality=QualitySection(**quality))


def test_each_trs_quality_is_in_the_state_with_the_thresholds():
    state = _state(min_tsnr=25.0, max_global_pct=1.5, max_dvars_z=6.0)
    now = _feed(state, range(12))
    now = _feed(state, range(12, 13), dvars_z=7.5, dvars_pct=3.2, outlier=True)
    view = ConsoleStateMessage.model_validate(state.snapshot(now)).quality
    assert view.rois == ["z", "c"]
    assert (view.min_tsnr, view.max_global_pct, view.max_dvars_z) == (25.0, 1.5, 6.0)
    assert (view.stop_window_trs, view.stop_after_trs) == (20, 5)
    assert [p.tr for p in view.points] == list(range(13))
    assert view.points[0].tsnr == {"z": 80.0, "c": 60.0} and view.points[0].crossed == []
    last = view.points[-1]
    assert (last.dvars_z, last.dvars_pct, last.outlier, last.crossed) == (7.5, 3.2, True, ["dvars"])
    assert view.crossing_trs == 1
    assert _alerts(state, now) == []  # one TR over a threshold is no reason to stop


def test_a_motion_burst_raises_the_stop_banner_naming_each_measure_its_value_and_tr():
    state = _state()  # the defaults: max DVARS z 8, global 2%, tSNR 20; 5 of the last 20 TRs
    now = _feed(state, range(40))
    burst = {40: (2.4, 31.0, 2.6), 41: (1.1, 14.0, 1.2), 42: (3.1, 52.5, -2.9), 43: (0.9, 9.0, 0.4)}
    for tr, (fd, z, change) in burst.items():
        now = _feed(state, range(tr, tr + 1), fd=fd, dvars_z=z, dvars_pct=z / 12,
                    global_pct=change, outlier=True)  # fmt: skip
        assert _alerts(state, now) == []  # four crossing TRs: not yet
    now = _feed(state, range(44, 45), fd=0.7)  # the fifth
    (text,) = _alerts(state, now)
    assert text.startswith(
        "stop: run 01 should be stopped: 5 of its last 20 TRs crossed a data-quality threshold "
        "(at most 4 may): "
    )
    assert "framewise displacement 3.10 mm at TR 42 (max 0.5 mm; 5 TRs)" in text
    assert "DVARS 4.38%, z 52.5 at TR 42 (max z 8; 4 TRs)" in text
    assert "global signal -2.90% at TR 42 (max ±2%; 2 TRs)" in text
    assert "tSNR" not in text
    assert state.warnings(now)[0].kind == "quality"  # most serious of what the frames show
    # it stays while the burst is among the last 20 TRs, and goes once it left them
    now = _feed(state, range(45, 60))
    assert _alerts(state, now)
    now = _feed(state, range(60, 61))
    assert _alerts(state, now) == []


def test_a_lasting_loss_of_tsnr_stops_the_run_once_enough_trs_are_below_the_minimum():
    state = _state(min_tsnr=30.0, stop_window_trs=10, stop_after_trs=3)
    now = _feed(state, range(20))
    now = _feed(state, range(20, 22), tsnr_c=24.0)
    assert _alerts(state, now) == []
    now = _feed(state, range(22, 23), tsnr_z=18.5, tsnr_c=26.0)
    (text,) = _alerts(state, now)
    assert "3 of its last 10 TRs crossed" in text and "(at most 2 may)" in text
    assert text.endswith("tSNR 18.5 in z at TR 22 (min 30; 3 TRs)")


def test_the_banner_goes_when_the_frames_stop_and_a_frame_without_quality_crosses_nothing():
    state = _state(stop_window_trs=10, stop_after_trs=2)
    now = _feed(state, range(5), dvars_z=12.0)
    assert _alerts(state, now)
    assert _alerts(state, now + 25.0) == []  # no frame for longer than the window (>= 20 s)
    bare = ConsoleState(BUDGET_PRESETS_MS["cpu"])
    for tr in range(30):
        bare.on_frame(frame_header(tr, 50.0 + tr), 100.0 + tr)
    view = bare.quality_view(130.0)
    assert view.points == [] and view.rois == [] and view.crossing_trs == 0
    assert _alerts(bare, 130.0) == []
