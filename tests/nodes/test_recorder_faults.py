"""The recorder's disk fills up mid-session: a clear error (log and heartbeat), the file keeps
what was written before, and the decoder and the renderer go on.

Real OS errors: a small tmpfs mounted by the test (ENOSPC; skipped, with the reason, where
mounting is not permitted) and a recorder subprocess under RLIMIT_FSIZE with SIGXFSZ
ignored (EFBIG), which runs everywhere. Real subprocesses, LSL and ZeroMQ throughout.
"""

from __future__ import annotations

import re
import signal
import time
import zlib
from pathlib import Path

import pytest
import zmq

from rt_recon.acquire.nifti import load_nifti_run
from rt_recon.nodes.supervisor import Child
from rt_recon.protocol import TOPIC_FRAME, TOPIC_STATUS
from rt_recon.record.recording import RecordingReader
from rt_recon.transport.zmq import Subscriber
from tests._disk import file_size_limit, small_tmpfs
from tests.conftest import NodeProcesses, free_port

pytestmark = pytest.mark.slow

FRAMES_AFTER_FAILURE = 16  # TRs (2 s at 8x) rendered after the recorder's failure


class _Watch:
    """The renderer's frames and every node's heartbeats, as they arrive."""

    def __init__(self, config):
        self.subs = [
            Subscriber(config.renderer.frames_endpoint, [TOPIC_FRAME, TOPIC_STATUS]),
            Subscriber(config.decoder.latents_endpoint, [TOPIC_STATUS]),
            Subscriber(config.recorder.status_endpoint, [TOPIC_STATUS]),
        ]
        self.poller = zmq.Poller()
        for sub in self.subs:
            self.poller.register(sub.socket, zmq.POLLIN)
        self.frame_trs: list[int] = []
        self.status: dict[str, dict] = {}  # node -> newest heartbeat
        self.low_disk_before_failure: dict | None = None  # the first streaming disk_low beat
        self.pids: dict[str, set[int]] = {}

    def poll(self) -> None:
        ready = dict(self.poller.poll(100))
        for sub in self.subs:
            if sub.socket not in ready:
                continue
            while (message := sub.receive(timeout=0.0)) is not None:
                if message.topic == TOPIC_FRAME:
                    self.frame_trs.append(int(message.header["tr"]))
                else:
                    node = message.header["node"]
                    self.status[node] = message.header
                    header = message.header
                    if header.get("disk_low") is True and header["state"] == "streaming":
                        self.low_disk_before_failure = self.low_disk_before_failure or header
                    self.pids.setdefault(node, set()).add(int(message.header["pid"]))

    def state(self, node: str) -> str | None:
        return self.status.get(node, {}).get("state")

    def wait(self, done, what: str, processes: NodeProcesses, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            processes.assert_running()
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            self.poll()

    def close(self) -> None:
        for sub in self.subs:
            sub.close()


def _config(node_config, **overrides):
    return node_config.with_overrides(
        {
            "recorder.status_endpoint": f"tcp://127.0.0.1:{free_port()}",
            "decoder.wait_for_subscribers": 2,  # the renderer and the recorder
            "decoder.mode": "continuous",
            "stream.buffer_trs": 16,
            "stream.resolve_timeout_s": 120,  # four processes start on two cores
            **overrides,
        }
    )


def _start_session(processes: NodeProcesses, config, bold: Path) -> None:
    """Renderer, decoder and a looping replay source, beside a recorder."""
    processes.node("renderer", config)
    processes.node("decoder", config)
    processes.replay_when_ready(config, bold, "--loop")  # until stopped


def _session_goes_on_after_the_recorder_fails(
    watch: _Watch, processes: NodeProcesses, recorder: Child
) -> dict:
    """Wait for the recorder's failure, then for rendering to go on; stop the recorder, which
    says why it failed. The failure heartbeat."""
    watch.wait(lambda: watch.state("recorder") == "write_failed", "the disk to fill", processes)
    failed = watch.status["recorder"]
    at_failure = watch.frame_trs[-1] if watch.frame_trs else -1
    watch.wait(
        lambda: watch.frame_trs and watch.frame_trs[-1] >= at_failure + FRAMES_AFTER_FAILURE,
        "frames after the recorder's failure",
        processes,
        timeout=60.0,
    )
    # The decoder went on unaffected (the same process, still streaming); the recorder is
    # still up, still says what is wrong, and takes its inputs without recording them.
    assert watch.state("decoder") == "streaming" and len(watch.pids["decoder"]) == 1
    assert watch.status["decoder"]["published"] > failed["latents"]
    assert watch.state("recorder") == "write_failed" and len(watch.pids["recorder"]) == 1
    assert watch.status["recorder"]["unrecorded"] > 0
    assert watch.status["recorder"]["error"] == failed["error"]
    recorder.send_signal(signal.SIGTERM)
    assert recorder.wait(timeout=30) == 2  # it says so once stopped
    log = recorder.log_text()
    assert f"{failed['error']}; the session goes on without a recording" in log
    assert f"rt-recon: error: {failed['error']}" in log
    return failed


def _assert_the_file_keeps_what_was_written(path: Path, error: str, run_crcs: list[int]) -> None:
    kept = int(re.search(r"keeps the (\d+) volumes, (\d+) latents", error).group(1))
    assert kept > 3
    with RecordingReader(path) as reader:
        values, _ = reader.volumes()
        headers, _, _ = reader.latents()
        frame_headers, _ = reader.frames()
    # Every volume flushed before the failure, each exactly the one replayed at that place.
    assert [zlib.crc32(v) for v in values] == [run_crcs[i % len(run_crcs)] for i in range(kept)]
    assert headers and all(h["volume_crc32"] == run_crcs[h["tr"] % len(run_crcs)] for h in headers)
    trs = [h["tr"] for h in frame_headers]
    assert trs == sorted(trs)


def test_a_full_disk_stops_the_recording_with_a_clear_error_and_rendering_goes_on(
    node_config, small_dataset, node_processes, tmp_path
):
    files = small_dataset.runs("test")[0]
    run_crcs = [zlib.crc32(v) for v in load_nifti_run(files.bold).volumes]
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        # The recording and the renderer's PNG frames share the small disk; logs do not.
        config = _config(node_config, **{"paths.output_dir": str(disk)})
        recording = config.recording_path
        assert recording.parent == disk
        watch = _Watch(config)
        try:
            recorder = node_processes.node("recorder", config)
            _start_session(node_processes, config, files.bold)
            failed = _session_goes_on_after_the_recorder_fails(watch, node_processes, recorder)
            # warned before it failed: a 1 MB disk is under recorder.low_disk_mb (1024)
            warned = watch.low_disk_before_failure
            assert warned is not None and 0 <= warned["disk_free_mb"] <= 1.0
            assert watch.status["renderer"]["png_failed"] > 0  # its own writes fail too
            assert watch.state("renderer") == "running"
        finally:
            watch.close()
        error = failed["error"]
        assert error.startswith(
            f"cannot write the recording {recording}: No space left on device (ENOSPC): "
            "the disk is full; the file keeps the "
        )
        assert failed["errno"] == 28
        _assert_the_file_keeps_what_was_written(recording, error, run_crcs)


def test_a_file_size_limit_stops_the_recording_with_a_clear_error_and_rendering_goes_on(
    node_config, small_dataset, node_processes
):
    files = small_dataset.runs("test")[0]
    run_crcs = [zlib.crc32(v) for v in load_nifti_run(files.bold).volumes]
    config = _config(node_config)
    recording = config.recording_path
    watch = _Watch(config)
    try:
        recorder = node_processes.supervisor.start_node(
            "recorder",
            node_processes.config_path(config),
            preexec=file_size_limit(400_000),  # the recorder's log stays far below it
        )
        _start_session(node_processes, config, files.bold)
        failed = _session_goes_on_after_the_recorder_fails(watch, node_processes, recorder)
    finally:
        watch.close()
    error = failed["error"]
    assert error.startswith(
        f"cannot write the recording {recording}: File too large (EFBIG): the file reached "
        "the largest size allowed"
    )
    assert failed["errno"] == 27
    _assert_the_file_keeps_what_was_written(recording, error, run_crcs)
