"""Typed messages: built, encoded, decoded and validated in one place."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rt_recon.errors import ProtocolError
from rt_recon.protocol import (
    ControlReply,
    ControlRequest,
    DecoderCounters,
    Frame,
    FrameHeader,
    Latents,
    LatentsHeader,
    Marker,
    RecorderCounters,
    Status,
    Times,
    TrialRef,
    counters_json,
    decode_marker,
    decode_message,
    encode_message,
)


def _bytes(frames):
    return [f if isinstance(f, bytes) else np.ascontiguousarray(f).tobytes() for f in frames]


def latents_header(**changes) -> LatentsHeader:
    fields = {
        "seq": 3,
        "tr": 12,
        "missed_before": 1,
        "volume_crc32": 0xDEADBEEF,
        "session": "s1",
        "run": "02",
        "model_fingerprint": "f00",
        "lag_trs": 4,
        "mode": "trial",
        "trial": TrialRef(index=2, stimulus_id=40, onset_tr=8, complete=True),
        "motion": [0.1, 0.0, -0.2, 0.001, 0.0, 0.002],
        "fd": 0.12,
        "times": Times(acquired=100.0, received=100.001, sent=100.02),
    }
    return LatentsHeader(**{**fields, **changes})


def test_latents_round_trip_through_the_wire_format():
    z = np.arange(4 * 8 * 8, dtype=np.float32).reshape(4, 8, 8)
    c = np.ones((16, 32), dtype=np.float32)
    message = decode_message(_bytes(Latents(latents_header(), z, c).encode()))
    back = Latents.from_message(message)
    assert back.header == latents_header()
    np.testing.assert_array_equal(back.z, z)
    np.testing.assert_array_equal(back.c, c)
    assert message.header["schema"] == 1 and message.header["trial"]["stimulus_id"] == 40


def test_frame_passes_every_latents_field_on_and_adds_render_times():
    latents = latents_header()
    frame = FrameHeader.from_latents(
        latents, skipped_total=5, render_received=100.03, rendered=100.2, published=100.21
    )
    for name in LatentsHeader.model_fields:
        if name != "times":
            assert getattr(frame, name) == getattr(latents, name), name
    assert frame.skipped_total == 5
    assert frame.times.latencies()["render"] == pytest.approx(0.17)
    assert frame.times.latencies()["end_to_end"] == pytest.approx(0.21)
    image = np.zeros((8, 8, 3), np.uint8)
    back = Frame.from_message(decode_message(_bytes(Frame(frame, image).encode())))
    assert back.header == frame


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"tr": -1}, "tr: Input should be greater than or equal to 0"),
        ({"tr": "12"}, "tr: Input should be a valid integer"),
        ({"mode": "sometimes"}, "mode: Input should be 'trial' or 'continuous'"),
        ({"motion": [0.0, 1.0]}, "motion: List should have at least 6 items"),
        ({"schema": 9}, "latents schema 9: this rt_recon reads schema 1"),
    ],
)
def test_a_malformed_latents_header_is_refused_naming_the_field(change, complaint):
    header = {**latents_header().to_json(), **change}
    with pytest.raises(ProtocolError, match=complaint):
        LatentsHeader.from_json(header)


def test_missing_fields_are_named_and_unknown_keys_are_ignored():
    with pytest.raises(ProtocolError, match="session: Field required \\(missing\\)"):
        LatentsHeader.from_json({k: v for k, v in latents_header().to_json().items()
                                 if k != "session"})  # fmt: skip
    extra = {**latents_header().to_json(), "added_in_a_later_version": 1}
    assert LatentsHeader.from_json(extra) == latents_header()


def test_latents_need_both_buffers_and_float_arrays():
    header = latents_header().to_json()
    only_z = decode_message(_bytes(encode_message("latents", header, {"z": np.zeros((4, 2, 2))})))
    with pytest.raises(ProtocolError, match="needs buffers \\['z', 'c'\\]"):
        Latents.from_message(only_z)
    ints = {"z": np.zeros((4, 2, 2), np.int16), "c": np.zeros((2, 2), np.float32)}
    with pytest.raises(ProtocolError, match="'z' must be a 3-d float array"):
        Latents.from_message(decode_message(_bytes(encode_message("latents", header, ints))))
    frame = decode_message(_bytes(encode_message("frame", header, ints)))
    with pytest.raises(ProtocolError, match="expected a 'latents' message"):
        Latents.from_message(frame)


def test_status_carries_its_counters_flat_and_reads_them_back():
    counters = DecoderCounters(source_id="vol", tr=7, volumes=8, published=8)
    status = Status(
        node="decoder", pid=42, state="streaming", seq=9, t=5.0, uptime_s=1.5,
        counters=counters_json(counters),
    )  # fmt: skip
    header = decode_message(_bytes(status.encode())).header
    assert header["volumes"] == 8 and header["source_id"] == "vol"
    assert Status.from_json(header) == status
    with pytest.raises(ProtocolError, match="state: Input should be"):
        Status.from_json({**header, "state": "sleepy"})


def test_every_recorder_counter_is_present_even_when_not_applicable():
    header = Status(
        node="recorder", pid=1, state="waiting_for_stream", seq=0, t=0.0, uptime_s=0.0,
        counters=counters_json(RecorderCounters()),
    ).to_json()  # fmt: skip
    for key in ("disk_free_mb", "disk_low", "error", "errno", "paused", "unrecorded"):
        assert key in header


def test_control_request_reads_a_bare_command_and_reply_keeps_node_fields():
    assert ControlRequest.from_json({"command": "query"}) == ControlRequest(command="query")
    with pytest.raises(ProtocolError, match="command: Field required"):
        ControlRequest.from_json({"by": "me"})
    reply = ControlReply(ok=True, recording=False)
    assert json.loads(json.dumps(reply.to_json())) == {"schema": 1, "ok": True, "recording": False}
    assert ControlReply.from_json({"ok": False, "error": "disk full"}).error == "disk full"


def test_markers_are_read_leniently_but_checked():
    marker = decode_marker('{"stimulus_id": "12", "onset": 3, "run": 5, "column_x": "kept"}')
    assert marker.type == "event" and marker.stimulus_id == 12 and marker.run == "5"
    assert marker.extra == {"column_x": "kept"}
    run_start = Marker(type="run_start", tr=1.5)
    assert run_start.tr_s == 1.5 and run_start.to_json() == {"type": "run_start", "tr": 1.5}
    with pytest.raises(ProtocolError, match="stimulus_id"):
        decode_marker('{"stimulus_id": "a cat"}')
    with pytest.raises(ProtocolError, match="duration"):
        decode_marker('{"stimulus_id": 1, "duration": -2}')
