"""Cued imagery runs beside a realistic session: the shared events convention, the same pictures
as the vision runs, the vision session untouched (a tiny session)."""

from __future__ import annotations

import hashlib

import pytest

from rt_recon.acquire.events import read_events
from rt_recon.config import SimulationSection
from rt_recon.errors import DataError
from rt_recon.protocol import trial_samples
from rt_recon.simulators.imagery_runs import (
    IMAGERY_DIR,
    CuedImageryDesign,
    ensure_imagery_runs,
    imagery_schedule,
)
from rt_recon.simulators.session import generate_session
from tests.conftest import SMALL_SIM

TINY = SimulationSection(
    participant="realistic", seed=6, tr_s=1.0, image_size=32, grid=(16, 20, 12),
    n_train_runs=1, trials_per_run=4, stimulus_trs=2, lead_in_trs=3, lead_out_trs=8, motion=0.0,
)  # fmt: skip


def _tree_digest(root) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and IMAGERY_DIR not in p.relative_to(root).parts
    }


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    return generate_session(TINY, tmp_path_factory.mktemp("imagery") / "ds")


@pytest.fixture(scope="module")
def imagery(session):
    before = _tree_digest(session.root)
    dataset = ensure_imagery_runs(session, TINY)
    return dataset, before


def test_imagery_runs_cue_the_vision_runs_pictures_on_the_second_day(session, imagery):
    dataset, _ = imagery
    vision = {r["role"]: r for r in session.manifest["runs"] if r["role"] != "train"}
    runs = {r["role"]: r for r in dataset.manifest["runs"]}
    assert sorted(runs) == ["test", "validation"]
    for role, run in runs.items():
        assert run["stimulus_ids"] == vision[role]["stimulus_ids"]
        assert run["vision_run"] == vision[role]["run"] and run["session"] == "02"
        files = dataset.runs(role)[0]
        assert files.bold.is_file() and "task-imagery" in files.bold.name
        assert dataset.stimulus_images(run["stimulus_ids"]).shape == (4, 32, 32, 3)


def test_events_follow_the_cue_then_imagery_convention(session, imagery):
    dataset, _ = imagery
    files = dataset.runs("test")[0]
    events = read_events(files.events)
    ids = dataset.manifest["runs"][1]["stimulus_ids"]
    assert [e["trial_type"] for e in events] == ["cue", "imagery"] * 4
    schedule = imagery_schedule(TINY, CuedImageryDesign(), 4)
    captions = session.captions(ids)
    for k, (cue, imagined) in enumerate(zip(events[::2], events[1::2], strict=True)):
        assert "stimulus_id" not in cue and cue["caption"] == captions[k]
        assert cue["duration"] == pytest.approx(1.0)  # one TR
        assert imagined["stimulus_id"] == ids[k] and imagined["caption"] == captions[k]
        assert imagined["onset"] == pytest.approx(cue["onset"] + cue["duration"])
        assert imagined["onset"] == pytest.approx(schedule.onsets[k])
        assert imagined["duration"] == pytest.approx(TINY.stimulus_trs * TINY.tr_s)
    # the trial rule: each imagery row is a trial at the imagining period, no cue is one
    samples = trial_samples(events, files.n_trs, files.tr_s, 0)
    assert samples == [(round(o), i) for o, i in zip(schedule.onsets, ids, strict=True)]
    assert files.n_trs == TINY.lead_in_trs + 4 * (1 + 2 + 1) + TINY.lead_out_trs


def test_the_vision_session_is_untouched_and_imagery_runs_are_cached(session, imagery):
    dataset, before = imagery
    assert _tree_digest(session.root) == before
    bold = dataset.runs("test")[0].bold
    stamp = bold.stat().st_mtime_ns
    again = ensure_imagery_runs(session, TINY)
    assert again.manifest["runs"] == dataset.manifest["runs"]
    assert bold.stat().st_mtime_ns == stamp  # not generated again


def test_imagery_runs_need_the_realistic_participant_and_the_sessions_own_settings(session):
    with pytest.raises(DataError, match="realistic participant"):
        ensure_imagery_runs(session, SMALL_SIM)
    with pytest.raises(DataError, match="not the ones given"):
        ensure_imagery_runs(session, TINY.model_copy(update={"snr": 3.0}))
