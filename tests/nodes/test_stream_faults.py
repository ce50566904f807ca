"""The decoder process against a faulty volume stream: a scanner stream that drops and comes
back, and duplicated, out-of-order and missing volumes.

Real liblsl on loopback, a real decoder subprocess, real ZeroMQ. Every volume
index has its own CRC-32 (tests/nodes/_stream_source.py), so each latents
message proves which volume it was decoded from.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

import pylsl
import pytest

from rt_recon.acquire.nifti import RecordedRun, load_nifti_run
from rt_recon.nodes.ready import ReadyWatcher
from rt_recon.nodes.supervisor import Supervisor
from rt_recon.protocol import TOPIC_LATENTS, TOPIC_STATUS
from rt_recon.transport.lsl import VolumeOutlet
from rt_recon.transport.zmq import Subscriber
from tests.nodes._stream_source import (
    push_on_schedule,
    resume_index,
    stream_meta,
    volume,
)

pytestmark = pytest.mark.slow

SPEED = 8.0  # TR 1 s replayed at 8x: one volume every 0.125 s
BEFORE_DROP = 12  # volumes 0..11 before the stream goes away
AFTER_DROP = 12  # volumes pushed by the new outlet


class _Latents:
    """Collects the decoder's latents headers and its newest heartbeat."""

    def __init__(self, endpoint: str):
        self.sub = Subscriber(endpoint, [TOPIC_LATENTS, TOPIC_STATUS])
        self.headers: list[dict] = []
        self.status: dict = {}

    def drain(self, timeout: float = 0.1) -> None:
        message = self.sub.receive(timeout)
        while message is not None:
            if message.topic == TOPIC_LATENTS:
                self.headers.append(message.header)
            elif message.header.get("node") == "decoder":
                self.status = message.header
            message = self.sub.receive(0.0)

    def wait_for(self, done, what: str, supervisor: Supervisor, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            exited = supervisor.exited()
            assert not exited, f"decoder exited ({exited}): {supervisor.children['decoder'].tail()}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            self.drain()

    def close(self) -> None:
        self.sub.close()


def _start_decoder(node_config, tmp_path, supervisor: Supervisor) -> None:
    config = node_config.with_overrides(
        {
            "decoder.wait_for_subscribers": 1,  # this test's subscriber
            "decoder.mode": "continuous",  # no marker stream
            "stream.buffer_trs": 16,  # no drop on a loaded machine
        }
    )
    path = tmp_path / "session.json"
    path.write_text(config.to_json())
    supervisor.start("decoder", ["decode", "--config", str(path)])


def _wait_until_streaming(node_config, latents: _Latents, supervisor: Supervisor) -> None:
    ready = ReadyWatcher([node_config.decoder.latents_endpoint], node_config.stream.source_id)
    try:
        latents.wait_for(ready, "the decoder to report streaming", supervisor)
    finally:
        ready.close()


@contextmanager
def _streaming_decoder(node_config, tmp_path, meta):
    """A decoder process streaming from an outlet of this test: ``(supervisor, outlet,
    latents)``; the latents collector stays readable after the block."""
    latents = _Latents(node_config.decoder.latents_endpoint)
    try:
        with (
            Supervisor(tmp_path / "logs") as supervisor,
            VolumeOutlet(meta, node_config.stream.name, node_config.stream.source_id, 16) as out,
        ):
            _start_decoder(node_config, tmp_path, supervisor)
            _wait_until_streaming(node_config, latents, supervisor)
            yield supervisor, out, latents
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


@pytest.mark.parametrize("how", ["outlet_closed", "source_killed"])
def test_stream_drops_and_comes_back_with_every_gap_flagged(
    how, node_config, small_dataset, tmp_path
):
    files = small_dataset.runs("test")[0]
    run = load_nifti_run(files.bold)
    meta = stream_meta(run, SPEED)
    interval = meta.sample_interval
    name, source_id = node_config.stream.name, node_config.stream.source_id
    t0 = 0.0  # the schedule starts once the decoder is streaming
    sources: list[subprocess.Popen] = []

    def source(first: int, count: int) -> subprocess.Popen:
        args = [str(files.bold), name, source_id, repr(t0), str(SPEED), str(first), str(count)]
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.nodes._stream_source", *args],
            cwd=Path(__file__).resolve().parents[2],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        sources.append(process)
        return process

    def pushed_lines(process: subprocess.Popen, until: int) -> list[int]:
        pushed = []
        while not pushed or pushed[-1] < until:
            line = process.stdout.readline()
            assert line, f"the source exited early (code {process.wait()})"
            if line.startswith("pushed "):
                pushed.append(int(line.split()[1]))
            elif line.strip() == "done":
                break
        return pushed

    latents = _Latents(node_config.decoder.latents_endpoint)
    try:
        with Supervisor(tmp_path / "logs") as supervisor:
            _start_decoder(node_config, tmp_path, supervisor)
            if how == "outlet_closed":
                outlet = VolumeOutlet(meta, name, source_id, buffer_trs=16)
                _wait_until_streaming(node_config, latents, supervisor)
                t0 = pylsl.local_clock() + 0.2
                push_on_schedule(outlet, run, t0, ((i, i) for i in range(BEFORE_DROP)))
                latents.wait_for(
                    lambda: latents.headers and latents.headers[-1]["tr"] >= BEFORE_DROP - 1,
                    "the volumes before the drop",
                    supervisor,
                )
                outlet.close()  # the stream goes away
                time.sleep(1.0)
                outlet = VolumeOutlet(meta, name, source_id, buffer_trs=16)  # and comes back
                assert outlet.wait_for_consumers(60), "the decoder's inlet did not reconnect"
                first = resume_index(t0, interval)
                pushed_after = list(range(first, first + AFTER_DROP))
                push_on_schedule(outlet, run, t0, ((i, i) for i in pushed_after))
                latents.wait_for(
                    lambda: latents.headers[-1]["tr"] >= pushed_after[-1],
                    "the volumes after the drop",
                    supervisor,
                )
                outlet.close()
            else:
                first_source = source(0, 10_000)
                _wait_until_streaming(node_config, latents, supervisor)
                t0 = pylsl.local_clock() + 0.2
                first_source.stdin.write(f"go {t0!r}\n")
                first_source.stdin.flush()
                pushed_lines(first_source, until=BEFORE_DROP - 1)
                first_source.send_signal(signal.SIGKILL)  # mid-stream, while volumes flow
                first_source.wait(timeout=10)
                pushed_after = pushed_lines(source(-1, AFTER_DROP), until=10**9)
                assert len(pushed_after) == AFTER_DROP
                latents.wait_for(
                    lambda: latents.headers and latents.headers[-1]["tr"] >= pushed_after[-1],
                    "the volumes after the drop",
                    supervisor,
                )
            assert supervisor.exited() == {}
    finally:
        for process in sources:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        latents.close()
    _assert_every_tr_is_its_volume_and_every_gap_flagged(run, latents.headers, pushed_after)


def test_duplicated_out_of_order_and_missing_volumes_are_never_misassigned(
    node_config, small_dataset, tmp_path
):
    files = small_dataset.runs("test")[0]
    run = load_nifti_run(files.bold)
    meta = stream_meta(run, SPEED)
    # (volume index, stamp index): volume 2 sent twice with its own stamp; volume 4 after
    # volume 5 (out of order); volumes 7 and 8 never sent.
    items = [(0, 0), (1, 1), (2, 2), (2, 2), (3, 3), (5, 5), (4, 4), (6, 6)]
    items += [(9, 9), (10, 10), (11, 11)]
    with _streaming_decoder(node_config, tmp_path, meta) as (supervisor, out, latents):
        push_on_schedule(out, run, pylsl.local_clock() + 0.2, items)
        latents.wait_for(
            lambda: (
                latents.status.get("volumes") == len(items)
                and latents.headers
                and latents.headers[-1]["tr"] == 11
            ),
            "every volume to be taken",
            supervisor,
        )
        log = supervisor.children["decoder"].tail(400)
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
    node_config, small_dataset, tmp_path
):
    files = small_dataset.runs("test")[0]
    run = load_nifti_run(files.bold)
    meta = stream_meta(run, SPEED)
    with _streaming_decoder(node_config, tmp_path, meta) as (supervisor, out, latents):
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
            supervisor,
        )
        latents.wait_for(lambda: latents.status.get("volumes") == 7, "the heartbeat", supervisor)
        log = supervisor.children["decoder"].tail(400)
        assert supervisor.exited() == {}  # the node survived
    headers = latents.headers
    assert [h["tr"] for h in headers] == [0, 1, 2, 4, 5, 6]
    assert [h["volume_crc32"] for h in headers] == [_crc(run, h["tr"]) for h in headers]
    assert (latents.status["skipped"], latents.status["missed"]) == (1, 0)
    assert "TR 3 skipped" in log and "NaN" in log
