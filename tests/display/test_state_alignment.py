"""The run card's alignment line and its warning, from the decoder's typed heartbeats alone
(its ``alignment`` counter, docs/protocol.md 3.3): no sockets, no clock."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from rt_recon.config import BUDGET_PRESETS_MS
from rt_recon.display.state import ConsoleState
from rt_recon.protocol import RunAlignment
from tests.display._helpers import status_header


def _alignment(mm: float, deg: float, *, converged: bool = True, tr: int = 0) -> dict[str, Any]:
    """The decoder's counter as it goes on the wire (limits 5 mm, 5 deg)."""
    return asdict(
        RunAlignment(
            tr=tr, translation_mm=mm, rotation_deg=deg, params=[mm, 0.0, 0.0, 0.0, 0.0, 0.0],
            converged=converged, limit_mm=5.0, limit_deg=5.0,
            within_limits=mm <= 5.0 and deg <= 5.0,
        )
    )  # fmt: skip


def _decoder(state: ConsoleState, seq: int, run: str, runs: int, **counters: Any) -> None:
    status = status_header("decoder", "streaming", seq, run=run, runs=runs, **counters)
    state.on_status(status, now=float(seq))


def _alerts(state: ConsoleState, now: float) -> list[str]:
    return [w.text for w in state.warnings(now) if w.kind == "alignment"]


def test_the_run_card_says_how_far_the_run_is_from_the_bundle_and_goes_amber_beyond_the_limit():
    state = ConsoleState(BUDGET_PRESETS_MS["cpu"])
    _decoder(state, 0, "01", 1)  # the run's first volume not decoded yet
    assert state.message(0.0).alignment is None and _alerts(state, 0.0) == []

    _decoder(state, 1, "01", 1, alignment=_alignment(3.14, 2.02))
    view = state.message(1.0).alignment
    assert view is not None and view.text == "aligned to the bundle: 3.1 mm, 2.0 deg"
    assert not view.amber and view.tr == 0 and view.within_limits
    assert _alerts(state, 1.0) == []

    # the next run: its first heartbeat has no alignment yet; the last run's is not shown
    _decoder(state, 2, "02", 2)
    assert state.message(2.0).alignment is None
    _decoder(state, 3, "02", 2, alignment=_alignment(7.9, 6.2))
    view = state.message(3.0).alignment
    assert view.amber and view.text == "aligned to the bundle: 7.9 mm, 6.2 deg (limit 5 mm, 5 deg)"
    assert _alerts(state, 3.0) == [
        "alignment: run 02 is 7.9 mm, 6.2 deg from the decoder bundle's reference (limit 5 mm, "
        "5 deg): its masks may miss their voxels; re-fit the bundle on this session, or "
        "re-position the participant"
    ]
    assert state.snapshot(3.0)["alignment"]["amber"] is True

    # a fit that did not converge is amber whatever its numbers
    _decoder(state, 4, "03", 3, alignment=_alignment(0.4, 0.1, converged=False, tr=2))
    view = state.message(4.0).alignment
    assert view.amber and view.text.endswith("(did not converge)")
    (text,) = _alerts(state, 4.0)
    assert "could not be aligned" in text and "at TR 2" in text


def test_a_heartbeat_of_the_run_before_does_not_show_its_alignment_on_the_new_run():
    state = ConsoleState(BUDGET_PRESETS_MS["cpu"])
    _decoder(state, 0, "01", 1, alignment=_alignment(9.0, 1.0))
    assert _alerts(state, 0.0)
    _decoder(state, 1, "02", 2)  # the new run began
    # a late heartbeat of run 01 (it is stale: the tracker keeps run 02 current)
    _decoder(state, 2, "01", 1, alignment=_alignment(9.0, 1.0))
    assert state.runs.current.run == "02"
    assert state.message(2.0).alignment is None and _alerts(state, 2.0) == []
