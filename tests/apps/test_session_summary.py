"""The end-of-session summary of ``rt-recon run`` from its nodes' heartbeats: a restarted
decoder's TRs are counted once, and without a recording its restart is named from the
heartbeats (the recording names the downtime exactly: tests/apps/test_crash_recovery.py)."""

from __future__ import annotations

from rt_recon.apps.session import HeartbeatWatch, _summarize
from rt_recon.config import SessionConfig

#: A session of one decoder: no recording, so the summary has only the heartbeats.
CONFIG = SessionConfig().with_overrides({"run.nodes": ["decoder"]})


def _decoder(watch: HeartbeatWatch, pid: int, first_run: str | None, **counters: object) -> None:
    """What the watch keeps of decoder process ``pid``: its first run and last counters."""
    watch.last[("decoder", pid)] = {"missed": 0, "skipped": 0, "published": 0, **counters}
    if first_run is not None:
        watch.first_run[("decoder", pid)] = first_run


def test_a_restarted_decoder_counts_each_tr_once_and_is_named_without_a_recording():
    watch = HeartbeatWatch([], CONFIG)  # no sockets: the heartbeats are set below
    # pid 10: run 7, TRs 0..44 decoded (its last heartbeat), then killed; pid 11 resumed run
    # 7 at TR 60 (missed_before 60, decoded 60..154), then run 8 from TR 0 (20 TRs, 2 missed)
    _decoder(watch, 10, "7", run="7", runs=1, tr=44, published=45)
    _decoder(watch, 11, "7", run="8", runs=2, tr=19, published=95 + 18, missed=60 + 2)
    summary = _summarize(watch, CONFIG, ("decoder",), 10.0)
    assert (summary.trs, summary.missed, summary.skipped, summary.runs) == (175, 17, 0, 2)
    assert summary.not_decoded == [
        "decoder down: run 7 after TR 44 (decoder restart: pid 10 -> pid 11); the TRs until "
        "it resumed are counted as missed"
    ]


def test_a_decoder_restarted_between_runs_counts_nothing_twice():
    watch = HeartbeatWatch([], CONFIG)
    _decoder(watch, 10, "7", run="7", runs=1, tr=9, published=10)
    _decoder(watch, 11, "8", run="8", runs=1, tr=9, published=10)  # began run 8 at TR 0
    summary = _summarize(watch, CONFIG, ("decoder",), 10.0)
    assert (summary.trs, summary.missed, summary.runs) == (20, 0, 2)
    assert summary.not_decoded == []
