"""The whole pipeline as separate processes: replay -> LSL -> decoder -> ZeroMQ -> renderer.

Real liblsl on loopback, real ZeroMQ sockets, real subprocesses. Every TR of
the replayed run must yield a latents message with the right TR index and
the CRC of exactly that volume, the latents must equal offline decoding of
the same run, and the renderer must publish a frame for the last TR.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
import zlib

import numpy as np
import pylsl
import pytest
import zmq

from rt_recon.acquire.nifti import load_nifti_run
from rt_recon.decode.bundle import DecoderBundle
from rt_recon.decode.online import OnlineDecoder
from rt_recon.protocol import DECODED_CHANNELS, TOPIC_FRAME, TOPIC_LATENTS
from rt_recon.transport.zmq import Subscriber
from tests.nodes._heartbeats import wait_for_heartbeat

pytestmark = pytest.mark.slow


class _DecodedReader:
    """Collects the decoder's per-TR summary samples from its LSL stream."""

    def __init__(self, source_id: str):
        self._source_id = source_id
        self._inlet = None
        self.samples: list[list[float]] = []

    def drain(self, until: int = 0) -> None:
        deadline = time.monotonic() + (20 if until else 0)
        while True:
            if self._inlet is None:
                found = pylsl.resolve_byprop("source_id", self._source_id, timeout=0.2)
                if found:
                    self._inlet = pylsl.StreamInlet(found[0], max_buflen=60)
                    self._inlet.open_stream(timeout=5)
            if self._inlet is not None:
                chunk, _ = self._inlet.pull_chunk(timeout=0.1)
                self.samples.extend(chunk)
            if len(self.samples) >= until or time.monotonic() > deadline:
                return


def test_every_tr_is_decoded_in_order_and_the_last_is_rendered(
    node_config, small_dataset, node_processes
):
    config = node_config.with_overrides(
        {
            "decoder.wait_for_subscribers": 2,
            "renderer.wait_for_subscribers": 1,
            "decoder.mode": "continuous",  # every TR comparable with offline decoding
            "stream.buffer_trs": 16,  # 2 s at 8x: no drop even if the machine is loaded
        }
    )
    files = small_dataset.runs("test")[0]
    run = load_nifti_run(files.bold, files.events)
    n_trs = len(run.volumes)
    latents, frames = [], []
    with (
        Subscriber(config.decoder.latents_endpoint, [TOPIC_LATENTS]) as lat_sub,
        Subscriber(config.renderer.frames_endpoint, [TOPIC_FRAME]) as frame_sub,
    ):
        node_processes.node("renderer", config)
        node_processes.node("decoder", config)
        replay = node_processes.node("replay", config, files.bold, "--events", files.events)
        decoded = _DecodedReader(f"{config.stream.source_id}_decoded")
        poller = zmq.Poller()
        poller.register(lat_sub.socket, zmq.POLLIN)
        poller.register(frame_sub.socket, zmq.POLLIN)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ready = dict(poller.poll(200))
            decoded.drain()
            if lat_sub.socket in ready:
                latents.append(lat_sub.receive(timeout=0))
            if frame_sub.socket in ready:
                frames.append(frame_sub.receive(timeout=0))
                if frames[-1].header["tr"] == n_trs - 1:
                    break
            node_processes.assert_running("renderer", "decoder")
            assert replay.returncode in (None, 0), replay.tail()  # it ends once all is sent
        decoded.drain(until=n_trs)
    assert replay.wait(timeout=30) == 0
    # The decoder's per-TR summary on LSL (what LabRecorder captures into XDF). This test's
    # inlet may connect a TR or two late (LSL sends no history); from then on, every TR.
    summary_trs = [int(s[DECODED_CHANNELS.index("tr")]) for s in decoded.samples]
    assert summary_trs == list(range(n_trs - len(summary_trs), n_trs))
    assert len(summary_trs) >= n_trs - 5
    z_means = dict(
        zip(
            summary_trs, [s[DECODED_CHANNELS.index("z_mean")] for s in decoded.samples], strict=True
        )
    )
    summary = {tr: dict(zip(DECODED_CHANNELS, s, strict=True))
               for tr, s in zip(summary_trs, decoded.samples, strict=True)}  # fmt: skip

    headers = [m.header for m in latents]
    assert [h["tr"] for h in headers] == list(range(n_trs))
    # the summary's confidence and data quality are the latents header's, TR by TR
    assert headers[-1]["confidence"] is not None and headers[-1]["quality"]["dvars_z"] is not None
    for h in headers:
        if h["tr"] in summary:
            sent = summary[h["tr"]]
            assert sent["confidence"] == h["confidence"]
            assert sent["outlier"] == float(h["quality"]["outlier"])
            for name in ("global_pct", "dvars_z"):
                value = h["quality"].get(name)  # left out of the header while unknown
                assert np.isnan(sent[name]) if value is None else sent[name] == value
    assert [h["seq"] for h in headers] == list(range(n_trs))
    assert all(h["missed_before"] == 0 for h in headers)
    assert [h["volume_crc32"] for h in headers] == [zlib.crc32(v) for v in run.volumes]

    offline = OnlineDecoder(DecoderBundle.load(config.decoder.bundle))
    for tr, (volume, message) in enumerate(zip(run.volumes, latents, strict=True)):
        expected = offline.update(volume)
        np.testing.assert_array_equal(message.arrays["z"], expected["z"])
        np.testing.assert_array_equal(message.arrays["c"], expected["c"])
        if tr in z_means:
            assert z_means[tr] == pytest.approx(float(expected["z"].mean()), rel=1e-5)

    assert frames and frames[-1].header["tr"] == n_trs - 1
    image = frames[-1].arrays["image"]
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    times = frames[-1].header["times"]
    ordered = [
        "acquired",
        "received",
        "preprocessed",
        "decoded",
        "sent",
        "render_received",
        "rendered",
        "published",
    ]
    assert all(times[a] <= times[b] for a, b in itertools.pairwise(ordered))
    assert (config.paths.output_dir / "frames" / f"tr-{n_trs - 1:05d}.png").is_file()


def test_decoder_refuses_a_run_on_other_voxels_naming_both_and_stays_up(
    node_config, small_dataset, node_processes, tmp_path
):
    bundle = DecoderBundle.load(node_config.decoder.bundle)
    bundle.stream = dataclasses.replace(bundle.stream, shape=(10, 10, 10), n_channels=1000)
    other = bundle.save(tmp_path / "other.safetensors")
    config = node_config.with_overrides(
        {"decoder.bundle": str(other), "decoder.wait_for_subscribers": 0}
    )
    files = small_dataset.runs("test")[0]
    decoder = node_processes.node("decoder", config)
    node_processes.node("replay", config, files.bold)
    beat = wait_for_heartbeat(
        config.decoder.latents_endpoint,
        lambda b: b["node"] == "decoder" and b["state"] == "refused" and b["refused"] > 0,
        "refusing the run",
        timeout=60,
    )
    n_stream = int(np.prod(load_nifti_run(files.bold).shape))
    assert "fitted on 1000 voxels (shape (10, 10, 10)" in beat["error"]
    assert f"stream sends {n_stream} voxels" in beat["error"]
    assert beat["published"] == 0
    node_processes.assert_running("decoder")  # refused, not fatal: the next run may fit
    assert "refused, not decoded" in decoder.log_text()
