"""Real liblsl on loopback: volumes and markers arrive intact, in order, with timestamps."""

import time

import numpy as np
import pylsl
import pytest

from rt_recon.errors import ProtocolError, StreamError
from rt_recon.protocol import Marker, VolumeStreamMeta
from rt_recon.transport.lsl import (
    MarkerInlet,
    MarkerOutlet,
    VolumeInlet,
    VolumeOutlet,
    resolve_stream,
)
from tests.conftest import unique


def _meta(shape=(10, 12, 8)):
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    affine[:3, 3] = [-10, -12, -12]
    return VolumeStreamMeta(shape=shape, affine=affine, tr_s=0.5, session="t", run="03")


def test_volumes_round_trip_through_preallocated_buffers():
    meta = _meta()
    source_id = unique("src")
    rng = np.random.default_rng(0)
    volumes = rng.normal(size=(4, meta.n_channels)).astype(np.float32)  # the inlet holds 4 TRs
    with (
        VolumeOutlet(meta, unique("vol"), source_id) as outlet,
        VolumeInlet.resolve(source_id, timeout=10) as inlet,
    ):
        assert inlet.meta.shape == meta.shape
        np.testing.assert_array_equal(inlet.meta.affine, meta.affine)
        assert inlet.meta.run == "03"
        assert inlet.uid == outlet.uid  # heartbeats name the outlet by it
        assert outlet.wait_for_consumers(10)
        buffer_id = id(inlet.values.base)
        stamps = [pylsl.local_clock() + k * 1e-3 for k in range(4)]
        for volume, stamp in zip(volumes, stamps, strict=True):
            outlet.push(volume, stamp)
        received = []
        for k in range(4):
            received.append(inlet.pull(timeout=5))
            np.testing.assert_array_equal(inlet.values, volumes[k])
            assert id(inlet.values.base) == buffer_id  # the same buffer every time
        # Stamps arrive shifted by LSL's clock-offset estimate, which on one
        # machine is ~0 but not exactly 0 under load; their spacing is exact.
        np.testing.assert_allclose(np.diff(received), np.diff(stamps), atol=1e-6)
        assert received[0] == pytest.approx(stamps[0], abs=0.01)
        assert inlet.pull(timeout=0.05) is None


def test_each_volume_carries_its_acquisition_index_and_the_run_ends_with_a_sample():
    meta = _meta()
    source_id = unique("src")
    with (
        VolumeOutlet(meta, unique("vol"), source_id) as outlet,
        VolumeInlet.resolve(source_id, timeout=10) as inlet,
    ):
        assert outlet.wait_for_consumers(10)
        for index in (3, None, 7):  # None: the one after the last
            outlet.push(np.full(meta.n_channels, 1.5, np.float32), pylsl.local_clock(), index)
        outlet.end_run()
        got = []
        while inlet.pull(timeout=5) is not None:
            got.append(inlet.index)
            assert inlet.values.shape == (meta.n_channels,) and (inlet.values == 1.5).all()
        assert got == [3, 4, 7]
        assert inlet.ended == "end of run"
        assert inlet.pull(timeout=0.01) is None  # ended for good
        with pytest.raises(StreamError, match=r"0\.\.32767 \(the index channel\), found -2"):
            outlet.push(np.zeros(meta.n_channels, np.float32), 0.0, index=-2)


def test_an_outlet_that_goes_away_ends_the_inlet_as_lost():
    meta = _meta()
    source_id = unique("src")
    outlet = VolumeOutlet(meta, unique("vol"), source_id)
    with VolumeInlet.resolve(source_id, timeout=10) as inlet:
        assert outlet.wait_for_consumers(10)
        outlet.close()
        deadline = time.monotonic() + 30
        while inlet.ended is None and time.monotonic() < deadline:
            assert inlet.pull(timeout=0.2) is None
        assert inlet.ended == "lost"


def test_a_stalled_consumer_keeps_only_the_newest_few_trs():
    meta = _meta()
    source_id = unique("src")
    with (
        VolumeOutlet(meta, unique("vol"), source_id) as outlet,
        VolumeInlet.resolve(source_id, timeout=10, buffer_trs=4) as inlet,
    ):
        assert outlet.wait_for_consumers(10)
        for k in range(12):  # 12 TRs arrive while the consumer is busy elsewhere
            outlet.push(np.full(meta.n_channels, k, np.float32), pylsl.local_clock())
        # The consumer stays busy a while: what is still in flight in socket buffers on a
        # loaded machine reaches the inlet, whose buffer keeps only the newest few TRs.
        time.sleep(1.0)
        got = []
        while inlet.pull(timeout=0.5) is not None:
            got.append(int(inlet.values[0]))
    assert got[-1] == 11 and got == sorted(got)
    assert len(got) <= 5  # buffer_trs, not minutes of backlog


def test_int16_stream_casts_on_push():
    meta = VolumeStreamMeta(shape=(3, 3, 3), affine=np.eye(4), tr_s=1.0, channel_format="int16")
    source_id = unique("src16")
    with (
        VolumeOutlet(meta, unique("v16"), source_id) as outlet,
        VolumeInlet.resolve(source_id, timeout=10) as inlet,
    ):
        assert outlet.wait_for_consumers(10)
        outlet.push(np.arange(27, dtype=np.float32), pylsl.local_clock())
        assert inlet.pull(timeout=5) is not None
        assert inlet.values.dtype == np.int16
        np.testing.assert_array_equal(inlet.values, np.arange(27))


def test_push_of_wrong_shape_is_refused():
    meta = _meta()
    with (
        VolumeOutlet(meta, unique("vol"), unique("src")) as outlet,
        pytest.raises(StreamError, match=r"expected a flattened volume of shape \(960,\)"),
    ):
        outlet.push(np.zeros(959, np.float32), 0.0)


def test_resolve_timeout_names_the_stream():
    with pytest.raises(StreamError, match="no LSL stream with source_id='nothing_here'"):
        resolve_stream("source_id", "nothing_here", timeout=0.3)


def test_markers_round_trip():
    source_id = unique("mrk")
    outlet = MarkerOutlet(unique("markers"), source_id)
    inlet = MarkerInlet(resolve_stream("source_id", source_id, timeout=10))
    try:
        assert outlet.wait_for_consumers(10)
        sent = pylsl.local_clock()
        outlet.push({"type": "event", "stimulus_id": 7, "block": "b2"}, sent)
        outlet.push({"stimulus_id": "x"}, pylsl.local_clock())  # not a marker: no number
        outlet.push({"type": "run_end", "run": 5}, pylsl.local_clock())
        got = inlet.pull(timeout=5)
        assert got is not None
        marker, stamp = got
        assert (marker.type, marker.stimulus_id, marker.extra) == ("event", 7, {"block": "b2"})
        assert marker.to_json() == {"type": "event", "stimulus_id": 7, "block": "b2"}
        assert stamp == pytest.approx(sent, abs=1e-3)
        with pytest.raises(ProtocolError, match="stimulus_id"):
            inlet.pull(timeout=5)
        assert inlet.pull(timeout=5)[0] == Marker(type="run_end", run="5")
    finally:
        inlet.close()
        outlet.close()
