"""Crash recovery under ``rt-recon run``, on the real Siemens run (issue #15).

Real processes throughout: ``rt-recon run`` with a decoder and a recorder, the scanner
bridge watching a folder, and the real run's 155 mosaic DICOM files written into it at
20 times real time as a scanner's real-time export writes them. Mid-run one node is
killed with SIGKILL (its pid from its own heartbeat) and the session's supervisor
restarts it:

* the **decoder**: the recorder keeps every volume; the new decoder resumes at the
  volumes' own acquisition indices (each latents' TR is the index of the volume whose
  CRC-32 it carries), no TR has latents twice, its first latents flags the TRs before it
  as ``missed_before`` (it cannot know more), and the recording and the session's end
  summary name the downtime exactly; the new process realigns to the bundle's motion
  reference and warms its z-score up again (its latents are those of a fresh decoder fed
  the run from its first volume, ``warming_up`` on its first TRs);
* the **recorder**: a second segment beside the first, the first file as the kill left
  it, and every volume in one of the two but those that arrived while no recorder ran.

The bundle realigns every volume to the run's own EPI template (``epi_template.nii``,
stored in another voxel order); its latents mean nothing.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from rt_recon.acquire.series import read_series
from rt_recon.config import SessionConfig
from rt_recon.decode.bundle import DecoderBundle, StreamSpec
from rt_recon.decode.online import OnlineDecoder
from rt_recon.evaluate.gaps import recorded_gaps
from rt_recon.preprocess.spec import MotionSpec
from rt_recon.protocol import VolumeStreamMeta
from rt_recon.record.recording import RecordingReader
from rt_recon.record.segments import SessionReader, segment_path
from rt_recon.simulators.scanner_export import export_series
from tests.acquire._shared import shared_path
from tests.conftest import NodeProcesses
from tests.nodes._heartbeats import wait_for_heartbeat
from tests.nodes._scanner_runs import ScannerSeries, copy_series

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

N_VOLUMES = 155  # the whole run
SPEED = 20.0  # TR 1.97 s -> a volume every 0.1 s: the run in about 15 s
KILL_AT_TR = 30  # the node is killed once the decoder has passed this TR
#: The export's volumes after this one wait until the killed node is back, so that a slow
#: machine cannot reach the end of the run before the restarted node has joined it.
BACK_BEFORE = 130
TIMEOUT = 120.0  # generous: a loaded 2-core machine


@pytest.fixture(scope="module")
def siemens_run(tmp_path_factory) -> ScannerSeries:
    """The real run, all 155 volumes, as series 7 (74x74x36)."""
    source = shared_path("siemens_trio_mosaic_run", "dicom")
    series = copy_series(source, tmp_path_factory.mktemp("siemens") / "7", N_VOLUMES)
    assert series.label == "7" and len(series) == N_VOLUMES and series.shape == (74, 74, 36)
    return series


@pytest.fixture(scope="module")
def realigning_bundle(tmp_path_factory, small_bundle_path, siemens_run) -> Path:
    """The small test bundle aimed at the Siemens grid, realigning every volume to the
    run's EPI template (its heads read the template's brightest voxels)."""
    template = nib.load(shared_path("siemens_trio_mosaic_run", "epi_template.nii"))
    reference = np.asarray(template.dataobj, dtype=np.float32)
    first = read_series(siemens_run.files[0].parent).volumes[0]
    bundle = DecoderBundle.load(small_bundle_path)
    brightest = np.argsort(reference.ravel(order="F"), kind="stable")[::-1]
    for head in bundle.heads.values():
        head.voxels = np.sort(brightest[: head.voxels.size]).astype(np.int64)
    bundle.stream = StreamSpec(first.shape, first.flat().size, "full", first.affine)
    bundle.preprocess = dataclasses.replace(bundle.preprocess, motion=MotionSpec(template.affine))
    bundle.reference = reference
    return bundle.save(tmp_path_factory.mktemp("bundle") / "siemens-realigning.safetensors")


def _config(node_config: SessionConfig, bundle: Path) -> SessionConfig:
    return node_config.with_overrides(
        {
            "run.nodes": ["decoder", "recorder"],
            "decoder.bundle": str(bundle),
            "decoder.mode": "continuous",  # no marker stream
            "decoder.wait_for_subscribers": 1,  # the recorder
            "decoder.subscriber_timeout_s": TIMEOUT,
            "stream.buffer_trs": 16,  # no drop on a loaded machine
            "stream.resolve_timeout_s": TIMEOUT,  # the nodes start before the series
        }
    )


def _beat(endpoint: str, done: Callable[[dict], bool], what: str) -> dict:
    return wait_for_heartbeat(endpoint, done, what, timeout=TIMEOUT)


class _CrashSession:
    """``rt-recon run`` (decoder, recorder) and a bridge on one watched folder, and the
    run's export into it."""

    def __init__(self, processes: NodeProcesses, config: SessionConfig, tmp_path: Path):
        self.processes, self.config, self.tmp_path = processes, config, tmp_path
        self.decoder_status = config.decoder.latents_endpoint
        self.recorder_status = config.recorder.status_endpoint
        path = processes.config_path(config)
        self.session = processes.rt_recon("session", "run", path)
        self.watch = tmp_path / "export"
        self.watch.mkdir()
        self.bridge = processes.rt_recon(
            "bridge", "bridge", "--watch", self.watch, "--config", path,
            "--speed", str(SPEED), "--reorder-wait", str(TIMEOUT),
        )  # fmt: skip
        self.bridge.wait_for_line("watching", timeout=TIMEOUT)
        self.back = threading.Event()  # set once the killed node is back
        self._pool = ThreadPoolExecutor(1)

    def pid(self, endpoint: str) -> int:
        return int(_beat(endpoint, lambda b: True, "any heartbeat")["pid"])

    def export(self, series: ScannerSeries) -> Future:
        """Write ``series`` into the watched folder in the background, as a scanner does.

        Volumes 3 and 2 open the series' stream (the bridge holds them until volume 1
        comes); volume 1 and the rest follow once the decoder and the recorder are both on
        it, so both get every volume from the first; volumes after :data:`BACK_BEFORE`
        wait for :attr:`back`.
        """
        for path in (series.files[2], series.files[1]):
            shutil.copyfile(path, self.watch / path.name)

        def on_stream(endpoint: str) -> Callable[[dict], bool]:
            return lambda b: b["state"] == "streaming" and b["run"] == series.label

        def write() -> None:
            _beat(self.decoder_status, on_stream(self.decoder_status), "decoder on the run")
            _beat(self.recorder_status, on_stream(self.recorder_status), "recorder on the run")
            files = (series.files[0], *series.files[3:])
            before = [f for f in files if int(f.stem.rsplit("_", 1)[1]) <= BACK_BEFORE]
            after = files[len(before) :]
            export_series(self._links("a", before), self.watch, speed=SPEED, start_delay=0.1)
            assert self.back.wait(TIMEOUT), "the killed node did not come back"
            interval = 1.97 / SPEED
            export_series(self._links("b", after), self.watch, speed=SPEED, start_delay=interval)

        return self._pool.submit(write)

    def _links(self, name: str, files: tuple[Path, ...] | list[Path]) -> Path:
        folder = self.tmp_path / f"export-{name}"
        folder.mkdir()
        for path in files:
            (folder / path.name).symlink_to(path)
        return folder

    def kill(self, endpoint: str, node: str) -> tuple[int, int]:
        """SIGKILL ``node`` (its pid from its heartbeat) once the decoder has passed
        :data:`KILL_AT_TR`; the pids before and after its restart."""
        _beat(self.decoder_status, lambda b: b["tr"] >= KILL_AT_TR, f"TR {KILL_AT_TR}")
        old = self.pid(endpoint)
        killed = time.monotonic()
        os.kill(old, signal.SIGKILL)
        beat = _beat(
            endpoint,
            lambda b: b["pid"] != old and b["state"] == "streaming",
            f"{node} restarted and streaming",
        )
        self.back.set()
        print(f"{node}: killed, streaming again {time.monotonic() - killed:.1f} s later")
        return old, int(beat["pid"])

    def end(self, exported: Future, series: ScannerSeries) -> tuple[str, dict]:
        """Once everything is exported, streamed and recorded: stop the bridge (its run
        ends), then the session; the session's output and the decoder's heartbeat at the
        end of the run."""
        exported.result(timeout=TIMEOUT)
        last = len(series) - 1
        _beat(self.decoder_status, lambda b: b["tr"] == last, "the decoder at the last TR")
        self.bridge.send_signal(signal.SIGTERM)  # ends the run: its outlet sends end-of-run
        assert self.bridge.wait(timeout=TIMEOUT) == 0, self.bridge.tail()
        assert f"{len(series)} volumes streamed from series ['{series.label}']" in (
            self.bridge.log_text()
        )
        decoder = _beat(
            self.decoder_status, lambda b: b["state"] == "waiting_for_stream", "run ended"
        )
        _beat(self.recorder_status, lambda b: b["state"] == "waiting_for_stream", "run ended")
        self._wait_recorded(last)
        self.session.send_signal(signal.SIGINT)
        assert self.session.wait(timeout=TIMEOUT) == 0, self.session.tail(40)
        self._pool.shutdown()
        return self.session.log_text(), decoder

    def _wait_recorded(self, tr: int) -> None:
        """Until the recording (read as it is written) holds the latents of TR ``tr``."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            with SessionReader(self.config.recording_path) as reading:
                if any(h["tr"] == tr for h in reading.latents_headers()):
                    return
            time.sleep(0.2)
        raise AssertionError(f"the latents of TR {tr} were never recorded")


def _offline(
    bundle: Path, series: ScannerSeries, first: int, stop: int = N_VOLUMES
) -> list[tuple[dict, bool, list]]:
    """What a fresh decoder on ``bundle`` makes of volumes ``first .. stop - 1``, as a
    decoder process that starts at volume ``first`` gets them: ``(latents, warming_up,
    motion)`` per TR."""
    meta = VolumeStreamMeta(
        shape=series.shape, affine=read_series(series.files[0].parent).volumes[0].affine,
        tr_s=1.97,
    )  # fmt: skip
    decoder = OnlineDecoder(DecoderBundle.load(bundle), stream=meta)
    out = []
    with threadpool_limits(1):  # as the decoder node runs
        for tr in range(first, stop):
            latents = decoder.decode(decoder.preprocess(series.flats[tr]), tr=tr)
            motion = [float(p) for p in decoder.features.quality.params]
            out.append((latents, decoder.warming_up, motion))
    return out


def test_a_decoder_killed_mid_run_is_restarted_resumes_at_the_volumes_own_trs_and_its_downtime_is_named(  # noqa: E501
    siemens_run, realigning_bundle, node_config, node_processes, tmp_path
):
    series = siemens_run
    config = _config(node_config, realigning_bundle)
    crash = _CrashSession(node_processes, config, tmp_path)
    exported = crash.export(series)
    old_pid, new_pid = crash.kill(crash.decoder_status, "decoder")
    out, _ = crash.end(exported, series)

    assert old_pid != new_pid
    assert "decoder stopped (exit code -9); restarting it (1/5)" in out
    with SessionReader(config.recording_path) as reading:
        assert reading.paths == [config.recording_path]  # the recorder ran throughout
        ((values, _),) = reading.volumes()
        headers, z, c = reading.latents()
        status = reading.status()
        gaps = recorded_gaps(reading)
    # every volume recorded, in order, each the one read from its file
    assert [zlib.crc32(v) for v in values] == series.crcs

    # latents: no TR twice; each TR the acquisition index of the volume it carries
    trs = [h["tr"] for h in headers]
    assert len(set(trs)) == len(trs) and trs == sorted(trs)
    assert [h["volume_crc32"] for h in headers] == [series.crcs[tr] for tr in trs]
    assert {h["run"] for h in headers} == {series.label}
    # the two processes: TRs 0..a from the first, b..154 from the second, nothing between
    k = next(i for i in range(1, len(trs)) if trs[i] != trs[i - 1] + 1)
    a, b = trs[k - 1], trs[k]
    assert trs == [*range(a + 1), *range(b, N_VOLUMES)]
    assert KILL_AT_TR <= a < b - 1
    print(f"decoder downtime: TRs {a + 1}..{b - 1} ({b - a - 1} at {SPEED:g}x)")
    assert [h["missed_before"] for h in headers] == [0] * k + [b] + [0] * (len(trs) - k - 1)
    assert [h["seq"] for h in headers] == [*range(k), *range(len(trs) - k)]  # two processes

    # the recording has each process's heartbeats: the old one's all before the new one's
    decoder_beats = [s for s in status if s.get("node") == "decoder"]
    pids = [s["pid"] for s in decoder_beats]
    assert set(pids) == {old_pid, new_pid}
    assert pids == sorted(pids, key=lambda pid: pid == new_pid)
    last_old = max(s["t"] for s in decoder_beats if s["pid"] == old_pid)
    first_new = min(s["t"] for s in decoder_beats if s["pid"] == new_pid)
    assert last_old < first_new < headers[k]["times"]["sent"]  # heard before its first latents

    # the downtime, named exactly: in the recording, and in the session's end summary
    (gap,) = gaps
    assert (gap.run, gap.first_tr, gap.last_tr, gap.cause) == (series.label, a + 1, b - 1,
                                                                "decoder restart")  # fmt: skip
    assert gap.pids == (old_pid, new_pid)
    line = (
        f"decoder down: TRs {a + 1}-{b - 1} of run {series.label} not decoded "
        f"(decoder restart: pid {old_pid} -> pid {new_pid})"
    )
    assert gap.describe() == line and f"  not decoded: {line}\n" in out  # the printed summary
    summary = re.search(r"  TRs:\s+(\d+) \((\d+) missed, (\d+) skipped\)", out)
    assert summary is not None, out[-2000:]
    n_trs, missed, skipped = map(int, summary.groups())
    assert (n_trs, skipped) == (N_VOLUMES, 0)  # each TR once
    # missed: the downtime, and any TRs the killed process decoded after its last heartbeat
    assert b - a - 1 <= missed <= b - a - 1 + SPEED / 1.97 * 1.5

    # the restarted decoder is a fresh one fed the run from volume b: the bundle's motion
    # reference (not its own first volume), its z-score warmed up again
    fresh = _offline(realigning_bundle, series, b)
    assert len(fresh) == N_VOLUMES - b
    restarted = headers[k:]
    np.testing.assert_allclose(restarted[0]["motion"], fresh[0][2], atol=1e-4)
    assert max(abs(p) for p in restarted[0]["motion"][:3]) > 1e-3  # mm: not realigned to itself
    assert [h["warming_up"] for h in restarted] == [w for _, w, _ in fresh]
    assert restarted[0]["warming_up"] and not restarted[-1]["warming_up"]
    for i, (latents, _, _) in enumerate(fresh):
        np.testing.assert_allclose(z[k + i], latents["z"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(c[k + i], latents["c"], rtol=1e-4, atol=1e-5)
    first_run = _offline(realigning_bundle, series, 0, a + 1)
    assert [h["warming_up"] for h in headers[:k]] == [w for _, w, _ in first_run]


def test_a_recorder_killed_mid_run_writes_a_second_segment_and_loses_only_its_downtime(
    siemens_run, realigning_bundle, node_config, node_processes, tmp_path
):
    series = siemens_run
    config = _config(node_config, realigning_bundle)
    first = config.recording_path
    crash = _CrashSession(node_processes, config, tmp_path)
    exported = crash.export(series)
    old_pid, new_pid = crash.kill(crash.recorder_status, "recorder")
    size = first.stat().st_size  # the first segment, as the kill left it
    with RecordingReader(first) as reading:
        kept, _ = reading.volumes()
    out, decoder = crash.end(exported, series)

    assert old_pid != new_pid
    assert "recorder stopped (exit code -9); restarting it (1/5)" in out
    recorder_log = (config.paths.output_dir / "logs" / "recorder.log").read_text()
    assert f"{first} exists (a restart after a crash?): recording segment 2" in recorder_log
    assert first.stat().st_size == size  # never written again
    second = segment_path(first, 2)
    with SessionReader(first) as reading:
        assert reading.paths == [first, second]
        assert [s.attr("segment")["reason"] for s in reading.segments] == [
            "start", "recorder restart",
        ]  # fmt: skip
        (a_values, _), (b_values, _) = reading.volumes()
        headers = reading.latents_headers()
        gaps = recorded_gaps(reading)
    np.testing.assert_array_equal(a_values, kept)  # the first file as the kill left it
    a_crcs = [zlib.crc32(v) for v in a_values]
    b_crcs = [zlib.crc32(v) for v in b_values]
    # segment 1: volumes 0..n1-1; segment 2: volumes j..154; between: the downtime's only
    n1, j = len(a_crcs), N_VOLUMES - len(b_crcs)
    assert a_crcs == series.crcs[:n1] and b_crcs == series.crcs[j:]
    assert n1 > KILL_AT_TR and n1 <= j  # LSL keeps no backlog for a new inlet
    lost = j - n1
    print(f"recorder downtime: volumes {n1}..{j - 1} ({lost} at {SPEED:g}x) not recorded")

    # the decoder went on: every TR decoded once; the recording lacks the downtime's latents
    assert decoder["published"] == N_VOLUMES and decoder["missed"] == 0
    trs = [h["tr"] for h in headers]
    assert len(set(trs)) == len(trs) and trs == sorted(trs)
    assert [h["volume_crc32"] for h in headers] == [series.crcs[tr] for tr in trs]
    # the latents of the downtime (about volumes n1..j-1: the new recorder subscribes to
    # the decoder before it finds the volume stream, and may take a few more) are named
    (gap,) = gaps
    assert gap.cause == "not recorded"
    assert n1 - 1 <= gap.first_tr <= n1 + 1 and gap.first_tr <= gap.last_tr <= j
    assert gap.describe() in out
