"""The console state of a node that is up but cannot do its job (the recorder, disk full)."""

from __future__ import annotations

from rt_recon.display.state import AWAY_AFTER_S, ConsoleState
from rt_recon.evaluate.latency import CPU_BUDGET_MS
from tests.display._helpers import status_header

ERROR = "cannot write the recording /d/rec.h5: No space left on device (ENOSPC): the disk is full"


def test_a_recorder_whose_disk_is_full_is_failed_with_its_error_until_it_goes_silent():
    state = ConsoleState(CPU_BUDGET_MS)
    state.on_status(status_header("recorder", "streaming", 0, volumes=10), now=1.0)
    state.on_status(status_header("renderer", "running", 0, rendered=9), now=1.0)
    state.on_status(status_header("recorder", "write_failed", 1, error=ERROR, errno=28), now=2.0)
    state.on_status(status_header("renderer", "running", 1, rendered=10), now=2.0)
    levels = {node["name"]: node["level"] for node in state.snapshot(2.5)["nodes"]}
    assert levels == {"decoder": "unknown", "renderer": "ok", "recorder": "failed"}
    assert state.renderer_present(2.5)  # rendering goes on
    warnings = state.warnings(2.5)
    assert {"kind": "failed", "text": f"recorder write failed: {ERROR}"} in warnings
    # Silent for good: away, like any node.
    assert state.node_level("recorder", 2.0 + AWAY_AFTER_S + 0.1) == "away"
