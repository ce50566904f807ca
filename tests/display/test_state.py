"""The console state from messages alone: health, counters, lateness, budgets, motion, pairing."""

from __future__ import annotations

import pytest

from rt_recon.config import BUDGET_PRESETS_MS
from rt_recon.decode.fit import trial_samples
from rt_recon.display.state import AWAY_AFTER_S, ConsoleState
from rt_recon.display.timeline import FrameClock, StimulusTimeline
from tests.display._helpers import frame_header, status_header

INTERVAL = 0.375  # TR 1.5 s replayed at speed 4
HEALTHY_RENDER_MS = 160.0 - 17.6  # rendered - render_received in HEALTHY_MS


def _state(**kwargs) -> ConsoleState:
    return ConsoleState(BUDGET_PRESETS_MS["cpu"], **kwargs)


def _levels(state: ConsoleState, now: float) -> dict[str, str]:
    return {node["name"]: node["level"] for node in state.snapshot(now)["nodes"]}


def test_node_health_follows_heartbeats_stops_and_silence():
    state = _state()
    assert _levels(state, 0.0) == {"decoder": "unknown", "renderer": "unknown"}
    state.on_status(status_header("decoder", "waiting_for_stream", 0), now=1.0)
    state.on_status(status_header("renderer", "running", 0, rendered=0), now=1.0)
    assert _levels(state, 1.5) == {"decoder": "waiting", "renderer": "ok"}
    state.on_status(status_header("decoder", "running", 1, missed=2), now=2.0)
    assert _levels(state, 2.0 + AWAY_AFTER_S - 0.1) == {"decoder": "ok", "renderer": "away"}
    state.on_status(status_header("renderer", "stopped", 5), now=4.5)
    assert _levels(state, 4.6)["renderer"] == "stopped"
    assert not state.renderer_present(4.6)
    state.on_status(status_header("recorder", "streaming", 0), now=5.0)
    levels = _levels(state, 5.1)
    assert levels["recorder"] == "ok"  # a node nobody announced appears once it speaks
    warnings = [w["text"] for w in state.warnings(5.1 + AWAY_AFTER_S)]
    assert "renderer stopped" in warnings
    assert any(w.startswith("decoder away: silent for") for w in warnings)


def test_a_frame_is_a_sign_of_life_of_the_renderer():
    state = _state()
    state.on_frame(frame_header(0, 100.0), now=10.0)
    assert state.renderer_present(10.0 + AWAY_AFTER_S - 0.1)
    assert not state.renderer_present(10.0 + AWAY_AFTER_S + 0.1)


def test_tr_counters_missed_skipped_and_trs_without_a_picture():
    state = _state()
    t0 = 100.0
    for tr in (0, 1, 2, 5, 6, 9):  # the renderer skipped 3, 4, 7, 8
        state.on_frame(
            frame_header(tr, t0 + tr * INTERVAL, missed_before=1 if tr == 5 else 0,
                         skipped_total=4 if tr >= 9 else 2),
            now=float(tr),
        )  # fmt: skip
    snap = state.snapshot(10.0)
    assert snap["tr"] == 9
    assert snap["counts"]["frames"] == 6
    assert snap["counts"]["no_picture_trs"] == 4
    assert snap["counts"]["missed_trs"] == 1  # from the frames, no decoder heartbeat yet
    assert snap["counts"]["skipped_trs"] == 4
    state.on_status(status_header("decoder", "running", 3, missed=3), now=10.0)
    assert state.snapshot(10.0)["counts"]["missed_trs"] == 3  # the decoder knows better
    assert snap["interval_s"] == pytest.approx(INTERVAL)  # estimated from acquisition times


def test_late_trs_are_pictures_slower_than_the_tr_including_the_first():
    state = _state()
    slow = {"rendered": 500.0, "published": 501.0}  # > 375 ms
    state.on_frame(frame_header(0, 100.0, stage_ms=slow), now=0.0)
    assert state.interval_s is None  # one frame: the TR is not known yet
    assert state.late_trs == 0
    state.on_frame(frame_header(1, 100.0 + INTERVAL), now=1.0)
    state.on_frame(frame_header(2, 100.0 + 2 * INTERVAL, stage_ms=slow), now=2.0)
    assert state.late_trs == 2
    texts = [w["text"] for w in state.warnings(2.0) if w["kind"] == "late"]
    assert texts and "2 of the last 3 pictures took longer than the TR (375 ms)" in texts[0]


def test_run_start_marker_gives_the_tr_before_any_second_frame():
    state = _state()
    state.on_marker({"type": "run_start", "run": "01", "tr": 1.5, "speed": 4.0}, 99.0)
    state.on_frame(frame_header(0, 100.0, stage_ms={"published": 400.0}), now=0.0)
    assert state.interval_s == pytest.approx(INTERVAL)
    assert state.late_trs == 1


def test_budget_warnings_name_the_stage_the_budget_and_the_worst_tr():
    state = _state(warn_window=5)
    for tr in range(8):
        over = {"rendered": 300.0 + tr, "published": 301.0 + tr} if tr in (5, 6) else {}
        state.on_frame(frame_header(tr, 100.0 + tr * 1.5, stage_ms=over), now=float(tr))
    snap = state.snapshot(8.0)
    assert snap["counts"]["over_budget"]["render"] == 2
    assert snap["counts"]["over_budget"]["end_to_end"] == 2
    assert snap["counts"]["over_budget"]["preprocess"] == 0
    budget = {w["text"].split(" ")[0]: w["text"] for w in snap["warnings"] if w["kind"] == "budget"}
    assert set(budget) == {"render", "end_to_end"}
    assert "2 of the last 5 TRs above 250 ms; worst 288.4 ms at TR 6" in budget["render"]
    render = next(r for r in snap["latency_summary"] if r["stage"] == "render")
    assert render["latest_ms"] == pytest.approx(HEALTHY_RENDER_MS, abs=1e-6)
    assert render["budget_ms"] == 250.0
    # older than the warning window: the warning goes, the count stays
    for tr in range(8, 13):
        state.on_frame(frame_header(tr, 100.0 + tr * 1.5), now=float(tr))
    assert not [w for w in state.warnings(13.0) if w["kind"] == "budget"]
    assert state.over_budget["render"] == 2


def test_motion_trace_and_warning_from_the_fd_header_key():
    state = _state(fd_threshold_mm=0.5)
    for tr, fd in enumerate([0.1, 0.2, 0.9, 0.15]):
        state.on_frame(frame_header(tr, 100.0 + tr, fd=fd, motion=[0.0] * 6), now=float(tr))
    state.on_frame(frame_header(4, 104.0), now=4.0)  # a frame without fd
    snap = state.snapshot(4.0)
    assert snap["motion"]["points"] == [[0, 0.1], [1, 0.2], [2, 0.9], [3, 0.15]]
    motion = [w["text"] for w in snap["warnings"] if w["kind"] == "motion"]
    assert motion == ["motion: framewise displacement 0.90 mm at TR 2 (threshold 0.5 mm)"]


def _replay_events(n: int, first_onset: float = 9.0, every: float = 6.0) -> list[dict]:
    return [
        {"type": "event", "run": "01", "trial": k, "onset": first_onset + every * k,
         "duration": 3.0, "stimulus_id": 100 + k, "caption": f"picture {k}"}
        for k in range(n)
    ]  # fmt: skip


def test_pairing_by_onset_matches_the_offline_scoring_rule():
    tr, lag, n_trs = 1.5, 3, 60
    events = _replay_events(8)
    timeline = StimulusTimeline()
    timeline.on_marker({"type": "run_start", "run": "01", "tr": tr, "speed": 4.0}, 0.0)
    for event in events:
        timeline.on_marker(event, 1000.0)  # timestamps unused when onsets are known
    scored = {}
    for frame_tr in range(n_trs):
        truth = timeline.truth_for_frame(frame_tr, lag, run="01")
        if truth is not None and truth.scored:
            scored[frame_tr] = truth.stimulus_id
    assert scored == dict(trial_samples(events, n_trs, tr, lag))
    # a 3 s picture is on screen for two TRs; the TR after is blank
    onset_tr = round(9.0 / tr)
    assert timeline.truth_for_frame(onset_tr + lag, lag, "01").stimulus_id == 100
    assert timeline.truth_for_frame(onset_tr + lag + 1, lag, "01").stimulus_id == 100
    assert not timeline.truth_for_frame(onset_tr + lag + 1, lag, "01").scored
    assert timeline.truth_for_frame(onset_tr + lag + 2, lag, "01") is None
    assert timeline.truth_for_frame(onset_tr + lag - 1, lag, "01") is None


def test_pairing_by_timestamp_when_events_carry_no_onset():
    timeline = StimulusTimeline()  # no run_start: a live stimulus program
    clock = FrameClock(tr=20, acquired=500.0, interval_s=1.5)
    timeline.on_marker({"type": "event", "stimulus_id": 7, "caption": "a dog"}, 500.0 - 4 * 1.5)
    timeline.on_marker({"type": "event", "stimulus_id": 8}, 500.0 - 1.5 + 0.2)
    assert timeline.truth_at(16, clock=clock).stimulus_id == 7
    assert timeline.truth_at(17, clock=clock) is None  # no duration: one TR
    assert timeline.truth_at(19, clock=clock).stimulus_id == 8
    assert timeline.truth_for_frame(22, 3, clock=clock).scored


def test_console_state_pairs_frames_with_markers_in_a_replay():
    state = _state()
    state.on_marker({"type": "run_start", "run": "01", "tr": 1.5, "speed": 4.0}, 99.0)
    for event in _replay_events(3):
        state.on_marker(event, 100.0 + event["onset"] / 4.0)
    records = [
        state.on_frame(frame_header(t, 100.0 + t * INTERVAL), now=float(t)) for t in range(20)
    ]
    paired = {r.tr: r.truth.stimulus_id for r in records if r.truth is not None}
    # onsets at TRs 6, 10, 14, two TRs each, seen 3 TRs later
    assert paired == {9: 100, 10: 100, 13: 101, 14: 101, 17: 102, 18: 102}
    pairs = state.snapshot(20.0)["pairs"]
    assert [p["tr"] for p in pairs] == list(range(8, 20))
    assert pairs[1]["truth"]["stimulus_id"] == 100 and pairs[1]["truth"]["scored"]
