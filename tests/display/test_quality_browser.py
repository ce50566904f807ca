"""Live data quality on the console in headless Chromium: a run with a motion burst.

The synthetic participant's test run, with four volumes shifted by 1-2.5 voxels and made 3%
brighter, goes through the decoder's own per-TR path up to the quality figures
(:meth:`~rt_recon.decode.features.FeatureExtractor.realign`, framewise displacement, a
:class:`~rt_recon.preprocess.quality.QualityMonitor` on the ``ev`` and ``hv`` masks as the
heads ``z`` and ``c``, :func:`~rt_recon.nodes.decoder.data_quality`); each TR's frame then
goes to a real console process over ZeroMQ, as the renderer sends it. After every TR the
page must show that TR's tSNR and global signal, and the stop banner exactly while five of
the last twenty TRs crossed a threshold: from the TR after the burst until it has left them.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pylsl
import pytest
from scipy import ndimage

from rt_recon.acquire.masks import load_mask
from rt_recon.acquire.nifti import load_nifti_run
from rt_recon.config import FitSection, QualitySection
from rt_recon.decode.features import FeatureExtractor
from rt_recon.nodes.decoder import data_quality
from rt_recon.preprocess import PreprocessSpec
from rt_recon.preprocess.fd import FramewiseDisplacement
from rt_recon.preprocess.quality import QualityMonitor
from rt_recon.protocol import TOPIC_FRAME, DataQuality
from rt_recon.transport.zmq import Publisher
from tests.display._helpers import (
    ConsoleProcess,
    console_config,
    frame_header,
    frame_message,
    pattern,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

BURST = range(18, 22)


def _wait_js(page, expression: str, timeout_ms: int = 10_000) -> None:
    """Poll a JavaScript expression until truthy (the pages' CSP forbids wait_for_function)."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_ms} ms for: {expression}")
        time.sleep(0.01)


def _run_with_a_motion_burst(dataset, quality: QualitySection) -> list[tuple[float, DataQuality]]:
    """Each TR's framewise displacement (mm) and data quality, as the decoder measures them."""
    files = dataset.runs("test")[0]
    run = load_nifti_run(files.bold, files.events)
    rois = {"z": load_mask(dataset.mask_path("ev")), "c": load_mask(dataset.mask_path("hv"))}
    voxels = np.union1d(load_mask(dataset.mask_path("brain")), np.concatenate(list(rois.values())))
    volumes = run.volumes.copy()
    for k, tr in enumerate(BURST):
        volume = volumes[tr].reshape(run.shape, order="F")
        moved = ndimage.shift(volume, (1.0 + 0.5 * k, -0.5, 0.5), order=1, mode="nearest")
        volumes[tr] = np.ravel(moved * 1.03, order="F")
    reference = run.volumes[:5].mean(axis=0).reshape(run.shape, order="F")
    spec = PreprocessSpec.from_fit(FitSection(), run.affine, run.tr_s)
    extractor = FeatureExtractor(spec, voxels, run.shape, run.affine, reference)
    monitor = QualityMonitor(
        len(voxels),
        {name: np.searchsorted(voxels, idx) for name, idx in rois.items()},
        window=quality.window_trs,
        outlier_z=quality.max_dvars_z,
    )
    fd = FramewiseDisplacement()
    out = []
    for volume in volumes:
        values, measured = extractor.realign(volume)
        out.append((fd.update(measured.params), data_quality(monitor.update(values))))
    return out


def _cell(page, measure: str) -> float | None:
    value = page.get_attribute(f'#quality-table tr[data-measure="{measure}"] td[data-value]',
                               "data-value")  # fmt: skip
    return None if value in (None, "") else float(value)


def test_the_console_shows_tsnr_and_global_signal_per_tr_and_a_stop_banner_after_a_burst(
    context, tmp_path, small_dataset
):
    config = console_config(tmp_path)
    trs = _run_with_a_motion_burst(small_dataset, config.quality)
    # the burst and the volume after it (the change back) cross; nothing else does
    crossing = [
        tr for tr, (fd, q) in enumerate(trs)
        if fd > config.console.fd_threshold_mm or (q.dvars_z or 0) > config.quality.max_dvars_z
    ]  # fmt: skip
    assert crossing == [*BURST, BURST[-1] + 1]
    window, enough = config.quality.stop_window_trs, config.quality.stop_after_trs
    stop_at = [sum(tr - window < t <= tr for t in crossing) >= enough for tr in range(len(trs))]
    assert stop_at.index(True) == BURST[-1] + 1 and not stop_at[-1]  # the burst leaves it
    errors: list[str] = []
    with (
        ConsoleProcess(config, tmp_path / "session.json") as console,
        Publisher(config.renderer.frames_endpoint) as renderer,
    ):
        renderer.wait_for_subscribers(1, TOPIC_FRAME, timeout=30)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(console.url + "/console")
        _wait_js(page, "document.body.dataset.socket === 'open'")
        t0 = pylsl.local_clock()
        banner = page.locator('#warnings li[data-kind="quality"]')
        texts: dict[int, str] = {}
        for tr, (fd, quality) in enumerate(trs):
            header = frame_header(tr, t0 + tr * 0.25, fd=round(fd, 4),
                                  quality=quality.model_dump(mode="json"))  # fmt: skip
            renderer.send_frames(frame_message(header, pattern(tr, 16)))
            _wait_js(page, f"document.body.dataset.qualityTr === '{tr}'")
            # this TR's numbers, as the decoder measured them
            assert _cell(page, "tsnr-z") == quality.tsnr["z"], f"TR {tr}"
            assert _cell(page, "tsnr-c") == quality.tsnr["c"], f"TR {tr}"
            assert _cell(page, "global") == quality.global_pct, f"TR {tr}"
            assert _cell(page, "dvars") == quality.dvars_z, f"TR {tr}"
            # the stop banner while five of the last twenty TRs crossed, and only then
            assert banner.count() == int(stop_at[tr]), f"TR {tr}"
            if stop_at[tr]:
                texts[tr] = banner.inner_text()
                assert page.locator("#warnings li").first.get_attribute("data-kind") == "quality"

        text = texts[BURST[-1] + 1]
        assert text.startswith("stop: run 01 should be stopped: 5 of its last 20 TRs crossed")
        worst_fd = max(range(len(trs)), key=lambda t: trs[t][0])
        assert f"framewise displacement {trs[worst_fd][0]:.2f} mm at TR {worst_fd}" in text
        worst_z = max(crossing, key=lambda t: trs[t][1].dvars_z)
        assert f"z {trs[worst_z][1].dvars_z:.1f} at TR {worst_z} (max z 8; 5 TRs)" in text
        # the traces hold every TR with a figure: tSNR of both ROIs, the global signal
        n_tsnr = sum(v is not None for _, q in trs for v in q.tsnr.values())
        n_global = sum(q.global_pct is not None for _, q in trs)
        assert page.get_attribute("#tsnr-plot", "data-points") == str(n_tsnr)
        assert page.get_attribute("#global-plot", "data-points") == str(n_global)
        assert n_tsnr > 40 and n_global > 20
        last = len(trs) - 1
        still = sum(last - window < t <= last for t in crossing)  # the burst's end, still there
        assert f"{still} of the last 20 TRs over a threshold" in page.inner_text("#quality-note")
        assert page.get_attribute('#quality-table tr[data-measure="tsnr-z"]', "class") == ""
        state = json.loads(console.get("/api/state")[2])
        assert [p["tr"] for p in state["quality"]["points"]] == list(range(len(trs)))
        assert state["quality"]["rois"] == ["z", "c"]
        report = page.evaluate("window.rtSchema")
        assert report["loaded"] and report["errors"] == []
    assert not errors
