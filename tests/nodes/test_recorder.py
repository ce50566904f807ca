"""The recorder process records volumes, markers, latents, frames and heartbeats, its file
survives a SIGKILL with every TR up to the last complete one, and recording stops and starts
on request with the gap marked in the file."""

from __future__ import annotations

import signal
import time
import zlib

import numpy as np
import pylsl
import pytest

from rt_recon.decode.bundle import DecoderBundle
from rt_recon.nodes.recorder import RecordSwitch
from rt_recon.protocol import (
    TOPIC_FRAME,
    TOPIC_LATENTS,
    TOPIC_STATUS,
    ControlReply,
    ControlRequest,
    VolumeStreamMeta,
)
from rt_recon.record.recording import RecordingReader
from rt_recon.transport.control import request
from rt_recon.transport.lsl import MarkerOutlet, VolumeOutlet
from rt_recon.transport.zmq import Publisher
from tests.conftest import free_port
from tests.nodes._heartbeats import wait_for_heartbeat

pytestmark = pytest.mark.slow


def _wait_for_state(endpoint: str, state: str) -> dict:
    return wait_for_heartbeat(endpoint, lambda beat: beat["state"] == state, f"in state {state!r}")


def _recorder_session(node_config):
    """A config with its own recorder status port; its bundle; the stream's meta."""
    config = node_config.with_overrides(
        {"recorder.status_endpoint": f"tcp://127.0.0.1:{free_port()}"}
    )
    bundle = DecoderBundle.load(config.decoder.bundle)
    meta = VolumeStreamMeta(shape=bundle.stream.shape, affine=np.eye(4), tr_s=1.0, speed=10.0)
    return config, bundle, meta


def test_recorder_survives_sigkill_with_every_complete_tr(node_config, node_processes):
    config, bundle, meta = _recorder_session(node_config)
    z_shape, c_shape, side = (
        bundle.model.latent_shape,
        bundle.model.cond_shape,
        bundle.model.image_size,
    )
    rng = np.random.default_rng(0)
    volumes = rng.normal(1000, 10, size=(400, meta.n_channels)).astype(np.float32)

    with (
        Publisher(config.decoder.latents_endpoint) as decoder,
        Publisher(config.renderer.frames_endpoint) as renderer,
        VolumeOutlet(meta, config.stream.name, config.stream.source_id) as outlet,
    ):
        markers = MarkerOutlet(config.stream.markers_name, config.stream.markers_source_id)
        recorder = node_processes.node("recorder", config)
        try:
            _wait_for_state(config.recorder.status_endpoint, "streaming")
            decoder.wait_for_subscribers(1, TOPIC_LATENTS, timeout=10)
            renderer.wait_for_subscribers(1, TOPIC_FRAME, timeout=10)
            markers.wait_for_consumers(10)
            for t, volume in enumerate(volumes):
                outlet.push(volume, pylsl.local_clock())
                if t % 3 == 0:
                    markers.push({"type": "event", "trial": t // 3}, pylsl.local_clock())
                decoder.send(
                    TOPIC_LATENTS,
                    {"seq": t, "tr": t},
                    {"z": np.full(z_shape, t, np.float32), "c": np.zeros(c_shape, np.float32)},
                )
                renderer.send(
                    TOPIC_FRAME,
                    {"seq": t, "tr": t},
                    {"image": np.full((side, side, 3), t % 256, np.uint8)},
                )
                decoder.send(TOPIC_STATUS, {"node": "decoder", "state": "running", "tr": t})
                if t == 60:
                    recorder.send_signal(signal.SIGKILL)  # mid-session, while data flows
                    break
                time.sleep(0.02)  # the session's pace
            assert recorder.wait(timeout=10) == -signal.SIGKILL
        finally:
            markers.close()

    with RecordingReader(config.recording_path) as reading:
        values, stamps = reading.volumes()
        headers, z, _ = reading.latents()
        frame_headers, images = reading.frames()
        events = reading.markers()
        beats = reading.status()
    n = len(values)
    assert n >= 50  # the kill came at TR 60; the last TRs may have been in flight
    assert [zlib.crc32(v) for v in values] == [zlib.crc32(v) for v in volumes[:n]]
    assert np.all(np.diff(stamps) > 0)
    assert [h["tr"] for h in headers] == list(range(len(headers))) and len(headers) >= 50
    assert np.all(z[:, 0, 0, 0] == np.arange(len(headers)))
    assert [h["tr"] for h in frame_headers] == list(range(len(frame_headers)))
    assert np.all(images[:, 0, 0, 0] == np.arange(len(frame_headers)) % 256)
    assert [e["trial"] for e, _ in events] == list(range(len(events))) and len(events) >= 15
    assert any(b.get("node") == "decoder" for b in beats)


def test_recording_stopped_and_started_by_request_leaves_a_marked_gap(node_config, node_processes):
    """The console's Stop/Start recording, sent as it sends them: real recorder, real REQ/REP."""
    config, _, meta = _recorder_session(node_config)
    rng = np.random.default_rng(1)
    volumes = rng.normal(1000, 10, size=(90, meta.n_channels)).astype(np.float32)
    control = config.recorder.control_endpoint

    def send(command: str, by: str = "test") -> dict:
        return request(control, {"command": command, "by": by}, timeout=10)

    with VolumeOutlet(meta, config.stream.name, config.stream.source_id) as outlet:
        recorder = node_processes.node("recorder", config)
        _wait_for_state(config.recorder.status_endpoint, "streaming")
        assert send("query") == {"ok": True, "recording": True}
        stamps = []
        for t, volume in enumerate(volumes):
            if t == 30:
                assert send("stop", by="console") == {"ok": True, "recording": False}
                paused = _wait_for_state(config.recorder.status_endpoint, "paused")
                assert paused["source_id"] == config.stream.source_id  # inlet still open
            if t == 60:
                assert send("start", by="console") == {"ok": True, "recording": True}
                assert send("start")["recording"] is True  # again: nothing changes
                _wait_for_state(config.recorder.status_endpoint, "streaming")
            stamps.append(pylsl.local_clock())
            outlet.push(volume, stamps[-1])
            time.sleep(0.02)  # the session's pace
        refused = send("pause")
        assert (
            not refused["ok"] and "expected one of ['start', 'stop', 'query']" in refused["error"]
        )
        beat = wait_for_heartbeat(  # every volume taken, recorded or not
            config.recorder.status_endpoint,
            lambda beat: beat["volumes"] + beat["paused"] == len(volumes),
            f"that has taken all {len(volumes)} volumes",
        )
        assert beat["state"] == "streaming"
        recorder.send_signal(signal.SIGTERM)
        assert recorder.wait(timeout=30) == 0
        log = recorder.log_text()

    assert "recording stopped at the request of console" in log
    assert "recording started at the request of console" in log
    with RecordingReader(config.recording_path) as reading:
        values, times = reading.volumes()
        events = [b for b in reading.status() if b.get("node") == "recorder"]
    # Before the stop and after the start, every volume, exactly; none from the pause between.
    recorded = [zlib.crc32(v) for v in values]
    sent = [zlib.crc32(v) for v in volumes]
    assert recorded[:30] == sent[:30] and recorded[-30:] == sent[-30:]
    assert set(recorded) <= set(sent) and not set(recorded) & set(sent[35:58])
    assert beat["paused"] >= 20 and beat["paused"] + len(values) == len(volumes)
    # The file says where its gap is, who made it and when.
    assert [(e["event"], e["by"]) for e in events] == [
        ("record_stop", "console"),
        ("record_start", "console"),
    ]
    stop_t, start_t = events[0]["t"], events[1]["t"]
    assert stamps[29] < stop_t < stamps[30] and stamps[59] < start_t < stamps[60]
    assert np.all((times <= stop_t) | (times >= start_t))


def test_the_record_switch_goes_by_when_each_change_was_asked_for():
    def handle(command: str, by: str = "unknown") -> bool | None:
        return switch.handle(ControlRequest(command=command, by=by)).recording

    switch = RecordSwitch()
    assert switch.records(0.0) and handle("query") is True
    assert handle("stop", by="console") is False
    stopped = switch.changes[-1]["t"]
    assert handle("stop") is False and len(switch.changes) == 1
    handle("start", by="console")
    started = switch.changes[-1]["t"]
    # a volume acquired before the stop but late to arrive is still recorded, one from the
    # pause is not, however late it comes
    assert switch.records(stopped - 0.001) and not switch.records((stopped + started) / 2)
    assert switch.records(started)
    assert [(c["event"], c["by"]) for c in switch.changes] == [
        ("record_stop", "console"),
        ("record_start", "console"),
    ]
    with pytest.raises(ValueError, match=r"unknown command 'pause'; expected one of"):
        handle("pause")
    switch.refusal = "the disk is full"
    with pytest.raises(ValueError, match="cannot stop recording: the disk is full"):
        handle("stop")
    assert switch.handle(ControlRequest(command="query")) == ControlReply(ok=True, recording=True)
