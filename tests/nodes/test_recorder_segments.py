"""A recorder killed with SIGKILL and started again mid-stream writes a second segment
beside the first, leaves the first as it was, and the session is scored as one."""

from __future__ import annotations

import signal
import time
import zlib

import numpy as np
import pylsl
import pytest

from rt_recon.decode.bundle import DecoderBundle
from rt_recon.evaluate.session_eval import evaluate_recording
from rt_recon.protocol import TOPIC_FRAME, TOPIC_STATUS, VolumeStreamMeta
from rt_recon.record.recording import RecordingReader
from rt_recon.record.segments import SessionReader, segment_path
from rt_recon.transport.lsl import MarkerOutlet, VolumeOutlet
from rt_recon.transport.zmq import Publisher
from tests.conftest import free_port
from tests.display._helpers import frame_header, pattern
from tests.nodes._heartbeats import wait_for_heartbeat

pytestmark = pytest.mark.slow

LAG_TRS = 2
PHASE_TRS = 16  # per phase: a trial at TRs 2, 4, ..., 12 of it, scored 2 TRs later
TRIALS = range(6)


def _wait_for(endpoint: str, what: str, done) -> dict:
    return wait_for_heartbeat(endpoint, done, what)


def test_a_recorder_killed_and_restarted_appends_a_segment_and_the_session_reads_as_one(
    node_config, node_processes
):
    config = node_config.with_overrides(
        {"recorder.status_endpoint": f"tcp://127.0.0.1:{free_port()}"}
    )
    status = config.recorder.status_endpoint
    bundle = DecoderBundle.load(config.decoder.bundle)
    side = bundle.model.image_size
    meta = VolumeStreamMeta(shape=bundle.stream.shape, affine=np.eye(4), tr_s=1.0, speed=10.0)
    rng = np.random.default_rng(3)
    volumes = rng.normal(1000, 10, size=(2 * PHASE_TRS + 4, meta.n_channels)).astype(np.float32)
    grey = np.full((side, side, 3), 128, np.uint8)
    first = config.recording_path

    def push(outlet, markers, renderer, t: int, phase: int | None) -> None:
        """Volume ``t``; in a phase, its trial marker and its frame (the stimulus at the
        scored TR, so every scored trial is identified)."""
        stamp = pylsl.local_clock()
        outlet.push(volumes[t], stamp)
        if phase is None:
            return
        k = t - phase * (PHASE_TRS + 4)  # TR within the phase
        sid = 10 * phase + (k - 2) // 2
        if 2 <= k <= 12 and k % 2 == 0:
            markers.push({"stimulus_id": sid, "duration": 1.0}, stamp + 0.01)
        scored = k - LAG_TRS
        image = (
            pattern(10 * phase + (scored - 2) // 2, side)
            if 2 <= scored <= 12 and scored % 2 == 0
            else grey
        )
        header = frame_header(t, stamp, lag_trs=LAG_TRS, volume_crc32=zlib.crc32(volumes[t]))
        renderer.send(TOPIC_FRAME, header.to_json(), {"image": image})

    def subscribed(renderer) -> None:
        """Until the recorder records what the renderer sends (its subscription is up)."""
        deadline = time.monotonic() + 30
        with_status = None
        while with_status is None and time.monotonic() < deadline:
            renderer.send(TOPIC_STATUS, {"node": "renderer", "state": "running"})
            try:
                with_status = wait_for_heartbeat(status, lambda b: b["status"] > 0, timeout=1.0)
            except AssertionError:
                continue
        assert with_status is not None, "the recorder never recorded the renderer's status"

    with (
        Publisher(config.renderer.frames_endpoint) as renderer,
        VolumeOutlet(meta, config.stream.name, config.stream.source_id) as outlet,
    ):
        markers = MarkerOutlet(config.stream.markers_name, config.stream.markers_source_id)
        try:
            recorder = node_processes.node("recorder", config)
            _wait_for(status, "streaming", lambda b: b["state"] == "streaming")
            subscribed(renderer)
            markers.wait_for_consumers(10)
            for t in range(PHASE_TRS):
                push(outlet, markers, renderer, t, phase=0)
                time.sleep(0.02)  # the session's pace
            _wait_for(status, "every volume recorded",
                      lambda b: b["volumes"] == PHASE_TRS and b["frames"] == PHASE_TRS)  # fmt: skip
            recorder.send_signal(signal.SIGKILL)  # while the stream goes on
            assert recorder.wait(timeout=10) == -signal.SIGKILL
            size = first.stat().st_size
            with RecordingReader(first) as reading:
                first_crcs = list(reading._file["volumes/crc32"][:])
            for t in range(PHASE_TRS, PHASE_TRS + 4):  # acquired while no recorder runs
                push(outlet, markers, renderer, t, phase=None)
                time.sleep(0.02)

            recorder = node_processes.node("recorder", config)  # as the supervisor restarts it
            _wait_for(status, "streaming again", lambda b: b["state"] == "streaming")
            subscribed(renderer)
            for t in range(PHASE_TRS + 4, 2 * PHASE_TRS + 4):
                push(outlet, markers, renderer, t, phase=1)
                time.sleep(0.02)
            _wait_for(status, "the second phase recorded",
                      lambda b: b["volumes"] == PHASE_TRS and b["frames"] == PHASE_TRS)  # fmt: skip
            recorder.send_signal(signal.SIGTERM)
            assert recorder.wait(timeout=30) == 0
            log = recorder.log_text()
        finally:
            markers.close()

    second = segment_path(first, 2)
    assert f"{first} exists (a restart after a crash?): recording segment 2" in log
    assert first.stat().st_size == size  # the first segment is as the kill left it
    with RecordingReader(first) as reading:
        assert list(reading._file["volumes/crc32"][:]) == first_crcs
    with SessionReader(first) as reader:
        assert reader.paths == [first, second]
        assert [s.attr("segment") for s in reader.segments] == [
            {"number": 1, "reason": "start", "first": first.name},
            {"number": 2, "reason": "recorder restart", "first": first.name},
        ]
        (a, _), (b, _) = reader.volumes()
    sent = [zlib.crc32(v) for v in volumes]
    assert [zlib.crc32(v) for v in a] == sent[:PHASE_TRS] == first_crcs
    assert [zlib.crc32(v) for v in b] == sent[PHASE_TRS + 4 :]

    stimuli = {10 * p + k: pattern(10 * p + k, side) for p in (0, 1) for k in TRIALS}
    evaluation = evaluate_recording(first, stimuli)
    assert (evaluation.n_shown, evaluation.n_trials, evaluation.n_missing) == (12, 12, 0)
    assert [r.stimulus_id for r in evaluation.trials] == sorted(stimuli)
    assert evaluation.identification == 1.0
