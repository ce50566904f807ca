"""The decoder process against a faulty volume stream: a scanner stream that drops and comes
back, and duplicated, out-of-order and missing volumes.

Real liblsl on loopback, a real decoder subprocess, real ZeroMQ. Every volume
index has its own CRC-32 (tests/nodes/_stream_source.py), so each latents
message proves which volume it was decoded from.
"""

from __future__ import annotations

import signal
import time
import zlib
from contextlib import contextmanager

import pylsl
import pytest

from rt_recon.acquire.nifti import RecordedRun, load_nifti_run
from rt_recon.nodes.ready import ReadyWatcher
from rt_recon.nodes.supervisor import Child
from rt_recon.transport.lsl import VolumeOutlet
from tests.conftest import NodeProcesses
from tests.nodes._latents import DecoderOutput
from tests.nodes._stream_source import (
    push_on_schedule,
    resume_index,
    stream_meta,
    volume,
    write_t0,
)

pytestmark = pytest.mark.slow

SPEED = 8.0  # TR 1 s replayed at 8x: one volume every 0.125 s
BEFORE_DROP = 12  # volumes 0..11 before the stream goes away
AFTER_DROP = 12  # volumes pushed by the new outlet


def _start_decoder(node_config, processes: NodeProcesses) -> Child:
    config = node_config.with_overrides(
        {
            "decoder.wait_for_subscribers": 1,  # this test's subscriber
            "decoder.mode": "continuous",  # no marker stream
            "stream.buffer_trs": 16,  # no drop on a loaded machine
        }
    )
    return processes.node("decoder", config)


def _wait_until_streaming(node_config, latents: DecoderOutput, processes: NodeProcesses) -> None:
    ready = ReadyWatcher([node_config.decoder.latents_endpoint], node_config.stream.source_id)
    try:
        latents.wait_for(ready, "the decoder to report streaming", processes)
    finally:
        ready.close()


@contextmanager
def _streaming_decoder(node_config, processes: NodeProcesses, meta):
    """A decoder process streaming from an outlet of this test: ``(decoder, outlet,
    latents)``; the latents collector stays readable after the block."""
    latents = DecoderOutput(node_config.decoder.latents_endpoint, running=("decoder",))
    try:
        with VolumeOutlet(
            meta, node_config.stream.name, node_config.stream.source_id, 16
        ) as outlet:
            decoder = _start_decoder(node_config, processes)
            _wait_until_streaming(node_config, latents, processes)
            yield decoder, outlet, latents
    finally:
        latents.close()


def _crc(run: RecordedRun, index: int) -> int:
    return zlib.crc32(volume(run, index))


def _assert_every_tr_is_its_volume_and_every_gap_flagged(run, headers, pushed_after):
    trs = [h["tr"] for h in headers]
    assert trs == sorted(set(trs)), f"TR indices must increase, found {trs}"
    assert [h["seq"] for h in headers] == list(range(len(headers)))
    # Nothing mis-assigned: TR t carries the CRC of volume t, before and after the drop.
    assert [h["volume_crc32"] for h in headers] == [_crc(run, t) for t in trs]
    # Exactly the indices that never arrived are flagged, each by the next message.
    flagged = {t for h in headers for t in range(h["tr"] - h["missed_before"], h["tr"])}
    assert flagged == set(range(trs[-1] + 1)) - set(trs)
    before = [t for t in trs if t < pushed_after[0]]
    assert before[0] == 0 and len(before) >= BEFORE_DROP - 2  # a kill may lose one in flight
    # The decoder recovered: it decoded what the new outlet sent ...
    resumed = [h for h in headers if h["tr"] >= pushed_after[0]]
    assert resumed and resumed[-1]["tr"] == pushed_after[-1]
    assert len(resumed) >= len(pushed_after) // 2
    # ... and its first message after the outage flags the whole outage.
    assert resumed[0]["missed_before"] == resumed[0]["tr"] - before[-1] - 1 > 0


def _pushed(source: Child) -> list[int]:
    """The indices a source process has pushed, from its log."""
    lines = source.log_text().splitlines()
    return [int(line.split()[1]) for line in lines if line.startswith("pushed ")]


@pytest.mark.parametrize("how", ["outlet_closed", "source_killed"])
def test_stream_drops_and_comes_back_with_every_gap_flagged(
    how, node_config, small_dataset, node_processes, tmp_path
):
    files = small_dataset.runs("test")[0]
    run = load_nifti_run(files.bold)
    meta = stream_meta(run, SPEED)
    interval = meta.sample_interval
    name, source_id = node_config.stream.name, node_config.stream.source_id

    def source(label: str, t0: str, first: int, count: int) -> Child:
        args = [files.bold, name, source_id, t0, str(SPEED), str(first), str(count)]
        return node_processes.python(label, "-m", "tests.nodes._stream_source", *args)

    latents = DecoderOutput(node_config.decoder.latents_endpoint, running=("decoder",))
    try:
        _start_decoder(node_config, node_processes)
        if how == "outlet_closed":
            outlet = VolumeOutlet(meta, name, source_id, buffer_trs=16)
            _wait_until_streaming(node_config, latents, node_processes)
            t0 = pylsl.local_clock() + 0.2
            push_on_schedule(outlet, run, t0, ((i, i) for i in range(BEFORE_DROP)))
            latents.wait_for(
                lambda: latents.headers and latents.headers[-1]["tr"] >= BEFORE_DROP - 1,
                "the volumes before the drop",
                node_processes,
            )
            outlet.close()  # the stream goes away
            time.sleep(1.0)  # and stays away a while
            outlet = VolumeOutlet(meta, name, source_id, buffer_trs=16)  # and comes back
            assert outlet.wait_for_consumers(60), "the decoder's inlet did not reconnect"
            first = resume_index(t0, interval)
            pushed_after = list(range(first, first + AFTER_DROP))
            push_on_schedule(outlet, run, t0, ((i, i) for i in pushed_after))
            latents.wait_for(
                lambda: latents.headers[-1]["tr"] >= pushed_after[-1],
                "the volumes after the drop",
                node_processes,
            )
            outlet.close()
            node_processes.assert_running()
        else:
            go = tmp_path / "go"
            first_source = source("source", f"@{go}", 0, 10_000)
            _wait_until_streaming(node_config, latents, node_processes)
            t0 = pylsl.local_clock() + 0.2
            write_t0(go, t0)
            first_source.wait_for_line(f"^pushed {BEFORE_DROP - 1}$", timeout=60)
            first_source.send_signal(signal.SIGKILL)  # mid-stream, while volumes flow
            assert first_source.wait(timeout=10) == -signal.SIGKILL
            resumed = source("resumed", repr(t0), -1, AFTER_DROP)
            resumed.wait_for_line("^done$", timeout=60)
            pushed_after = _pushed(resumed)
            assert len(pushed_after) == AFTER_DROP
            latents.wait_for(
                lambda: latents.headers and latents.headers[-1]["tr"] >= pushed_after[-1],
                "the volumes after the drop",
                node_processes,
            )
            node_processes.assert_running("decoder", "resumed")
    finally:
        latents.close()
    _assert_every_tr_is_its_volume_and_every_gap_flagged(run, latents.headers, pushed_after)


def test_duplicated_out_of_order_and_missing_volumes_are_never_misassigned(
    node_config, small_dataset, node_processes
):
    files = small_dataset.runs("test")[0]
    run = load_nifti_run(files.bold)
    meta = stream_meta(run, SPEED)
    # (volume index, stamp index): volume 2 sent twice with its own stamp; volume 4 after
    # volume 5 (out of order); volumes 7 and 8 never sent.
    items = [(0, 0), (1, 1), (2, 2), (2, 2), (3, 3), (5, 5), (4, 4), (6, 6)]
    items += [(9, 9), (10, 10), (11, 11)]
    with _streaming_decoder(node_config, node_processes, meta) as (decoder, out, latents):
        push_on_schedule(out, run, pylsl.local_clock() + 0.2, items)
        latents.wait_for(
            lambda: (
                latents.status.get("volumes") == len(items)
                and latents.headers
                and latents.headers[-1]["tr"] == 11
            ),
            "every volume to be taken",
            node_processes,
        )
        log = decoder.log_text()
    headers = latents.headers
    assert [h["tr"] for h in headers] == [0, 1, 2, 3, 5, 6, 9, 10, 11]
    assert [h["volume_crc32"] for h in headers] == [_crc(run, h["tr"]) for h in headers]
    assert {h["tr"]: h["missed_before"] for h in headers if h["missed_before"]} == {5: 1, 9: 2}
    status = latents.status
    assert (status["duplicates"], status["out_of_order"]) == (1, 1)
    assert (status["published"], status["missed"], status["skipped"]) == (9, 3, 0)
    assert "skipped (not assigned a TR): a duplicate" in log
    assert "skipped (not assigned a TR): out of order" in log


def test_a_nan_volume_is_a_flagged_skipped_tr_and_the_decoder_goes_on(
    node_config, small_dataset, node_processes
):
    files = small_dataset.runs("test")[0]
    run = load_nifti_run(files.bold)
    meta = stream_meta(run, SPEED)
    with _streaming_decoder(node_config, node_processes, meta) as (decoder, out, latents):
        t0 = pylsl.local_clock() + 0.2
        push_on_schedule(out, run, t0, [(i, i) for i in range(3)])
        bad = volume(run, 3)
        bad[: len(bad) // 2] = float("nan")  # a broken reconstruction on the scanner
        while pylsl.local_clock() < t0 + 3 * meta.sample_interval:
            time.sleep(0.005)
        out.push(bad, t0 + 3 * meta.sample_interval)
        push_on_schedule(out, run, t0, [(i, i) for i in range(4, 7)])
        latents.wait_for(
            lambda: latents.headers and latents.headers[-1]["tr"] == 6,
            "the volumes after the NaN one",
            node_processes,
        )
        latents.wait_for(
            lambda: latents.status.get("volumes") == 7, "the heartbeat", node_processes
        )
        log = decoder.log_text()
        node_processes.assert_running()  # the node survived
    headers = latents.headers
    assert [h["tr"] for h in headers] == [0, 1, 2, 4, 5, 6]
    assert [h["volume_crc32"] for h in headers] == [_crc(run, h["tr"]) for h in headers]
    assert (latents.status["skipped"], latents.status["missed"]) == (1, 0)
    assert "TR 3 skipped" in log and "NaN" in log
