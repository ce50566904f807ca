"""``rt-recon replay`` of a session in segments whose first segment is on another grid than the
decoder's bundle: every part replayed in order, each as its own run on its own grid.

The session is recorded by real decoder and recorder processes from two LSL outlets, one
after the other, as a bridge streams two series: series 2 of another scanner
(dcm_qa_mosaic, 64x64x36), then series 7, the first volumes of the real Siemens run
(74x74x36), which the decoder's bundle fits. Live, the decoder refuses series 2 and
decodes series 7; the recorder writes series 2 in segment 1 and series 7 in segment 2
(another grid). The replay must do the same: part 1 refused, part 2 decoded to the very
latents recorded live, both parts recorded again, each in a segment of its own grid.
"""

from __future__ import annotations

import re
import signal
import time
import zlib
from pathlib import Path

import numpy as np
import pylsl
import pytest

from rt_recon.acquire.nifti import RecordedRun
from rt_recon.acquire.series import read_series
from rt_recon.config import SessionConfig
from rt_recon.nodes.ready import ReadyWatcher
from rt_recon.protocol import VolumeStreamMeta
from rt_recon.record.segments import SessionReader, segment_path
from rt_recon.record.to_run import recorded_parts
from rt_recon.transport.lsl import VolumeOutlet
from tests.acquire._shared import shared_path
from tests.conftest import NodeProcesses
from tests.nodes._heartbeats import wait_for_heartbeat
from tests.nodes._scanner_runs import bundle_on_grid, copy_series

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

N_SIEMENS = 10  # volumes of series 7: keep it small
SPEED = 10.0  # live and replayed
TIMEOUT = 120.0  # generous: a loaded 2-core machine


def _series(folder: Path, label: str) -> tuple[str, RecordedRun]:
    series = read_series(folder)
    assert series.label == label
    return label, series.to_run()


def _stream(config: SessionConfig, label: str, run: RecordedRun, recorded_before: int) -> None:
    """Stream ``run`` as series ``label`` from its own outlet, once the decoder and the
    recorder are on it, at ``SPEED`` times its TR; end the run and wait until the recorder
    has every volume so far (``recorded_before`` + this run's)."""
    meta = VolumeStreamMeta(
        shape=run.shape, affine=run.affine, tr_s=run.tr_s, session=config.session.id,
        run=label, series=label, speed=SPEED,
    )  # fmt: skip
    stream = config.stream
    with VolumeOutlet(meta, stream.name, stream.source_id, stream.buffer_trs) as outlet:
        awaited = {
            "decoder": config.decoder.latents_endpoint,
            "recorder": config.recorder.status_endpoint,
        }
        ready = ReadyWatcher(awaited, stream.source_id, stream_uid=outlet.uid)
        deadline = time.monotonic() + TIMEOUT
        while not ready():
            assert time.monotonic() < deadline, f"not on series {label}: {ready.missing()}"
            time.sleep(0.05)
        ready.close()
        t0 = pylsl.local_clock() + 0.05
        for index, values in enumerate(run.volumes):
            due = t0 + index * meta.sample_interval
            while (wait := due - pylsl.local_clock()) > 0:
                time.sleep(wait)
            outlet.push(values, due, index)
        outlet.end_run()
        n = recorded_before + len(run.volumes)
        wait_for_heartbeat(
            config.recorder.status_endpoint,
            lambda b: b["volumes"] == n,
            f"recording {n} volumes",
            TIMEOUT,
        )


def _record(
    processes: NodeProcesses, config: SessionConfig, series: list[tuple[str, RecordedRun]]
) -> None:
    recorder = processes.node("recorder", config)
    decoder = processes.node("decoder", config)
    recorded = 0
    for label, run in series:
        _stream(config, label, run, recorded)
        recorded += len(run.volumes)
    last_label, last_run = series[-1]
    wait_for_heartbeat(
        config.decoder.latents_endpoint,
        lambda b: b["run"] == last_label and b["tr"] == len(last_run.volumes) - 1,
        "the decoder at the last TR",
        TIMEOUT,
    )
    for child in (decoder, recorder):
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=TIMEOUT) == 0, child.tail()


def test_a_session_whose_first_segment_is_on_another_grid_replays_every_part_as_its_own_run(
    small_bundle_path, node_config, node_processes, tmp_path
):
    other = copy_series(shared_path("dcm_qa_mosaic", "In", "ep2d_Asc_2"), tmp_path / "2", 6)
    siemens = copy_series(
        shared_path("siemens_trio_mosaic_run", "dicom"), tmp_path / "7", N_SIEMENS
    )
    assert (other.shape, siemens.shape) == ((64, 64, 36), (74, 74, 36))
    bundle = bundle_on_grid(small_bundle_path, tmp_path / "7", tmp_path / "siemens.safetensors")
    config = node_config.with_overrides(
        {
            "decoder.bundle": str(bundle),
            "decoder.mode": "continuous",  # no marker stream
            "decoder.wait_for_subscribers": 1,  # the recorder
            "decoder.subscriber_timeout_s": TIMEOUT,
            "stream.buffer_trs": 16,
            "stream.resolve_timeout_s": TIMEOUT,
        }
    )
    series = [_series(tmp_path / "2", "2"), _series(tmp_path / "7", "7")]
    _record(node_processes, config, series)

    original = config.recording_path
    with SessionReader(original) as reading:  # as recorded live
        assert reading.paths == [original, segment_path(original, 2)]
        assert [s.attr("segment")["reason"] for s in reading.segments] == ["start", "new grid"]
        live = reading.latents_headers()
    assert [(h["run"], h["tr"]) for h in live] == [("7", tr) for tr in range(N_SIEMENS)]
    parts = recorded_parts(original)
    assert [(p.label, p.segments, p.shape, p.n_volumes) for p in parts] == [
        ("2", (1,), (64, 64, 36), 6),
        ("7", (2,), (74, 74, 36), N_SIEMENS),
    ]

    out = tmp_path / "replayed"
    replay = node_processes.rt_recon(
        "replay", "replay", original, "--speed", str(SPEED), "--output", out
    )
    assert replay.wait(timeout=3 * TIMEOUT) == 0, replay.tail(40)
    printed = replay.log_text()
    assert re.search(rf"replayed {6 + N_SIEMENS} TRs: {N_SIEMENS} latents, \d+ frames", printed)
    assert (
        f"latents identical to the original recording at {N_SIEMENS} of {N_SIEMENS} TRs "
        "(max abs difference 0)" in printed
    )
    source_log = (out / "logs" / "replay.log").read_text()
    assert source_log.count("replaying ") == 2  # one source per part, in order

    again = out / "recording.h5"
    with SessionReader(again) as reading:
        assert reading.paths == [again, segment_path(again, 2)]
        assert [s.attr("segment")["reason"] for s in reading.segments] == ["start", "new grid"]
        assert [s.attr("stream")["run"] for s in reading.segments] == ["2", "7"]
        volumes = [values for values, _ in reading.volumes()]
        headers = reading.latents_headers()
        frames, _ = reading.frames()
        status = reading.status()
    for values, (_, run) in zip(volumes, series, strict=True):  # each part on its own grid
        np.testing.assert_array_equal(values, run.volumes)
    siemens_crcs = [zlib.crc32(v) for v in series[1][1].volumes]
    # part 2 decoded from TR 0, each TR its own volume; part 1 refused, naming both grids
    assert [(h["run"], h["tr"]) for h in headers] == [("7", tr) for tr in range(N_SIEMENS)]
    assert [h["volume_crc32"] for h in headers] == siemens_crcs
    assert [h["missed_before"] for h in headers] == [0] * N_SIEMENS
    refused = [s for s in status if s.get("node") == "decoder" and s["state"] == "refused"]
    assert refused and {s["run"] for s in refused} == {"2"}
    assert "(74, 74, 36)" in refused[-1]["error"] and "(64, 64, 36)" in refused[-1]["error"]
    assert frames and {f["run"] for f in frames} == {"7"}
    assert frames[-1]["tr"] == N_SIEMENS - 1  # the replay waited for the last TR's picture
