"""Replay of every recording kind and pacing mode, over real LSL on loopback.

DICOM series and XDF recordings, ``loop`` and the ``asap`` mode with
back-pressure; the 100-TR pacing check is in test_replay_pacing.py.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pylsl
import pytest

from rt_recon.acquire.nifti import RecordedRun
from rt_recon.acquire.series import read_series
from rt_recon.config import SessionConfig
from rt_recon.errors import ConfigError
from rt_recon.nodes.replay import DecoderAck, replay
from rt_recon.protocol import (
    TOPIC_LATENTS,
    VolumeStreamMeta,
    make_marker_stream_info,
    make_volume_stream_info,
)
from rt_recon.record.runs import load_run
from rt_recon.transport.lsl import MarkerInlet, VolumeInlet, resolve_stream
from tests.acquire._enhanced_builder import oblique_affine, write_enhanced
from tests.conftest import free_port, unique
from tests.nodes._xdf_writer import XdfWriter


def _ids() -> dict[str, str]:
    return {
        "name": unique("rp"),
        "source_id": unique("rp_src"),
        "markers_name": unique("rpm"),
        "markers_source_id": unique("rpm_src"),
    }


def _small_run(n: int = 5, tr_s: float = 0.1, seed: int = 0) -> RecordedRun:
    rng = np.random.default_rng(seed)
    return RecordedRun(
        volumes=rng.normal(size=(n, 4 * 5 * 3)).astype(np.float32),
        shape=(4, 5, 3),
        affine=np.diag([2.0, 2.0, 3.0, 1.0]),
        tr_s=tr_s,
    )


def _in_thread(target, **kwargs) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def run() -> None:
        try:
            result["report"] = target(**kwargs)
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def _pull(inlet: VolumeInlet, n: int, timeout: float = 5.0):
    stamps, values = [], []
    for k in range(n):
        stamp = inlet.pull(timeout=timeout)
        assert stamp is not None, f"volume {k} never arrived"
        stamps.append(stamp)
        values.append(inlet.values.copy())
    return np.array(stamps), values


def _markers_until_end(markers: MarkerInlet, n_ends: int = 1) -> list[dict]:
    events: list[dict] = []
    while sum(e["type"] == "run_end" for e in events) < n_ends:
        got = markers.pull(timeout=5)
        assert got is not None, f"markers stopped after {events}"
        events.append(got[0].to_json())  # as sent on the wire
    return events


# ------------------------------------------------------------------ DICOM series


@pytest.fixture
def xa_series(tmp_path):
    """Eight XA-style enhanced DICOM volumes of one series, TR 0.8 s."""
    folder = tmp_path / "xa"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for index in range(1, 9):
        data = rng.integers(0, 2000, size=(6, 7, 5)).astype(np.uint16)
        write_enhanced(
            folder / f"{index:04d}.dcm",
            data,
            oblique_affine(),
            instance=index,
            series_uid="1.2.3.9",
            series_number=4,
        )
    return folder


def test_a_dicom_series_replays_as_the_bridge_would_stream_it(xa_series):
    run = load_run(xa_series)
    direct = read_series(xa_series)
    ids = _ids()
    thread, result = _in_thread(replay, run=run, speed=8.0, run_id="04", consumer_timeout=20, **ids)
    with VolumeInlet.resolve(ids["source_id"], timeout=20) as inlet:
        assert inlet.meta.shape == direct.shape
        np.testing.assert_allclose(inlet.meta.affine, direct.affine, atol=1e-9)
        stamps, values = _pull(inlet, 8)
    thread.join(timeout=20)
    assert "error" not in result
    for got, volume in zip(values, direct.volumes, strict=True):
        np.testing.assert_array_equal(got, volume.flat())
    # paced by the files' own acquisition times (1 s apart here) divided by the speed
    np.testing.assert_allclose(np.median(np.diff(stamps)), 1.0 / 8.0, atol=0.03)


@pytest.mark.slow
@pytest.mark.shared_data
def test_cli_replays_a_scanner_series_folder(node_processes):
    from tests.acquire._shared import shared_path

    source = shared_path("dcm_qa_mosaic", "In", "ep2d_Asc_2")
    ids = _ids()
    config = SessionConfig.model_validate(
        {
            "stream": {
                "name": ids["name"],
                "source_id": ids["source_id"],
                "markers_name": ids["markers_name"],
                "markers_source_id": ids["markers_source_id"],
                "resolve_timeout_s": 60,
            }
        }
    )
    replay_node = node_processes.node("replay", config, source, "--speed", "16")
    with VolumeInlet.resolve(ids["source_id"], timeout=60) as inlet:
        _, values = _pull(inlet, 6, timeout=10)
    assert replay_node.wait(timeout=30) == 0
    for got, volume in zip(values, read_series(source).volumes, strict=True):
        np.testing.assert_array_equal(got, volume.flat())


# --------------------------------------------------------------------------- XDF


def test_an_xdf_recording_replays_with_its_recorded_timing_and_markers(tmp_path):
    run = _small_run(n=6)
    meta = VolumeStreamMeta(shape=run.shape, affine=run.affine, tr_s=0.2, session="s", run="03")
    path = tmp_path / "session.xdf"
    writer = XdfWriter(path)
    # recorded as LabRecorder records it: the voxels, then the index channel
    writer.add_stream(1, make_volume_stream_info(meta, "vols", "v").as_xml(), "float32", 61)
    writer.add_stream(2, make_marker_stream_info("mk", "m").as_xml(), "string", 1)
    recorded = 5000.0 + np.array([0.0, 0.2, 0.4, 0.8, 1.0, 1.2])  # volume 4 came a TR late
    writer.add_sample(2, recorded[0], [json.dumps({"type": "run_start", "run": "03"})])
    for stamp, index, values in zip(recorded, [0, 1, 2, 4, 5, 6], run.volumes, strict=True):
        writer.add_sample(1, float(stamp), np.append(values, np.float32(index)))
    writer.add_sample(1, recorded[-1] + 0.01, np.append(np.zeros(60, np.float32), -1))  # run end
    writer.add_sample(2, recorded[0] + 0.5, [json.dumps({"type": "event", "stimulus_id": 42})])
    writer.add_sample(2, recorded[0] + 0.9, ["button"])
    writer.close()

    loaded = load_run(path)
    np.testing.assert_allclose(loaded.times, recorded - recorded[0])
    assert [e.get("stimulus_id", e.get("trial_type")) for e in loaded.events] == [42, "button"]
    ids = _ids()
    thread, result = _in_thread(replay, run=loaded, consumer_timeout=20, **ids)
    markers = MarkerInlet(resolve_stream("source_id", ids["markers_source_id"], timeout=20))
    with VolumeInlet.resolve(ids["source_id"], timeout=20) as inlet:
        stamps, values = _pull(inlet, 6)
    events = _markers_until_end(markers)
    markers.close()
    thread.join(timeout=20)
    assert "error" not in result
    for got, expected in zip(values, run.volumes, strict=True):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(np.diff(stamps), np.diff(recorded), atol=0.05)  # loose: loaded CI
    sent = [e for e in events if e["type"] == "event"]
    assert [e.get("stimulus_id") for e in sent] == [42, None]
    assert sent[1]["trial_type"] == "button"


# -------------------------------------------------------------------------- loop


def test_loop_replays_the_run_again_without_a_jump_in_time():
    run = _small_run(n=5, tr_s=0.1)
    ids = _ids()
    thread, result = _in_thread(replay, run=run, loop=3, consumer_timeout=20, **ids)
    markers = MarkerInlet(resolve_stream("source_id", ids["markers_source_id"], timeout=20))
    with VolumeInlet.resolve(ids["source_id"], timeout=20) as inlet:
        stamps, values = _pull(inlet, 15)
    events = _markers_until_end(markers, n_ends=3)
    markers.close()
    thread.join(timeout=20)
    assert result["report"].loops == 3 and result["report"].n_volumes == 15
    for k, got in enumerate(values):
        np.testing.assert_array_equal(got, run.volumes[k % 5])
    intervals = np.diff(stamps)
    assert np.all(np.abs(intervals - 0.1) < 0.05), intervals  # loose bound for a loaded machine
    starts = [e["loop"] for e in events if e["type"] == "run_start"]
    assert starts == [0, 1, 2]


# -------------------------------------------------------------------------- asap


class _CountingConsumer:
    """A slow consumer in a thread: pulls each volume, works 20 ms, then acknowledges it."""

    def __init__(self, source_id: str, n: int, buffer_trs: int):
        self.n = n
        self.values: list[np.ndarray] = []
        self._taken = 0
        self._lock = threading.Condition()
        self._source_id = source_id
        self._buffer_trs = buffer_trs
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with VolumeInlet.resolve(self._source_id, 20, buffer_trs=self._buffer_trs) as inlet:
            while len(self.values) < self.n:
                if inlet.pull(timeout=3) is None:
                    return
                self.values.append(inlet.values.copy())
                time.sleep(0.02)
                with self._lock:
                    self._taken += 1
                    self._lock.notify_all()

    def consumed(self, timeout: float) -> int:
        with self._lock:
            self._lock.wait(timeout)
            return self._taken


def test_asap_goes_as_fast_as_the_consumer_and_drops_nothing():
    n, tr_s = 40, 1.0  # 40 s at TR pace
    run = _small_run(n=n, tr_s=tr_s)
    ids = _ids()
    consumer = _CountingConsumer(ids["source_id"], n, buffer_trs=2)
    start = time.monotonic()
    report = replay(run, pace="asap", ack=consumer, window=2, consumer_timeout=20, **ids)
    consumer.thread.join(timeout=20)
    elapsed = time.monotonic() - start
    assert report.n_volumes == n
    assert len(consumer.values) == n, "the consumer lost volumes"
    for got, expected in zip(consumer.values, run.volumes, strict=True):
        np.testing.assert_array_equal(got, expected)
    assert elapsed < n * tr_s / 2  # loose: far faster than TR pace, even on a loaded machine


def test_asap_without_an_acknowledgement_source_is_refused():
    with pytest.raises(ConfigError, match="acknowledgement"):
        replay(_small_run(), pace="asap", **_ids())


def test_decoder_ack_counts_latents_of_this_run_over_zeromq():
    from rt_recon.transport.zmq import Publisher

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with Publisher(endpoint) as pub:
        ack = DecoderAck(endpoint, session="s1", run="05")
        pub.wait_for_subscribers(1, TOPIC_LATENTS, 10)  # raises if none comes
        z = {"z": np.zeros(2, np.float32)}
        for run_id in ("05", "05", "other", "05"):
            pub.send(TOPIC_LATENTS, {"session": "s1", "run": run_id, "tr": 0}, z)
        deadline = time.monotonic() + 5
        taken = 0
        while taken < 3 and time.monotonic() < deadline:
            taken = ack.consumed(0.2)
        ack.close()
    assert taken == 3


def test_push_times_of_a_realtime_replay_follow_the_lsl_clock():
    run = _small_run(n=3, tr_s=0.05)
    ids = _ids()
    thread, result = _in_thread(replay, run=run, consumer_timeout=20, **ids)
    with VolumeInlet.resolve(ids["source_id"], timeout=20) as inlet:
        stamps, _ = _pull(inlet, 3)
    thread.join(timeout=20)
    np.testing.assert_allclose(stamps, result["report"].push_times, atol=1e-3)
    assert stamps[-1] <= pylsl.local_clock()
