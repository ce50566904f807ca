"""Real scanner exports written at TR pace by the export simulator, read live by the bridge.

What arrives at a real LSL inlet must be every volume, in order, identical
(value for value, with the same geometry) to a direct conversion of the same
series (:func:`rt_recon.acquire.series.read_series`, what ``rt-recon
convert`` writes).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from rt_recon.acquire.formats import ReadOptions
from rt_recon.acquire.series import read_series
from rt_recon.simulators.scanner_export import export_series
from tests.acquire._harness import RunningBridge
from tests.acquire._shared import shared_path

pytestmark = pytest.mark.shared_data


def _export_in_background(source, dest, **kwargs) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def run() -> None:
        try:
            result["report"] = export_series(source, dest, **kwargs)
        except BaseException as exc:  # checked by the test
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def _stream_and_compare(source, tmp_path, speed, options=None, **bridge_options):
    options = options or ReadOptions()
    direct = read_series(source, options)
    watch = tmp_path / "export"
    watch.mkdir()
    with RunningBridge(watch, speed=speed, read=options, **bridge_options) as bridge:
        thread, exported = _export_in_background(source, watch, speed=speed, options=options)
        meta = bridge.inlet().meta
        stamps, values = bridge.collect(len(direct.volumes), timeout=10 * direct.tr_s / speed + 5)
        thread.join(timeout=60)
        report = bridge.stop()
    assert "error" not in exported, exported.get("error")
    assert len(values) == len(direct.volumes), report.summary()
    for k, (got, volume) in enumerate(zip(values, direct.volumes, strict=True)):
        assert np.array_equal(got, volume.flat()), f"volume {volume.index} (#{k}) differs"
    assert [v.index for v in report.streamed] == direct.indices
    assert report.issues == [] and report.unreadable == []
    assert meta.shape == direct.shape
    np.testing.assert_allclose(meta.affine, direct.affine, atol=1e-9)
    assert meta.tr_s == pytest.approx(direct.tr_s) and meta.speed == speed
    assert np.all(np.diff(stamps) > 0)
    return direct, stamps, report


@pytest.mark.slow
def test_siemens_trio_run_arrives_complete_in_order_and_identical(tmp_path):
    source = shared_path("siemens_trio_mosaic_run", "dicom")
    speed = 20.0
    direct, stamps, report = _stream_and_compare(source, tmp_path, speed)
    assert len(direct.volumes) == 155 and direct.shape == (74, 74, 36)
    assert np.all(report.latencies() >= 0)  # no volume left before its file was complete
    # anchored stamps keep the scanner's own spacing (its clock: ~1.98 s per volume)
    scanner = np.diff(direct.times()) / speed
    np.testing.assert_allclose(np.median(np.diff(stamps)), np.median(scanner), rtol=0.05)


@pytest.mark.slow
def test_a_run_on_a_network_share_is_streamed_by_polling(tmp_path):
    full = shared_path("siemens_trio_mosaic_run", "dicom")
    subset = tmp_path / "subset"
    subset.mkdir()
    for path in sorted(full.glob("*.dcm"))[:30]:
        (subset / path.name).symlink_to(path)
    direct, *_ = _stream_and_compare(subset, tmp_path, 20.0, watch_mode="poll", settle=0.1)
    assert len(direct.volumes) == 30


@pytest.mark.parametrize(
    ("parts", "speed", "options"),
    [
        (("pyneal_vendor_samples", "GE_env", "funcData", "s1925"), 4.0, ReadOptions()),
        (("pyneal_vendor_samples", "Philips_env", "funcData", "0001"), 4.0, ReadOptions(tr_s=1.0)),
        (("pyneal_vendor_samples", "Siemens_env", "funcData"), 4.0, ReadOptions()),
        (("dcm_qa_mosaic", "In", "cmrr_Asc_6"), 16.0, ReadOptions()),
    ],
    ids=["ge-slices", "philips-parrec", "siemens-mosaic", "cmrr-multiband"],
)
def test_every_vendor_export_streams_as_it_converts(tmp_path, parts, speed, options):
    _stream_and_compare(shared_path(*parts), tmp_path, speed, options)
