"""The console state of a node that is up but cannot do its job (the recorder, disk full)."""

from __future__ import annotations

from rt_recon.config import BUDGET_PRESETS_MS
from rt_recon.display.messages import Alert
from rt_recon.display.state import ConsoleState
from rt_recon.protocol import AWAY_AFTER_S
from tests.display._helpers import status_header

ERROR = "cannot write the recording /d/rec.h5: No space left on device (ENOSPC): the disk is full"


def test_a_recorder_whose_disk_is_full_is_failed_with_its_error_until_it_goes_silent():
    state = ConsoleState(BUDGET_PRESETS_MS["cpu"])
    state.on_status(status_header("recorder", "streaming", 0, volumes=10), now=1.0)
    state.on_status(status_header("renderer", "running", 0, rendered=9), now=1.0)
    state.on_status(status_header("recorder", "write_failed", 1, error=ERROR, errno=28), now=2.0)
    state.on_status(status_header("renderer", "running", 1, rendered=10), now=2.0)
    levels = {node["name"]: node["level"] for node in state.snapshot(2.5)["nodes"]}
    assert levels == {"decoder": "unknown", "renderer": "ok", "recorder": "failed"}
    assert state.renderer_present(2.5)  # rendering goes on
    warnings = state.warnings(2.5)
    assert Alert(kind="failed", text=f"recorder write failed: {ERROR}") in warnings
    # Silent for good: away, like any node.
    assert state.node_level("recorder", 2.0 + AWAY_AFTER_S + 0.1) == "away"


def test_a_recorder_whose_disk_runs_low_is_warned_about_while_it_still_records():
    state = ConsoleState(BUDGET_PRESETS_MS["cpu"])
    low = {"disk_free_mb": 612.4, "disk_minutes_left": 7.6, "disk_low": True}
    state.on_status(status_header("recorder", "streaming", 0, disk_low=False), now=1.0)
    assert not [w for w in state.warnings(1.0) if w.kind == "disk"]
    state.on_status(status_header("recorder", "streaming", 1, **low), now=2.0)
    assert state.node_level("recorder", 2.0) == "ok"  # still recording
    assert Alert(
        kind="disk", text="recorder disk low: 612 MB free, about 8 min of recording left"
    ) in state.warnings(2.0)
    # once the write fails, the failure says it all
    state.on_status(status_header("recorder", "write_failed", 2, error=ERROR, **low), now=3.0)
    kinds = [w.kind for w in state.warnings(3.0)]
    assert "failed" in kinds and "disk" not in kinds


def test_a_decoder_refusing_a_run_on_another_grid_is_failed_with_both_grids_until_it_fits():
    refusal = (
        "run 2 (series 2) refused, not decoded: decoder bundle was fitted on 197136 voxels "
        "(shape (74, 74, 36), mask 'full'), but the stream sends 147456 voxels "
        "(shape (64, 64, 36), mask 'full')"
    )
    state = ConsoleState(BUDGET_PRESETS_MS["cpu"])
    state.on_status(status_header("decoder", "streaming", 0, run="7", series="7"), now=1.0)
    state.on_status(
        status_header("decoder", "refused", 1, run="2", series="2", error=refusal), now=2.0
    )
    assert state.node_level("decoder", 2.0) == "failed"  # red, as before
    warnings = state.warnings(2.0)
    # its own kind, not the generic failure, with both grids; first of the warnings
    assert warnings[0] == Alert(kind="geometry", text=f"decoder refused: {refusal}")
    assert not [w for w in warnings if w.kind == "failed"]
    state.on_status(status_header("decoder", "streaming", 2, run="8", series="8"), now=3.0)
    assert state.node_level("decoder", 3.0) == "ok"
    assert not [w for w in state.warnings(3.0) if w.kind in ("failed", "geometry")]
