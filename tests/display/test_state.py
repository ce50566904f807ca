"""The console state from typed messages alone: health, counters, lateness, budgets, motion,
pairing (the protocol's trial rule), malformed messages and the decoder's own trial."""

from __future__ import annotations

import pytest

from rt_recon.config import BUDGET_PRESETS_MS
from rt_recon.display.messages import ConsoleStateMessage
from rt_recon.display.state import ConsoleState
from rt_recon.display.timeline import StimulusTimeline
from rt_recon.protocol import AWAY_AFTER_S, Marker, TrialRef, trial_samples
from tests.display._helpers import frame_header, status_header

INTERVAL = 0.375  # TR 1.5 s replayed at speed 4
HEALTHY_RENDER_MS = 160.0 - 17.6  # rendered - render_received in HEALTHY_MS


def _state(**kwargs) -> ConsoleState:
    return ConsoleState(BUDGET_PRESETS_MS["cpu"], **kwargs)


def _levels(state: ConsoleState, now: float) -> dict[str, str]:
    return {node["name"]: node["level"] for node in state.snapshot(now)["nodes"]}


def _marker(**fields) -> Marker:
    return Marker.from_json(fields)


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
    warnings = [w.text for w in state.warnings(5.1 + AWAY_AFTER_S)]
    assert "renderer stopped" in warnings
    assert any(w.startswith("decoder away: silent for") for w in warnings)


def test_counters_are_those_the_heartbeat_carried_one_of_the_wrong_type_dropped():
    state = _state()
    state.on_status(status_header("decoder", "running", 0, tr=4, missed=1, shiny=True), now=1.0)
    decoder = {n["name"]: n for n in state.snapshot(1.0)["nodes"]}["decoder"]
    assert decoder["counters"] == {"tr": 4, "missed": 1, "shiny": True}  # unknown: passed on
    state.on_status(status_header("decoder", "running", 1, tr=5, missed=2.5), now=2.0)
    assert state.nodes["decoder"].counters == {"tr": 5}  # missed: an int, found 2.5
    assert state.missed_trs == 0


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
    texts = [w.text for w in state.warnings(2.0) if w.kind == "late"]
    assert texts and "2 of the last 3 pictures took longer than the TR (375 ms)" in texts[0]


def test_run_start_marker_gives_the_tr_before_any_second_frame():
    state = _state()
    state.on_marker(_marker(type="run_start", run="01", tr=1.5, speed=4.0), 99.0)
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
    (budget,) = [w["text"] for w in snap["warnings"] if w["kind"] == "budget"]  # one line
    assert budget == (
        "over budget (last 5 TRs): render 2 (worst 288.4 ms > 250 ms at TR 6), "
        "end_to_end 2 (worst 307.0 ms > 300 ms at TR 6)"
    )
    render = next(r for r in snap["latency_summary"] if r["stage"] == "render")
    assert render["latest_ms"] == pytest.approx(HEALTHY_RENDER_MS, abs=1e-6)
    assert render["budget_ms"] == 250.0
    # older than the warning window: the warning goes, the count stays
    for tr in range(8, 13):
        state.on_frame(frame_header(tr, 100.0 + tr * 1.5), now=float(tr))
    assert not [w for w in state.warnings(13.0) if w.kind == "budget"]
    assert state.over_budget["render"] == 2


def test_motion_trace_and_warning_from_the_fd_header_key():
    state = _state(fd_threshold_mm=0.5)
    for tr, fd in enumerate([0.1, 0.2, 0.9, 0.15]):
        state.on_frame(frame_header(tr, 100.0 + tr, fd=fd, motion=[0.0] * 6), now=float(tr))
    state.on_frame(frame_header(4, 104.0), now=4.0)  # a frame without fd
    snap = state.snapshot(4.0)
    assert snap["motion"]["points"] == [[0, 0.1], [1, 0.2], [2, 0.9], [3, 0.15]]
    motion = [w.text for w in state.warnings(4.0) if w.kind == "motion"]
    assert motion == ["motion: framewise displacement 0.90 mm at TR 2 (threshold 0.5 mm)"]


def test_malformed_messages_are_counted_and_warned_about_for_a_while():
    state = _state()
    state.on_malformed("frame", "malformed frame header: run: Field required (missing)", 5.0)
    state.on_malformed("status", "status schema 9: this rt_recon reads schema 1 or older", 6.0)
    assert state.snapshot(6.0)["counts"]["malformed"] == 2
    texts = [w.text for w in state.warnings(6.0) if w.kind == "malformed"]
    assert texts == [
        "malformed: 2 messages dropped (last, a status: status schema 9: this rt_recon reads "
        "schema 1 or older)"
    ]
    assert not [w for w in state.warnings(17.0) if w.kind == "malformed"]  # it passed
    assert state.snapshot(17.0)["counts"]["malformed"] == 2  # the count stays


def _replay_markers(n: int, t0: float, speed: float, first_onset: float = 9.0, every=6.0):
    """Replay markers: onsets in run seconds, stamped ``t0 + onset / speed`` (LSL s)."""
    return [
        (_marker(type="event", run="01", trial=k, onset=first_onset + every * k, duration=3.0,
                 stimulus_id=100 + k, caption=f"picture {k}"),
         t0 + (first_onset + every * k) / speed)
        for k in range(n)
    ]  # fmt: skip


def test_pairing_by_stamps_gives_the_fitting_rules_scored_trs_on_a_replay():
    """Live, the console places markers by their stamps against the frames' volumes; on a
    replay, whose stamps follow the run's own timeline, that is what fitting computes from
    the onsets (protocol.trial_samples)."""
    tr_s, speed, lag, n_trs, t0 = 1.5, 4.0, 3, 60, 1000.0
    markers = _replay_markers(8, t0, speed)
    timeline = StimulusTimeline()
    timeline.on_marker(_marker(type="run_start", run="01", tr=tr_s, speed=speed), t0)
    for marker, stamp in markers:
        timeline.on_marker(marker, stamp)
    scored = {}
    for frame_tr in range(n_trs):
        timeline.on_volume("01", frame_tr, t0 + frame_tr * tr_s / speed)
        truth = timeline.truth_for_frame(frame_tr, lag, "01")
        if truth is not None and truth.scored:
            scored[frame_tr] = truth.stimulus_id
    assert scored == dict(trial_samples([m for m, _ in markers], n_trs, tr_s, lag))
    # a 3 s picture is on screen for two TRs; the TR after is blank
    onset = 6  # 9 s / 1.5 s
    assert timeline.truth_for_frame(onset + lag, lag, "01").stimulus_id == 100
    assert timeline.truth_for_frame(onset + lag + 1, lag, "01").stimulus_id == 100
    assert not timeline.truth_for_frame(onset + lag + 1, lag, "01").scored
    assert timeline.truth_for_frame(onset + lag + 2, lag, "01") is None
    assert timeline.truth_for_frame(onset + lag - 1, lag, "01") is None


def test_markers_without_type_or_run_pair_by_stamp_and_others_are_ignored():
    timeline = StimulusTimeline()  # no run_start: a live stimulus program
    for tr in range(17, 21):
        timeline.on_volume("05", tr, 500.0 + (tr - 20) * 1.5)
    timeline.on_marker(_marker(stimulus_id=7, caption="a dog"), 500.0 - 4 * 1.5)  # TR 16
    timeline.on_marker(_marker(stimulus_id=8), 500.0 - 1.5 + 0.2)  # TR 19
    timeline.on_marker(_marker(caption="fixation"), 500.0 - 2 * 1.5)  # no stimulus_id
    timeline.on_marker(_marker(type="response", stimulus_id=9), 500.0 - 2 * 1.5)  # no event
    # TR 16 comes before the first frame: whole intervals (estimated from the frames) back
    assert timeline.truth_at(16, "05").stimulus_id == 7
    assert timeline.truth_at(16, "05").caption == "a dog"
    assert timeline.truth_at(17, "05") is None  # no duration: one TR; 18: no stimulus
    assert timeline.truth_at(18, "05") is None
    assert timeline.truth_at(19, "05").stimulus_id == 8
    assert timeline.truth_for_frame(22, 3, "05").scored


def test_a_marker_in_a_gap_without_frames_is_counted_in_wire_intervals():
    timeline = StimulusTimeline()
    timeline.on_marker(_marker(type="run_start", run="01", tr=2.0), 0.0)
    for tr in (0, 1, 5, 6):  # the renderer skipped TRs 2..4
        timeline.on_volume("01", tr, 100.0 + 2.0 * tr)
    timeline.on_marker(_marker(run="01", stimulus_id=1), 100.0 + 2.0 * 3 - 0.9)  # TR 3
    timeline.on_marker(_marker(run="01", stimulus_id=2), 100.0 + 2.0 * 6 + 1.2)  # TR 7
    assert timeline.truth_at(3, "01").stimulus_id == 1
    assert timeline.truth_at(7, "01").stimulus_id == 2


def test_a_looping_replay_starts_the_runs_timeline_over():
    timeline = StimulusTimeline()
    for tr in range(10):
        timeline.on_volume("01", tr, 100.0 + tr)
    timeline.on_marker(_marker(type="run_start", run="01", tr=1.0, loop=1), 115.0)
    for tr in range(4):  # the run again: TRs from 0, later stamps
        timeline.on_volume("01", tr, 120.0 + tr)
    timeline.on_marker(_marker(run="01", stimulus_id=3), 122.0)
    assert timeline.truth_at(2, "01").stimulus_id == 3


def test_console_state_pairs_frames_with_markers_in_a_replay():
    state = _state()
    t0 = 100.0
    state.on_marker(_marker(type="run_start", run="01", tr=1.5, speed=4.0), t0 - 1.0)
    for marker, stamp in _replay_markers(3, t0, 4.0):
        state.on_marker(marker, stamp)
    records = [state.on_frame(frame_header(t, t0 + t * INTERVAL), now=float(t)) for t in range(20)]
    paired = {r.tr: r.truth.stimulus_id for r in records if r.truth is not None}
    # onsets at TRs 6, 10, 14, two TRs each, seen 3 TRs later
    assert paired == {9: 100, 10: 100, 13: 101, 14: 101, 17: 102, 18: 102}
    pairs = state.snapshot(20.0)["pairs"]
    assert [p["tr"] for p in pairs] == list(range(8, 20))
    assert pairs[1]["truth"]["stimulus_id"] == 100 and pairs[1]["truth"]["scored"]
    assert pairs[1]["truth"]["picture"] is None and pairs[1]["trial"] is None


def test_the_decoders_trial_is_passed_on_and_a_scored_frame_it_pairs_otherwise_is_flagged():
    state = _state()
    t0 = 100.0  # lag_trs 3 (frame_header's)
    state.on_marker(_marker(run="01", stimulus_id=100), t0 + 6 * INTERVAL)  # onset TR 6
    for tr in range(12):
        trial = (
            TrialRef(index=0, stimulus_id=100, onset_tr=6, complete=tr >= 9) if tr >= 4 else None
        )
        state.on_frame(frame_header(tr, t0 + tr * INTERVAL, mode="trial", trial=trial), now=tr)
    assert state.pairing_mismatches == 0  # TR 9: both say stimulus 100, onset TR 6
    pairs = {p["tr"]: p for p in state.snapshot(12.0)["pairs"]}
    assert pairs[9]["trial"] == {"index": 0, "stimulus_id": 100, "onset_tr": 6, "complete": True}
    assert pairs[9]["truth"]["scored"]
    # a decoder whose clock is not the console's: it places the next trial a TR later
    state.on_marker(_marker(run="01", stimulus_id=101), t0 + 14 * INTERVAL)  # onset TR 14
    for tr in range(12, 19):
        trial = TrialRef(index=1, stimulus_id=101, onset_tr=15, complete=tr >= 18)
        state.on_frame(frame_header(tr, t0 + tr * INTERVAL, mode="trial", trial=trial), now=tr)
    assert state.pairing_mismatches == 1
    (text,) = [w.text for w in state.warnings(19.0) if w.kind == "pairing"]
    assert text.startswith(
        "pairing: the decoder scored trial 1 (stimulus 101, onset TR 15) at TR 18; the console "
        "pairs no trial scored at this TR"
    )


def test_the_snapshot_is_the_typed_console_state():
    state = _state()
    state.on_status(status_header("recorder", "streaming", 0, volumes=3, disk_low=False), 1.0)
    state.on_marker(_marker(run="01", stimulus_id=100, caption="a cat"), 100.0)
    state.on_frame(frame_header(3, 100.0, fd=0.2, lag_trs=0), now=1.0)
    snap = state.snapshot(1.5)
    assert ConsoleStateMessage.model_validate(snap).to_json() == snap
    assert state.message(1.5).pairs[-1].truth.caption == "a cat"
