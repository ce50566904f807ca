"""Which TRs have no latents in a recording, and why: a decoder restart's downtime named by
the process ids of its heartbeats, latents the recorder missed, volumes that never reached
the decoder, volumes it could not decode; ``rt-recon evaluate`` warns with each."""

from __future__ import annotations

import zlib

import numpy as np

from rt_recon.config import SessionConfig
from rt_recon.evaluate.gaps import DecodingGap, decoding_gaps
from rt_recon.evaluate.session_eval import evaluate_recording
from rt_recon.record.recording import RecordingShapes, RecordingWriter
from tests.display._helpers import frame_header, pattern

T0 = 1000.0  # LSL seconds
TR_S = 1.0


def _latents(tr: int, seq: int, missed_before: int = 0, run: str = "7") -> dict:
    """A latents header as the decoder sends it for TR ``tr`` (sent 50 ms after the TR)."""
    sent = T0 + tr * TR_S + 0.05
    return {"tr": tr, "seq": seq, "missed_before": missed_before, "session": "s", "run": run,
            "times": {"acquired": sent - 0.05, "received": sent - 0.04, "sent": sent}}  # fmt: skip


def _beats(pid: int, start: float, stop: float) -> list[dict]:
    """The heartbeats of decoder process ``pid``, one a second from ``start`` to ``stop``."""
    return [
        {"node": "decoder", "pid": pid, "state": "streaming", "t": t}
        for t in np.arange(start, stop, 1.0)
    ]


def test_a_restarted_decoder_downtime_is_named_with_both_processes():
    # pid 100 decodes TRs 0..40 and is killed; pid 200 starts 4 s later and resumes at TR 49,
    # flagging the 49 TRs before it as missed (it cannot know the first process's)
    latents = [_latents(tr, tr) for tr in range(41)]
    latents += [_latents(49, 0, missed_before=49), *(_latents(tr, tr - 49) for tr in range(50, 60))]
    status = _beats(100, T0 - 3, T0 + 41) + _beats(200, T0 + 45.2, T0 + 62)
    (gap,) = decoding_gaps(latents, status)
    assert gap == DecodingGap("7", 41, 48, "decoder restart", (100, 200))
    assert gap.n_trs == 8
    assert gap.describe() == (
        "decoder down: TRs 41-48 of run 7 not decoded (decoder restart: pid 100 -> pid 200)"
    )


def test_a_restart_is_known_from_the_latents_numbering_without_heartbeats():
    latents = [_latents(tr, tr) for tr in range(10)] + [_latents(15, 0, missed_before=15)]
    (gap,) = decoding_gaps(latents)
    assert (gap.first_tr, gap.last_tr, gap.cause, gap.pids) == (10, 14, "decoder restart", ())
    assert gap.describe() == "decoder down: TRs 10-14 of run 7 not decoded (decoder restart)"


def test_latents_lost_by_the_recorder_volumes_never_received_and_volumes_not_decodable():
    latents = [
        *(_latents(tr, tr) for tr in range(5)),
        _latents(9, 9),  # 5..8 published (seq 5..8) but not recorded
        _latents(12, 10, missed_before=2),  # 10, 11 never reached the decoder
        _latents(14, 11),  # 13 assigned a TR but not decodable (a NaN volume)
    ]
    status = _beats(100, T0 - 1, T0 + 16)  # one process throughout
    gaps = decoding_gaps(latents, status)
    assert [(g.first_tr, g.last_tr, g.cause, g.pids) for g in gaps] == [
        (5, 8, "not recorded", (100,)),
        (10, 11, "not received", (100,)),
        (13, 13, "not decodable", (100,)),
    ]
    assert [g.describe() for g in gaps] == [
        "TRs 5-8 of run 7: latents decoded but not recorded (the recorder was down)",
        "TRs 10-11 of run 7 not decoded: the volumes never reached the decoder",
        "TR 13 of run 7 not decoded: the decoder could not decode the volumes (skipped)",
    ]


def test_each_run_counts_from_tr_0_and_a_late_start_is_a_gap_of_its_own_run():
    latents = [_latents(tr, tr, run="7") for tr in range(5)]
    latents += [_latents(tr, 5 + tr, run="8") for tr in range(5)]  # the next series, from 0
    latents += [_latents(3, 10, missed_before=3, run="9")]  # joined series 9 at TR 3
    (gap,) = decoding_gaps(latents, _beats(100, T0 - 1, T0 + 6))
    assert (gap.run, gap.first_tr, gap.last_tr, gap.cause) == ("9", 0, 2, "not received")
    assert decoding_gaps([_latents(tr, tr) for tr in range(5)]) == []


def test_evaluate_warns_with_the_downtime_of_a_restarted_decoder(tmp_path):
    """A recorded session scored by ``evaluate_recording``: its warnings (printed by
    ``rt-recon evaluate`` and in the report) name the decoder's downtime."""
    n_trs, lag, size, down = 24, 2, 32, range(9, 13)  # TRs 9..12: decoder down
    onsets = {2 + 2 * k: k for k in range(10)}  # a trial every other TR
    shapes = RecordingShapes(8, (1, 2, 2), (1, 2), (size, size, 3))
    config = SessionConfig().model_dump(mode="json")
    path = tmp_path / "recording.h5"
    with RecordingWriter(path, shapes, attrs={"config": config}) as rec:
        for tr in range(n_trs):
            stamp = T0 + tr * TR_S
            values = np.arange(8, dtype=np.float32) + tr
            rec.add_volume(values, stamp)
            if tr in onsets:
                rec.add_marker({"stimulus_id": onsets[tr], "duration": 1.0}, stamp + 0.01)
            pid, first = (100, 0) if tr < down.start else (200, down.stop)
            rec.add_status({"node": "decoder", "pid": pid, "state": "streaming", "t": stamp})
            if tr in down:
                continue
            missed = down.stop if tr == down.stop else 0
            rec.add_latents(
                {**_latents(tr, tr - first, missed), "volume_crc32": zlib.crc32(values)},
                np.zeros((1, 2, 2), np.float32), np.zeros((1, 2), np.float32),
            )  # fmt: skip
            trial = onsets.get(tr - lag)
            image = pattern(trial, size) if trial is not None else np.full((size, size, 3), 128)
            header = frame_header(tr, stamp, lag_trs=lag, volume_crc32=zlib.crc32(values))
            rec.add_frame(header.to_json(), image.astype(np.uint8))
            rec.flush()
    stimuli = {k: pattern(k, size) for k in onsets.values()}
    evaluation = evaluate_recording(path, stimuli)
    line = "decoder down: TRs 9-12 of run 7 not decoded (decoder restart: pid 100 -> pid 200)"
    assert evaluation.not_decoded == [line]
    assert line in evaluation.warnings and evaluation.metrics()["warnings"][-1] == line
    assert evaluation.n_missing == 2  # the trials scored at TRs 10 and 12 have no frame
