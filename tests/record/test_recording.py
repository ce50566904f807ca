"""The recording file: round trip, refusal to overwrite, and survival of SIGKILL mid-write."""

from __future__ import annotations

import signal
import textwrap
import time
import zlib

import numpy as np
import pytest

from rt_recon.errors import DataError
from rt_recon.record.recording import RecordingReader, RecordingShapes, RecordingWriter

SHAPES = RecordingShapes(n_channels=500, z_shape=(4, 8, 8), c_shape=(6, 5), image_shape=(16, 16, 3))


def test_round_trip(tmp_path):
    path = tmp_path / "rec.h5"
    rng = np.random.default_rng(0)
    volumes = rng.normal(size=(3, 500)).astype(np.float32)
    with RecordingWriter(path, SHAPES, attrs={"config": {"a": 1}}) as rec:
        for t, v in enumerate(volumes):
            rec.add_volume(v, 100.0 + t)
        rec.add_marker({"type": "event", "stimulus_id": 7}, 100.5)
        rec.add_latents({"tr": 0, "seq": 0}, np.ones((4, 8, 8)), np.zeros((6, 5)))
        rec.add_frame({"tr": 0}, np.full((16, 16, 3), 9, np.uint8))
        rec.add_status({"node": "decoder", "state": "running"})
    with RecordingReader(path) as reader:
        values, times = reader.volumes()
        np.testing.assert_array_equal(values, volumes)
        np.testing.assert_array_equal(times, [100.0, 101.0, 102.0])
        assert reader.markers() == [({"type": "event", "stimulus_id": 7}, 100.5)]
        headers, z, c = reader.latents()
        assert headers == [{"tr": 0, "seq": 0}] and z.shape == (1, 4, 8, 8) and z.sum() == 256
        assert c.shape == (1, 6, 5) and not c.any()
        frame_headers, images = reader.frames()
        assert frame_headers == [{"tr": 0}] and images[0, 0, 0, 0] == 9
        assert reader.status()[0]["node"] == "decoder"
        assert reader.attr("config") == {"a": 1}


def test_never_overwrites_and_refuses_foreign_files(tmp_path):
    path = tmp_path / "rec.h5"
    RecordingWriter(path, SHAPES).close()
    with pytest.raises(DataError, match="never overwritten"):
        RecordingWriter(path, SHAPES)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(DataError, match="not a readable HDF5 recording"):
        RecordingReader(junk)
    with pytest.raises(DataError, match="recording not found"):
        RecordingReader(tmp_path / "missing.h5")


WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from rt_recon.record.recording import RecordingShapes, RecordingWriter
    shapes = RecordingShapes(n_channels=74 * 74 * 36, z_shape=(4, 16, 16), c_shape=(16, 64),
                             image_shape=(64, 64, 3))
    with RecordingWriter(sys.argv[1], shapes) as rec:
        t = 0
        while True:
            rec.add_volume(np.full(shapes.n_channels, t, np.float32), float(t))
            rec.add_latents({"tr": t}, np.full((4, 16, 16), t, np.float32), np.zeros((16, 64)))
            rec.add_frame({"tr": t}, np.full((64, 64, 3), t % 256, np.uint8))
            rec.flush()
            if t == 5:
                print("ready", flush=True)
            t += 1
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.3, 0.7, 1.1])
def test_sigkill_mid_write_loses_at_most_the_tr_in_flight(node_processes, tmp_path, delay):
    path = tmp_path / "rec.h5"
    writer = node_processes.python("writer", "-c", WRITER, path)
    writer.wait_for_line("^ready$", timeout=60)
    time.sleep(delay)  # the moment of the kill, in the middle of some write
    writer.send_signal(signal.SIGKILL)
    assert writer.wait(timeout=10) == -signal.SIGKILL
    with RecordingReader(path) as reader:
        values, times = reader.volumes()
        headers, z, _ = reader.latents()
        frame_headers, _ = reader.frames()
    n = len(times)
    assert n > 5
    np.testing.assert_array_equal(times, np.arange(n))  # every TR up to the last complete one
    assert all(zlib.crc32(v) == zlib.crc32(np.full_like(v, i)) for i, v in enumerate(values))
    # latents and frames of a TR follow its volume: at most the TR in flight is missing
    assert len(headers) in (n, n - 1) and len(frame_headers) in (len(headers), len(headers) - 1)
    assert [h["tr"] for h in headers] == list(range(len(headers)))
    assert np.all(z[:, 0, 0, 0] == np.arange(len(headers)))
