"""A recorded session in trial mode, end to end: replay -> decoder (markers) -> renderer,
recorder capturing everything, then ``rt-recon evaluate`` on the recording.

Checks: every TR decoded once and recorded; each trial's estimate completes
at its onset TR + lag and there equals offline decoding; the report's
numbers equal metrics computed here directly from the frames."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from rt_recon.acquire.nifti import load_nifti_run
from rt_recon.apps.pipeline import PIPELINE_OVERRIDES, run_pipeline
from rt_recon.decode.bundle import DecoderBundle
from rt_recon.decode.online import OnlineDecoder
from rt_recon.evaluate.metrics import pixcorr, pixel_features, two_way_identification
from rt_recon.evaluate.ssim import mean_ssim
from rt_recon.protocol import trial_samples
from rt_recon.record.recording import RecordingReader
from tests.conftest import free_port

pytestmark = pytest.mark.slow


def test_trial_mode_session_is_recorded_and_the_report_matches(
    node_config, small_dataset, tmp_path
):
    config = node_config.with_overrides(
        {
            **PIPELINE_OVERRIDES,
            "recorder.status_endpoint": f"tcp://127.0.0.1:{free_port()}",
            # at 8x a 4-TR inlet buffer is 0.5 s: on a loaded machine a stalled decoder would
            # (by design) drop the oldest volumes; this test is about correctness, not load
            "stream.buffer_trs": 16,
            # frames of trial TRs are what the report scores: give the renderer time to draw
            # each one even on a loaded machine (latest-only, it skips what it cannot keep up with)
            "replay.speed": 2.0,
        }
    )
    config_path = tmp_path / "session.json"
    config_path.write_text(config.to_json())
    files = small_dataset.runs("test")[0]
    run = load_nifti_run(files.bold, files.events)
    replay_args = [str(files.bold), "--events", str(files.events)]
    result = run_pipeline(config, config_path, replay_args, len(run.volumes))

    headers = result.latents
    assert [h["tr"] for h in headers] == list(range(len(run.volumes)))
    assert {h["mode"] for h in headers} == {"trial"}
    bundle = DecoderBundle.load(config.decoder.bundle)
    lag = bundle.window.lag_trs
    samples = trial_samples(run.events, len(run.volumes), run.tr_s, lag)
    completes = [
        (h["tr"], h["trial"]["stimulus_id"])
        for h in headers
        if h.get("trial") and h["trial"]["complete"] and h["tr"] == h["trial"]["onset_tr"] + lag
    ]
    assert completes == samples  # every trial completes at onset + lag, in order

    offline = OnlineDecoder(bundle)
    expected = {tr: offline.update(v) for tr, v in enumerate(run.volumes)}
    with RecordingReader(config.recording_path) as reading:
        values, _ = reading.volumes()
        rec_headers, z, _ = reading.latents()
    np.testing.assert_array_equal(values, run.volumes)  # every volume, in order, exactly
    for (tr, _), header_z in ((s, z[s[0]]) for s in samples):
        assert rec_headers[tr]["tr"] == tr
        np.testing.assert_allclose(header_z, expected[tr]["z"], rtol=1e-5, atol=1e-6)

    # metrics computed here, from the frames this process received (a latest-only renderer
    # may skip a stale TR under load: such a trial has no frame and counts as missing)
    frames = {f.header["tr"]: f.arrays["image"] for f in result.frames}
    scored = [(tr, sid) for tr, sid in samples if tr in frames]
    assert len(scored) >= 2
    recons = np.stack([frames[tr] for tr, _ in scored])
    truths = small_dataset.stimulus_images([sid for _, sid in scored])
    direct = {
        "identification": two_way_identification(pixel_features(recons), pixel_features(truths)),
        "pixcorr": pixcorr(pixel_features(recons), pixel_features(truths)),
        "ssim": mean_ssim(recons, truths),
    }

    report_dir = tmp_path / "report"
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "rt_recon",
            "evaluate",
            str(config.recording_path),
            "--dataset",
            str(small_dataset.root),
            "--out",
            str(report_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    metrics = json.loads((report_dir / "metrics.json").read_text())
    assert metrics["n_trials"] == len(scored)
    assert metrics["n_missing"] == len(samples) - len(scored)
    for key, value in direct.items():
        assert metrics[key] == pytest.approx(value, abs=1e-9)
    page = (report_dir / "report.html").read_text()
    assert f"{100 * direct['identification']:.1f}%" in page
    assert (
        json.loads(page.split('id="metrics" type="application/json">')[1].split("</script>")[0])
        == metrics
    )
