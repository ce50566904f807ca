"""The console state of runs and series, stalled streams, missed TRs and the order of the
warnings, from typed heartbeats, frames and stream reports alone (no sockets, no clock)."""

from __future__ import annotations

import numpy as np
import pytest

from rt_recon.config import BUDGET_PRESETS_MS
from rt_recon.display.messages import ALERT_SEVERITY, Alert, ConsoleStateMessage
from rt_recon.display.runs import NEW_SERIES_MAX_S, NEW_SERIES_MIN_S, tr_ranges
from rt_recon.display.sources import VolumeSourceReport
from rt_recon.display.state import ConsoleState
from rt_recon.protocol import Marker, VolumeStreamMeta
from tests.display._helpers import frame_header, status_header

SOURCE = "scanner_bridge"
MARKERS = "stimulus_markers"
TR_S = 2.0


def _state(**kwargs) -> ConsoleState:
    return ConsoleState(
        BUDGET_PRESETS_MS["cpu"], volume_source_id=SOURCE, markers_source_id=MARKERS, **kwargs
    )


def _meta(run: str, description: str, speed: float = 1.0) -> VolumeStreamMeta:
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    return VolumeStreamMeta(
        shape=(74, 74, 36), affine=affine, tr_s=TR_S, run=run, series=run,
        series_description=description, speed=speed,
    )  # fmt: skip


def _bridge(run: str, description: str, **kwargs) -> VolumeSourceReport:
    return VolumeSourceReport(
        SOURCE, present=True, name="scanner", host="mri-pc", uid=f"uid-{run}",
        meta=_meta(run, description, **kwargs),
    )  # fmt: skip


def _decoder(state: ConsoleState, seq: int, now: float, pid: int = 100, **counters) -> None:
    state.on_status(status_header("decoder", "streaming", seq, pid=pid, **counters), now=now)


def _frames(state: ConsoleState, run: str, trs, now: float, fields=None, t0: float = 1000.0):
    """Frames of ``run`` at TRs ``trs``, acquired every TR_S, received from ``now`` on;
    ``fields``: TR -> header fields of that frame."""
    for k, tr in enumerate(trs):
        header = frame_header(tr, t0 + tr * TR_S, run=run, **(fields or {}).get(tr, {}))
        state.on_frame(header, now=now + 0.01 * k)


def _kinds(state: ConsoleState, now: float) -> list[str]:
    return [w.kind for w in state.warnings(now)]


def _alert(state: ConsoleState, kind: str, now: float) -> str | None:
    texts = [w.text for w in state.warnings(now) if w.kind == kind]
    assert len(texts) <= 1, texts
    return texts[0] if texts else None


def test_the_state_names_the_run_its_series_and_description_and_which_run_of_the_session():
    state = _state()
    snap = state.snapshot(0.0)
    assert (snap["run"], snap["series"], snap["series_description"], snap["runs"]) == (
        None, None, None, 0,
    )  # fmt: skip
    state.on_volume_source(_bridge("7", "func_run1"), now=0.5)
    _decoder(state, 0, now=1.0, run="7", series="7", runs=1)
    snap = state.snapshot(1.0)
    assert (snap["run"], snap["series"], snap["series_description"], snap["runs"]) == (
        "7", "7", "func_run1", 1,
    )  # fmt: skip
    assert "new_series" not in _kinds(state, 1.0)  # the first run is no news
    # the bridge moved on to series 8 before the decoder: not this run's description
    state.on_volume_source(_bridge("8", "func_run2"), now=2.0)
    assert state.snapshot(2.0)["series_description"] is None
    _decoder(state, 1, now=2.5, run="8", series="8", runs=2)
    snap = state.snapshot(2.5)
    assert (snap["run"], snap["series"], snap["series_description"], snap["runs"]) == (
        "8", "8", "func_run2", 2,
    )  # fmt: skip
    assert ConsoleStateMessage.model_validate(snap).to_json() == snap


def test_a_new_series_is_announced_until_ten_pictures_of_it_came_and_ten_seconds_passed():
    state = _state()
    state.on_volume_source(_bridge("8", "func_run2"), now=0.0)
    _decoder(state, 0, now=1.0, run="7", series="7", runs=1)
    _frames(state, "7", range(20), now=1.0)
    _decoder(state, 1, now=50.0, run="8", series="8", runs=2)
    expected = "new series 8 (func_run2): run 2 of the session began; TRs count from 0 again"
    assert _alert(state, "new_series", 50.0) == expected
    _frames(state, "8", range(10), now=52.0)  # ten pictures of it within 2 s (a fast replay)
    assert _alert(state, "new_series", 50.0 + NEW_SERIES_MIN_S - 0.1) == expected  # still up
    assert _alert(state, "new_series", 50.0 + NEW_SERIES_MIN_S + 0.1) is None  # gone


def test_a_new_run_that_brings_no_picture_is_announced_for_thirty_seconds_at_most():
    state = _state()
    _decoder(state, 0, now=1.0, run="01", series="", runs=1)
    _frames(state, "01", range(5), now=1.0)
    _decoder(state, 1, now=10.0, run="02", series="", runs=2)  # a replay: no series number
    text = "new run 02: run 2 of the session began; TRs count from 0 again"
    assert _alert(state, "new_series", 10.0 + NEW_SERIES_MAX_S - 0.1) == text
    assert _alert(state, "new_series", 10.0 + NEW_SERIES_MAX_S + 0.1) is None


def test_a_restarted_decoder_on_the_same_run_begins_no_run_and_a_stale_heartbeat_neither():
    state = _state()
    _decoder(state, 0, now=1.0, run="7", series="7", runs=1)
    _frames(state, "7", range(5), now=1.0)
    # a frame of run 8 comes before the decoder's heartbeat saying so, and a heartbeat sent
    # before the run changed comes after it (two sockets): one new run, not three
    _frames(state, "8", [0], now=2.0)
    _decoder(state, 1, now=2.1, run="7", series="7", runs=1)
    _decoder(state, 2, now=3.0, run="8", series="8", runs=2)
    assert state.snapshot(3.0)["runs"] == 2
    assert state.runs.current.series == "8"
    # the decoder crashes and its restart counts runs from 1 again, on the same run
    _decoder(state, 0, now=5.0, pid=200, run="8", series="8", runs=1)
    snap = state.snapshot(5.0)
    assert (snap["run"], snap["runs"]) == ("8", 2)
    # the same run id again, counted up by the same decoder: a new run (another grid)
    _decoder(state, 1, now=6.0, pid=200, run="8", series="8", runs=2)
    assert state.snapshot(6.0)["runs"] == 3
    assert _alert(state, "new_series", 6.0).startswith("new series 8: run 3 of the session")


def test_a_console_started_mid_session_counts_runs_from_the_decoders_counter():
    state = _state()
    _decoder(state, 40, now=1.0, run="9", series="9", runs=3)
    assert state.snapshot(1.0)["runs"] == 3
    assert "new_series" not in _kinds(state, 1.0)


def _beats(state: ConsoleState, node: str, start: float, until: float, last_volume_t: float,
           state_name: str = "streaming", **counters) -> None:  # fmt: skip
    """One heartbeat a second from ``start`` to ``until``, its ``t`` on an LSL clock 490 s
    ahead of the console's (another machine), its last volume at ``last_volume_t``."""
    now = start
    while now <= until + 1e-9:
        header = status_header(node, state_name, int(now), pid=100, t=now + 490.0,
                               last_volume_t=last_volume_t, **counters)  # fmt: skip
        state.on_status(header, now=now)
        now += 1.0


def test_a_decoder_streaming_without_volumes_is_stalled_amber_with_a_warning():
    state = _state()
    _frames(state, "7", range(3), now=0.0)  # the TR on the wire: 2 s -> stalled after 6 s
    assert state.interval_s == pytest.approx(TR_S)
    # the last volume came at 499 on the nodes' clock (9 s on the console's), then none
    _beats(state, "decoder", 10.0, 14.0, last_volume_t=499.0, run="7", runs=1)
    _beats(state, "recorder", 10.0, 14.0, last_volume_t=499.0)
    nodes = {n["name"]: n for n in state.snapshot(14.5)["nodes"]}
    assert nodes["decoder"]["volume_age_s"] == pytest.approx(5.5)  # 5 s at the beat, 0.5 since
    assert nodes["recorder"]["volume_age_s"] == pytest.approx(5.5)
    assert nodes["decoder"]["level"] == "ok"
    assert "stalled" not in _kinds(state, 14.5)
    _beats(state, "decoder", 15.0, 15.0, last_volume_t=499.0, run="7", runs=1)
    _beats(state, "recorder", 15.0, 15.0, last_volume_t=499.0)
    nodes = {n["name"]: n for n in state.snapshot(15.5)["nodes"]}
    assert (nodes["decoder"]["level"], nodes["decoder"]["state"]) == ("waiting", "streaming")
    assert nodes["recorder"]["level"] == "ok"  # only the decoder is judged
    assert state.node_level("decoder", 15.5) == "waiting"
    assert _alert(state, "stalled", 15.5) == (
        "decoder: no volume for 6.5 s (TR 2.0 s): is the scanner still running, and the bridge?"
    )
    # a volume again: green
    _beats(state, "decoder", 16.0, 16.0, last_volume_t=505.9, run="7", runs=1)
    assert state.node_level("decoder", 16.0) == "ok"
    assert "stalled" not in _kinds(state, 16.0)
    # the stream ended: waiting for the next, amber, but no stall to report
    _beats(state, "decoder", 17.0, 30.0, last_volume_t=505.9, state_name="waiting_for_stream",
           run="7", runs=1)  # fmt: skip
    assert state.node_level("decoder", 30.0) == "waiting"
    assert "stalled" not in _kinds(state, 30.0)


def test_without_frames_the_stall_time_comes_from_the_stream_metadata_else_five_seconds():
    state = _state()
    _beats(state, "decoder", 10.0, 15.0, last_volume_t=500.0, run="7", runs=1)
    assert state.stall_after_s == 5.0  # nothing known of the TR
    assert state.node_level("decoder", 15.1) == "waiting"
    assert _alert(state, "stalled", 15.1).endswith(
        "(TR not known yet): is the scanner still running, and the bridge?"
    )
    state.on_volume_source(_bridge("7", "func"), now=10.0)
    assert state.stall_after_s == pytest.approx(3 * TR_S)
    assert state.node_level("decoder", 15.1) == "ok"
    state.on_volume_source(_bridge("7", "func", speed=4.0), now=10.0)  # 0.5 s on the wire
    assert state.stall_after_s == 5.0  # at least five seconds
    assert _alert(state, "stalled", 15.1) == (
        "decoder: no volume for 5.1 s (TR 2.0 s at speed 4: a volume every 0.5 s): is the "
        "scanner still running, and the bridge?"
    )


def test_no_late_or_budget_banner_stays_up_once_the_frames_stop():
    state = _state()
    slow = {"stage_ms": {"rendered": 2500.0, "published": 2501.0}}  # over the TR and budgets
    for tr in range(10):
        state.on_frame(frame_header(tr, 1000.0 + tr * TR_S, **slow), now=float(tr))
    kinds = _kinds(state, 10.0)
    assert "late" in kinds and "budget" in kinds
    # the stream is lost: no frame for max(10 TRs, 20 s) -> the banners go, the counts stay
    assert {"late", "budget"} <= set(_kinds(state, 9.0 + 10 * TR_S - 0.1))
    assert not {"late", "budget"} & set(_kinds(state, 9.0 + 10 * TR_S + 0.1))
    assert state.late_trs == 10 and state.over_budget["render"] == 10


def test_budget_overruns_are_one_line_over_every_stage():
    state = _state(warn_window=10)
    for tr in range(10):
        decoded = 20.0 + tr if tr >= 7 else 17.0  # decode (from preprocessed at 15) over 5 ms
        ms = {"decoded": decoded, "sent": decoded + 0.2, "render_received": decoded + 0.6}
        ms["rendered"] = decoded + 0.6 + 300.0 + tr  # render over 250 ms, every TR
        ms["published"] = ms["rendered"] + 1.0  # end to end over 300 ms, every TR
        state.on_frame(frame_header(tr, 1000.0 + tr * TR_S, stage_ms=ms), now=float(tr))
    budgets = [w.text for w in state.warnings(10.0) if w.kind == "budget"]
    assert budgets == [
        "over budget (last 10 TRs): decode 3 (worst 14.0 ms > 5 ms at TR 9), "
        "render 10 (worst 309.0 ms > 250 ms at TR 9), end_to_end 10 (worst 339.6 ms > 300 ms "
        "at TR 9)"
    ]


def test_missed_trs_of_a_restarted_decoder_are_not_counted_twice():
    state = _state()
    _decoder(state, 0, now=0.0, pid=100, run="7", runs=1, missed=0)
    _frames(state, "7", range(10), now=0.0)
    assert "missed" not in _kinds(state, 1.0)
    # crashed after TR 9; restarted, it first sees acquisition index 15 and says 15 missed
    _decoder(state, 0, now=8.0, pid=200, run="7", runs=1, missed=15)
    _frames(state, "7", range(15, 20), now=8.0, fields={15: {"missed_before": 15}})
    assert _alert(state, "missed", 9.0) == "missed: 5 TRs never decoded in run 7 (TRs 10-14)"
    assert state.snapshot(9.0)["counts"]["missed_trs"] == 5  # not 15, not 20


def test_missed_ranges_are_the_last_ones_shortened_and_renderer_skips_are_not_missed():
    state = _state()
    _decoder(state, 0, now=0.0, run="7", runs=1, missed=0)
    # TRs 3-4 never decoded; 6 skipped by the renderer (decoded, not drawn); 9, 12-13, 20
    missed = {5: {"missed_before": 2}, 10: {"missed_before": 1}, 14: {"missed_before": 2},
              21: {"missed_before": 1}}  # fmt: skip
    trs = [0, 1, 2, 5, 7, 8, 10, 11, 14, 15, 16, 17, 18, 19, 21]
    _frames(state, "7", trs, now=0.0, fields=missed)
    _decoder(state, 1, now=1.0, run="7", runs=1, missed=6)
    assert _alert(state, "missed", 1.0) == (
        "missed: 6 TRs never decoded in run 7 (TRs …, 9, 12-13, 20)"
    )
    assert state.snapshot(1.0)["counts"]["missed_trs"] == 6
    # the next run starts clean; the count keeps the first run's
    _decoder(state, 2, now=2.0, run="8", runs=2, missed=6)
    _frames(state, "8", range(3), now=2.0)
    assert "missed" not in _kinds(state, 2.1)
    _frames(state, "8", [4], now=3.0, fields={4: {"missed_before": 1}})
    assert _alert(state, "missed", 3.1) == "missed: 1 TR never decoded in run 8 (TR 3)"
    assert state.snapshot(3.1)["counts"]["missed_trs"] == 7


def test_tr_ranges():
    assert tr_ranges([]) == []
    assert tr_ranges([4]) == ["4"]
    assert tr_ranges([3, 4, 5, 9, 11, 12]) == ["3-5", "9", "11-12"]


def test_warnings_are_sorted_by_one_severity_order():
    state = _state(fd_threshold_mm=0.5)
    state.on_status(status_header("recorder", "write_failed", 0, error="disk full"), now=0.0)
    _decoder(state, 0, now=0.0, run="7", runs=1)
    slow = {"rendered": 2500.0, "published": 2501.0}
    for tr in range(4):
        fd = 0.9 if tr == 2 else 0.1
        header = frame_header(tr, 1000.0 + tr * TR_S, stage_ms=slow, fd=fd, run="7")
        state.on_frame(header, now=0.1)
    state.on_status(status_header("renderer", "stopped", 0), now=0.2)
    _decoder(state, 1, now=0.5, run="8", runs=2)
    state.on_malformed("status", "status schema 9: this rt_recon reads schema 1 or older", 0.5)
    kinds = _kinds(state, 1.0)
    assert kinds == ["failed", "stopped", "new_series", "malformed", "late", "motion", "budget"]
    assert kinds == sorted(kinds, key=ALERT_SEVERITY.index)
    assert set(ALERT_SEVERITY) == set(Alert.model_fields["kind"].annotation.__args__)


def test_the_stream_cards_say_what_was_found():
    state = _state()
    snap = state.snapshot(0.0)
    assert snap["volume_source"]["level"] == "unknown"
    assert snap["marker_source"]["level"] == "unknown"
    state.on_volume_source(VolumeSourceReport(SOURCE, present=False), now=1.0)
    state.on_marker_inlet(False, now=1.0)
    snap = state.snapshot(1.5)
    assert (snap["volume_source"]["level"], snap["volume_source"]["text"]) == (
        "waiting", "no volume stream (source_id scanner_bridge) found",
    )  # fmt: skip
    assert snap["volume_source"]["age_s"] == 0.5
    assert (snap["marker_source"]["level"], snap["marker_source"]["text"]) == (
        "waiting", "no marker stream (source_id stimulus_markers) found",
    )  # fmt: skip
    state.on_volume_source(_bridge("8", "func_run2"), now=2.0)
    state.on_marker_inlet(True, now=2.0)
    snap = state.snapshot(2.0)
    assert snap["volume_source"] == {
        "source_id": SOURCE, "level": "ok", "present": True,
        "text": "bridge on host mri-pc: series 8 'func_run2', 74x74x36, TR 2.0 s",
        "host": "mri-pc", "name": "scanner", "run": "8", "series": "8",
        "series_description": "func_run2", "shape": [74, 74, 36], "tr_s": 2.0, "speed": 1.0,
        "error": None, "age_s": 0.0,
    }  # fmt: skip
    assert snap["marker_source"]["text"] == "marker stream open: 0 markers"
    state.on_marker(Marker.from_json({"stimulus_id": 1}), 1000.0, now=3.0)
    state.on_marker(Marker.from_json({"stimulus_id": 2}), 1001.0, now=4.0)
    snap = state.snapshot(7.25)
    assert snap["marker_source"]["text"] == "marker stream open: 2 markers, last 3.2 s ago"
    assert (snap["marker_source"]["markers"], snap["marker_source"]["last_age_s"]) == (2, 3.25)
    unreadable = VolumeSourceReport(
        SOURCE, present=True, name="other", host="pc2", uid="u", error="no desc/rt_recon element"
    )
    state.on_volume_source(unreadable, now=8.0)
    view = state.snapshot(8.0)["volume_source"]
    assert view["level"] == "waiting" and view["error"] == "no desc/rt_recon element"
    assert view["text"].startswith("volume stream on host pc2 found, but its description cannot")
    assert ConsoleStateMessage.model_validate(snap).to_json() == snap


def test_a_console_without_stream_ids_has_no_stream_cards():
    snap = ConsoleState(BUDGET_PRESETS_MS["cpu"]).snapshot(0.0)
    assert snap["volume_source"] is None and snap["marker_source"] is None
