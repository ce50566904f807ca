"""The decoder aligns each run's first volume to its bundle's reference and reports it in its
heartbeat (``alignment``) from that TR until the next run: in process, no socket."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from rt_recon.acquire.nifti import load_nifti_run
from rt_recon.decode.bundle import DecoderBundle
from rt_recon.nodes.decoder import DecoderNode
from rt_recon.nodes.runner import NodeContext
from rt_recon.protocol import (
    Latents,
    RunAlignment,
    Status,
    VolumeStreamMeta,
    counters_json,
    decode_message,
)
from tests.nodes.test_node_steps import Collect, ListInlet


@pytest.fixture
def test_run(small_dataset):
    files = small_dataset.runs("test")[0]
    run = load_nifti_run(files.bold, files.events)
    meta = VolumeStreamMeta(shape=run.shape, affine=run.affine, tr_s=run.tr_s, session="s", run="9")
    return run, meta


def _shifted(volume: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """The flat volume moved one voxel along its first axis (the participant moved)."""
    grid = volume.reshape(shape, order="F")
    return np.ravel(ndimage.shift(grid, (1.0, 0.0, 0.0), order=1, mode="nearest"), order="F")


def test_each_run_reports_its_alignment_from_its_first_tr_and_the_next_run_starts_afresh(
    node_config, test_run
):
    run, meta = test_run
    voxel_mm = float(np.linalg.norm(meta.affine[:3, 0]))
    config = node_config.with_overrides({"decoder.max_alignment_mm": voxel_mm / 2})
    bundle = DecoderBundle.load(config.decoder.bundle)
    assert bundle.preprocess.motion is not None  # the small bundle realigns
    node, ctx = DecoderNode(config, bundle), NodeContext(Collect())
    v = run.volumes
    first = ListInlet(meta, v[:3], [0.0, 1.0, 2.0], [0, 1, 2], end=True)
    moved = [_shifted(x, meta.shape) for x in v[3:6]]
    second = ListInlet(VolumeStreamMeta(**{**vars(meta), "run": "10"}), moved, [9.0, 10.0, 11.0],
                       [0, 1, 2])  # fmt: skip
    node.reopen = lambda: second
    node.start(ctx, first)
    assert node.counters.alignment is None  # no volume yet

    reports = []
    for _ in range(7):  # 3 volumes, the end of run 9, 3 volumes of run 10
        node.step()
        reports.append(node.counters.alignment)
    headers = [Latents.from_message(m).header for m in ctx.publisher.of("latents")]
    assert [(h.run, h.tr) for h in headers] == [("9", t) for t in range(3)] + [
        ("10", t) for t in range(3)
    ]
    # run 9: the bundle's own session, aligned at TR 0 and kept for the run
    aligned = reports[0]
    assert isinstance(aligned, RunAlignment) and reports[1] is reports[2] is aligned
    assert aligned.tr == 0 and aligned.converged and aligned.within_limits
    assert aligned.translation_mm < voxel_mm / 4 and aligned.rotation_deg < 0.5
    np.testing.assert_allclose(aligned.params, headers[0].motion, atol=1e-3)
    # the run ended: nothing reported for the next run until its first volume
    assert reports[3] is None
    # run 10: the head one voxel away, beyond the limit
    moved_report = reports[4]
    assert reports[5] is reports[6] is moved_report
    assert moved_report.tr == 0 and moved_report.converged and not moved_report.within_limits
    assert moved_report.translation_mm == pytest.approx(voxel_mm, abs=0.3 * voxel_mm)
    assert moved_report.limit_mm == voxel_mm / 2
    np.testing.assert_allclose(moved_report.params, headers[3].motion, atol=1e-3)

    # the heartbeat carries it, as JSON, and reads back (the recorder keeps the heartbeats)
    heartbeat = Status(node="decoder", pid=1, state="streaming", seq=0, t=0.0, uptime_s=1.0,
                       counters=counters_json(node.counters))  # fmt: skip
    wire = decode_message(heartbeat.encode()).header
    back = Status.from_json(json.loads(json.dumps(wire))).counters["alignment"]
    assert back == {
        "tr": 0,
        "translation_mm": moved_report.translation_mm,
        "rotation_deg": moved_report.rotation_deg,
        "params": moved_report.params,
        "converged": True,
        "limit_mm": voxel_mm / 2,
        "limit_deg": config.decoder.max_alignment_deg,
        "within_limits": False,
    }
