"""The ZeroMQ framing and the LSL stream description, round-tripped and refused."""

import json

import numpy as np
import pytest

from rt_recon.errors import ProtocolError
from rt_recon.protocol import (
    PROTOCOL_VERSION,
    VOXEL_ORDER,
    VolumeStreamMeta,
    decode_marker,
    decode_message,
    encode_marker,
    encode_message,
    make_volume_stream_info,
    parse_volume_stream_info,
    stage_latencies,
)


def _as_bytes(frames):
    return [f if isinstance(f, bytes) else f.tobytes() for f in frames]


def test_message_round_trip_keeps_arrays_header_and_order():
    z = np.arange(4 * 8 * 8, dtype=np.float32).reshape(4, 8, 8)
    c = np.linspace(-1, 1, 6 * 5, dtype=np.float16).reshape(6, 5)
    frames = encode_message(
        "latents", {"seq": 3, "tr": 7, "times": {"sent": 1.5}}, {"z": z, "c": c}
    )
    assert frames[0] == b"latents"
    header = json.loads(frames[1])
    assert header["version"] == PROTOCOL_VERSION
    assert header["buffers"] == [
        {"name": "z", "dtype": "float32", "shape": [4, 8, 8]},
        {"name": "c", "dtype": "float16", "shape": [6, 5]},
    ]
    message = decode_message(_as_bytes(frames))
    assert message.topic == "latents"
    assert message.header["seq"] == 3 and message.times == {"sent": 1.5}
    np.testing.assert_array_equal(message.arrays["z"], z)
    np.testing.assert_array_equal(message.arrays["c"], c)
    assert list(message.arrays) == ["z", "c"]


def test_non_contiguous_and_big_endian_arrays_are_sent_as_little_endian_c_order():
    a = np.arange(12, dtype=">i4").reshape(3, 4).T  # big-endian, Fortran-ordered view
    message = decode_message(_as_bytes(encode_message("x", {}, {"a": a})))
    np.testing.assert_array_equal(message.arrays["a"], a)
    assert message.arrays["a"].dtype == np.dtype("<i4")


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda f: f[:1], "at least 2 frames"),
        (lambda f: [f[0], b"{not json", *f[2:]], "not UTF-8 JSON"),
        (lambda f: [f[0], b"[1, 2]", *f[2:]], "must be a JSON object"),
        (lambda f: [f[0], f[1].replace(b'"version":1', b'"version":99'), *f[2:]], "version"),
        (lambda f: f[:2], "lists 1 buffers but the message carries 0"),
        (lambda f: [*f[:2], f[2][:-4]], "needs 64 bytes, found 60"),
        (lambda f: [f[0], f[1].replace(b"float32", b"object"), f[2]], "dtype 'object'"),
        (lambda f: [f[0], f[1].replace(b"[4,4]", b"[-4,4]"), f[2]], "non-negative ints"),
    ],
)
def test_malformed_messages_are_protocol_errors(mutate, match):
    frames = _as_bytes(encode_message("latents", {"seq": 0}, {"z": np.zeros((4, 4), np.float32)}))
    with pytest.raises(ProtocolError, match=match):
        decode_message(mutate(frames))


def test_oversize_message_is_refused():
    frames = _as_bytes(encode_message("f", {}, {"a": np.zeros(1000, np.uint8)}))
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        decode_message(frames, max_bytes=500)


def test_encode_refuses_unsupported_dtype_and_unserialisable_header():
    with pytest.raises(ProtocolError, match="dtype"):
        encode_message("x", {}, {"a": np.zeros(3, dtype=np.complex64)})
    with pytest.raises(ProtocolError, match="JSON"):
        encode_message("x", {"bad": float("nan")})


def test_volume_stream_info_round_trip():
    affine = np.array([[-3.0, 0, 0, 90], [0, 3, 0, -126], [0, 0, 3, -72], [0, 0, 0, 1]])
    meta = VolumeStreamMeta(
        shape=(5, 6, 7), affine=affine, tr_s=1.97, session="s1", run="02", speed=2.0,
        series="7", series_description="ep2d_bold",
    )  # fmt: skip
    info = make_volume_stream_info(meta, "vols", "src-1")
    assert info.channel_count() == 210 + 1  # the voxels, then the index channel
    assert info.nominal_srate() == pytest.approx(2.0 / 1.97)
    parsed = parse_volume_stream_info(info)
    np.testing.assert_array_equal(parsed.affine, affine)
    assert parsed.shape == (5, 6, 7)
    assert (parsed.tr_s, parsed.session, parsed.run, parsed.speed) == (1.97, "s1", "02", 2.0)
    assert (parsed.mask_id, parsed.n_channels, parsed.channel_format) == ("full", 210, "float32")
    assert info.desc().child("rt_recon").child_value("voxel_order") == VOXEL_ORDER
    assert parsed.pace == "realtime"
    assert (parsed.series, parsed.series_description, parsed.index_channel) == (
        "7",
        "ep2d_bold",
        True,
    )
    assert parsed.same_grid(meta) and parsed.describe_grid() == "5x6x7 voxels of 3x3x3 mm"
    asap = VolumeStreamMeta(shape=(5, 6, 7), affine=affine, tr_s=1.97, pace="asap")
    assert parse_volume_stream_info(make_volume_stream_info(asap, "v", "src-2")).pace == "asap"
    with pytest.raises(ProtocolError, match="pace must be one of"):
        VolumeStreamMeta(shape=(5, 6, 7), affine=affine, tr_s=1.97, pace="fast")


def test_a_stream_without_an_index_channel_is_read_as_voxels_only():
    meta = VolumeStreamMeta(shape=(5, 6, 7), affine=np.eye(4), tr_s=2.0, index_channel=False)
    info = make_volume_stream_info(meta, "vols", "src-3")
    assert info.channel_count() == 210
    assert info.desc().child("rt_recon").child_value("index_channel") == ""
    parsed = parse_volume_stream_info(info)
    assert (parsed.index_channel, parsed.n_channels, parsed.series) == (False, 210, "")
    other = VolumeStreamMeta(shape=(5, 6, 8), affine=np.eye(4), tr_s=2.0)
    assert not parsed.same_grid(other)


def test_flatten_is_x_fastest_and_inverts():
    meta = VolumeStreamMeta(shape=(2, 3, 4), affine=np.eye(4), tr_s=1.0)
    volume = np.arange(24).reshape(2, 3, 4)
    flat = meta.flatten(volume)
    assert flat[1] == volume[1, 0, 0]  # x varies fastest
    assert flat[2] == volume[0, 1, 0]
    np.testing.assert_array_equal(meta.unflatten(flat), volume)
    with pytest.raises(ProtocolError, match="does not match"):
        meta.flatten(np.zeros((4, 3, 2)))


def test_meta_validation():
    with pytest.raises(ProtocolError, match="three positive ints"):
        VolumeStreamMeta(shape=(2, 0, 3), affine=np.eye(4), tr_s=1.0)
    with pytest.raises(ProtocolError, match="4x4"):
        VolumeStreamMeta(shape=(2, 2, 2), affine=np.eye(3), tr_s=1.0)
    with pytest.raises(ProtocolError, match="needs 8 channels"):
        VolumeStreamMeta(shape=(2, 2, 2), affine=np.eye(4), tr_s=1.0, n_channels=7)


def test_parse_rejects_foreign_stream():
    import pylsl

    info = pylsl.StreamInfo("eeg", "EEG", 8, 250, "float32", "x")
    with pytest.raises(ProtocolError, match="type 'EEG'"):
        parse_volume_stream_info(info)
    info = pylsl.StreamInfo("v", "fMRI", 8, 1, "float32", "y")
    with pytest.raises(ProtocolError, match="no desc/rt_recon"):
        parse_volume_stream_info(info)


def test_markers_round_trip_and_errors():
    event = {"onset": 9.0, "stimulus_id": 4, "caption": "a red circle"}
    assert decode_marker(encode_marker(event)).to_json() == {"type": "event", **event}
    with pytest.raises(ProtocolError, match="not JSON"):
        decode_marker("onset=9")
    with pytest.raises(ProtocolError, match="JSON object"):
        decode_marker("[1]")


def test_stage_latencies_only_for_present_ends():
    times = {"acquired": 1.0, "received": 1.001, "sent": 1.01, "render_received": 1.012}
    lat = stage_latencies(times)
    assert lat == pytest.approx({"lsl_transport": 0.001, "zmq_latents": 0.002})
