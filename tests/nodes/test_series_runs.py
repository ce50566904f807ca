"""Runs and series end to end: real Siemens exports written into a watched folder, the
``rt-recon bridge`` process streaming them, a decoder and a recorder process reading them.

One series is one run (docs/protocol.md 1, "Runs and series"): the decoder numbers
each run's TRs from its volumes' own acquisition indices (a run starts again at TR 0,
a consumer that joins late starts at the index it first sees), refuses a run on another
grid than its bundle's and goes on with the next that fits; the recorder writes the runs
of its file's grid into one file, with a ``run_start`` entry at each boundary. The bridge
holds each series' first volume until the decoder and the recorder are on its stream
(``bridge.await_nodes``), so both get every volume, whenever they start. Every
latents message carries the CRC-32 of its volume, checked against the volume read from
its file: the index channel put each volume at its own TR.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import numpy as np
import pytest

from rt_recon.config import SessionConfig
from rt_recon.record.recording import RecordingReader
from rt_recon.record.segments import SessionReader
from rt_recon.simulators.scanner_export import export_series
from tests.acquire._shared import shared_path
from tests.conftest import NodeProcesses
from tests.nodes._heartbeats import wait_for_heartbeat
from tests.nodes._latents import DecoderOutput
from tests.nodes._scanner_runs import (
    ScannerSeries,
    bundle_on_grid,
    copy_series,
    renumbered_series,
)

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

N_VOLUMES = 20  # per series: keep it small
SPEED = 10.0  # the export: TR 1.97 s -> a volume every 0.2 s
TIMEOUT = 120.0  # generous: a loaded 2-core machine


@pytest.fixture(scope="session")
def siemens(tmp_path_factory) -> tuple[ScannerSeries, ScannerSeries]:
    """Series 7 (the real run's first volumes) and series 8 (its next volumes, renumbered
    from 1 as the following series): two runs on one grid, 74x74x36."""
    source = shared_path("siemens_trio_mosaic_run", "dicom")
    root = tmp_path_factory.mktemp("siemens")
    first = copy_series(source, root / "7", N_VOLUMES)
    second = renumbered_series(source, root / "8", 8, first=N_VOLUMES + 1, n=N_VOLUMES)
    assert (first.label, second.label) == ("7", "8") and first.shape == (74, 74, 36)
    return first, second


@pytest.fixture(scope="session")
def siemens_long(tmp_path_factory) -> ScannerSeries:
    """Series 7's first 80 volumes (16 s at the export's speed, if it is not stopped)."""
    source = shared_path("siemens_trio_mosaic_run", "dicom")
    return copy_series(source, tmp_path_factory.mktemp("siemens_long") / "7", 4 * N_VOLUMES)


@pytest.fixture(scope="session")
def other_grid(tmp_path_factory) -> ScannerSeries:
    """Series 2 of another scanner and geometry: 64x64x36."""
    source = shared_path("dcm_qa_mosaic", "In", "ep2d_Asc_2")
    series = copy_series(source, tmp_path_factory.mktemp("other") / "2", 6)
    assert series.label == "2" and series.shape == (64, 64, 36)
    return series


@pytest.fixture(scope="session")
def siemens_bundle(tmp_path_factory, small_bundle_path, siemens) -> Path:
    """A decoder bundle on the Siemens grid (its latents mean nothing)."""
    folder = siemens[0].files[0].parent
    return bundle_on_grid(
        small_bundle_path, folder, tmp_path_factory.mktemp("bundle") / "siemens.safetensors"
    )


def _config(node_config: SessionConfig, bundle: Path, subscribers: int) -> SessionConfig:
    return node_config.with_overrides(
        {
            "decoder.bundle": str(bundle),
            "decoder.mode": "continuous",  # no marker stream
            "decoder.wait_for_subscribers": subscribers,
            "decoder.subscriber_timeout_s": TIMEOUT,
            "stream.buffer_trs": 16,  # no drop on a loaded machine
            "stream.resolve_timeout_s": TIMEOUT,  # the nodes start before the first series
        }
    )


class _Session:
    """The bridge, the decoder and the recorder processes on one watched folder."""

    def __init__(
        self,
        processes: NodeProcesses,
        config: SessionConfig,
        tmp_path: Path,
        *bridge_args: str,
    ):
        self.processes, self.config, self.tmp_path = processes, config, tmp_path
        self.watch = tmp_path / "export"
        self.watch.mkdir()
        self.bridge = processes.rt_recon(
            "bridge", "bridge", "--watch", self.watch, "--config", processes.config_path(config),
            "--speed", str(SPEED), *bridge_args,
        )  # fmt: skip
        self.recorder = processes.node("recorder", config)
        self.decoder = processes.node("decoder", config)
        self.bridge.wait_for_line("watching", timeout=TIMEOUT)

    def export(self, series: ScannerSeries, stop: threading.Event | None = None) -> list[int]:
        """Write ``series`` into the watched folder at the export's speed, as a scanner does
        (the bridge holds its first volume until both nodes are on its stream); the
        acquisition indices written (all, unless ``stop`` was set)."""
        report = export_series(series.files[0].parent, self.watch, speed=SPEED, stop=stop)
        return [w.index for w in report.written]

    def recording(self) -> RecordingReader:
        """The recording, once the recorder has stopped (and closed it)."""
        self.recorder.send_signal(signal.SIGTERM)
        assert self.recorder.wait(timeout=TIMEOUT) == 0, self.recorder.tail()
        return RecordingReader(self.config.recording_path)

    def segments(self) -> SessionReader:
        """Every segment of the recording, once the recorder has stopped."""
        self.recorder.send_signal(signal.SIGTERM)
        assert self.recorder.wait(timeout=TIMEOUT) == 0, self.recorder.tail()
        return SessionReader(self.config.recording_path)


def _assert_run_decoded_from_tr_0(output: DecoderOutput, series: ScannerSeries) -> None:
    """Every volume of ``series`` decoded once, at its own TR: TRs 0..n-1 of run ``label``,
    none missed, each latents' CRC that of the volume read from its file."""
    headers = output.run(series.label)
    assert [h["tr"] for h in headers] == list(range(len(series))), series.label
    assert [h["missed_before"] for h in headers] == [0] * len(series)
    assert [h["volume_crc32"] for h in headers] == series.crcs


def _run_starts(recording: RecordingReader) -> list[dict]:
    return [s for s in recording.status() if s.get("event") == "run_start"]


def test_two_series_are_two_runs_each_from_tr_0_and_one_recording(
    siemens, siemens_bundle, node_config, node_processes, tmp_path
):
    """Series 7 then series 8 on one grid: two runs, each decoded from TR 0 with every
    volume at its own TR, both recorded in one file with the boundary between them."""
    first, second = siemens
    config = _config(node_config, siemens_bundle, subscribers=2)  # this test and the recorder
    output = DecoderOutput(config.decoder.latents_endpoint)
    try:
        session = _Session(node_processes, config, tmp_path)
        session.export(first)
        session.export(second)
        output.wait_for(
            lambda: (
                len(output.run(second.label)) >= len(second)
                and output.status.get("tr") == len(second) - 1
            ),
            "every TR of both runs",
            node_processes,
        )
    finally:
        output.close()
    _assert_run_decoded_from_tr_0(output, first)
    _assert_run_decoded_from_tr_0(output, second)
    assert [h["seq"] for h in output.headers] == list(range(2 * N_VOLUMES))
    runs = [first.label] * len(first) + [second.label] * len(second)
    assert [h["run"] for h in output.headers] == runs  # the right run in every header
    assert output.status["runs"] == 2 and output.status["run"] == second.label
    assert output.status["missed"] == 0 and output.status["out_of_order"] == 0

    with session.recording() as recording:
        values, stamps = recording.volumes()
        np.testing.assert_array_equal(values, np.concatenate([first.flats, second.flats]))
        assert recording.attr("stream")["run"] == first.label  # the file's first run
        (boundary,) = _run_starts(recording)
        assert boundary["node"] == "recorder"
        assert boundary["stream"]["run"] == boundary["stream"]["series"] == second.label
        assert boundary["stream"]["shape"] == [74, 74, 36]
        # between the runs: after the first one's last volume, before the second's first
        assert boundary["t"] > stamps[len(first) - 1]
        assert boundary["t"] < min(h["times"]["received"] for h in output.run(second.label))
        headers, _, _ = recording.latents()
        assert [(h["run"], h["tr"]) for h in headers] == [
            (s.label, t) for s in (first, second) for t in range(len(s))
        ]


def test_a_run_on_another_grid_is_refused_and_the_next_decoded_from_tr_0(
    siemens, other_grid, siemens_bundle, node_config, node_processes, tmp_path
):
    """Series 7, series 2 of another scanner's grid, series 8: the decoder refuses series 2
    naming both grids, stays up and decodes series 8 from TR 0; the recorder records series
    2 in a segment of its own grid (and series 8 in the next), with the decoder saying why."""
    first, second = siemens
    config = _config(node_config, siemens_bundle, subscribers=2)
    output = DecoderOutput(config.decoder.latents_endpoint)
    try:
        session = _Session(node_processes, config, tmp_path)
        session.export(first)
        session.export(other_grid)
        output.wait_for(
            lambda: output.status.get("refused") == len(other_grid),
            "the decoder to refuse every volume of the run on another grid",
            node_processes,
        )
        refusing = output.status
        session.export(second)
        output.wait_for(
            lambda: (
                output.status.get("run") == second.label
                and output.status.get("tr") == len(second) - 1
            ),
            "every TR of the run after the refused one",
            node_processes,
        )
    finally:
        output.close()
    assert refusing["state"] == "refused" and refusing["run"] == other_grid.label
    assert "(74, 74, 36)" in refusing["error"] and "(64, 64, 36)" in refusing["error"]
    assert refusing["published"] == len(first)  # nothing of the refused run
    node_processes.assert_running("decoder")  # refused, not fatal
    _assert_run_decoded_from_tr_0(output, first)
    _assert_run_decoded_from_tr_0(output, second)
    assert not output.run(other_grid.label)
    status = output.status
    assert status["state"] == "streaming" and status["error"] is None
    assert status["runs"] == 3 and status["refused"] == len(other_grid)

    n_all = 2 * N_VOLUMES + len(other_grid)
    beat = wait_for_heartbeat(
        config.recorder.status_endpoint, lambda b: b["volumes"] == n_all, timeout=TIMEOUT
    )
    assert beat["unrecorded"] == 0  # raw volumes are never dropped
    assert "has another grid, 64x64x36" in session.recorder.log_text()
    with session.segments() as recording:  # one segment per grid change: 7 | 2 | 8
        parts = [values for values, _ in recording.volumes()]
        assert len(parts) == 3
        for values, series in zip(parts, (first, other_grid, second), strict=True):
            np.testing.assert_array_equal(values, series.flats)
        starts = [s["stream"]["run"] for s in recording.status() if s.get("event") == "run_start"]
        assert starts == [other_grid.label, second.label]
        refused = [s for s in recording.status() if s.get("state") == "refused"]
        assert refused and all(s["run"] == other_grid.label for s in refused)


def test_the_bridge_holds_a_series_until_a_late_decoder_is_on_it_and_it_gets_volume_1(
    siemens, siemens_bundle, node_config, node_processes, tmp_path
):
    """The scan starts while the decoder is not ready (it waits for its latents subscriber,
    this test, which comes late): the bridge holds the series' first volume until the
    decoder's heartbeat shows its inlet on the series' outlet, so the decoder's TR 0 is
    acquisition volume 1 (by CRC) and no TR is missed; the recorder, there from the start,
    records every volume once."""
    first, _ = siemens
    config = _config(node_config, siemens_bundle, subscribers=2)  # the recorder and this test
    session = _Session(node_processes, config, tmp_path)
    exported: dict[str, list[int]] = {}
    exporting = threading.Thread(
        target=lambda: exported.setdefault("indices", session.export(first)), daemon=True
    )
    exporting.start()
    try:
        session.bridge.wait_for_line(r"series 7: streaming", timeout=TIMEOUT)
        beat = wait_for_heartbeat(
            config.decoder.latents_endpoint,
            lambda b: len(list(session.watch.iterdir())) >= 5,
            timeout=TIMEOUT,
        )  # five volumes written while the decoder waits for its subscriber
        assert beat["state"] == "waiting_for_subscribers"
        output = DecoderOutput(config.decoder.latents_endpoint)  # now it gets ready
        try:
            output.wait_for(
                lambda: output.status.get("tr") == len(first) - 1, "every TR", node_processes
            )
        finally:
            output.close()
    finally:
        exporting.join(timeout=TIMEOUT)
    assert exported["indices"] == list(range(1, len(first) + 1))
    _assert_run_decoded_from_tr_0(output, first)
    assert output.status["missed"] == 0
    assert "series 7: its consumers are on the stream" in session.bridge.log_text()
    with session.recording() as recording:
        values, _ = recording.volumes()
        np.testing.assert_array_equal(values, first.flats)


def test_a_decoder_that_joins_late_starts_at_the_index_it_first_sees(
    siemens_long, siemens_bundle, node_config, node_processes, tmp_path
):
    """A bridge told to wait for the recorder only streams once the recorder is there; the
    decoder gets ready later (its latents subscriber, this test, comes late): its first TR
    is the acquisition index of the first volume it gets, every TR before it missed."""
    config = _config(node_config, siemens_bundle, subscribers=2)  # the recorder and this test
    session = _Session(node_processes, config, tmp_path, "--await-nodes", "recorder")
    wait_for_heartbeat(
        config.recorder.status_endpoint,
        lambda b: b["state"] == "waiting_for_stream",
        timeout=TIMEOUT,
    )
    stop, exported = threading.Event(), {}

    def export() -> None:
        exported["indices"] = session.export(siemens_long, stop=stop)

    exporting = threading.Thread(target=export, daemon=True)
    exporting.start()
    try:
        wait_for_heartbeat(
            config.recorder.status_endpoint, lambda b: b["volumes"] >= 5, timeout=TIMEOUT
        )  # volumes 0..4 went by: the decoder is not ready yet
        output = DecoderOutput(config.decoder.latents_endpoint)  # now it is
        try:
            output.wait_for(lambda: len(output.headers) >= 3, "its first TRs", node_processes)
            stop.set()  # the series ends a few volumes after the decoder joined
            exporting.join(timeout=TIMEOUT)
            n = max(exported["indices"])
            output.wait_for(lambda: output.status.get("tr") == n - 1, "the last TR", node_processes)
        finally:
            output.close()
    finally:
        stop.set()
        exporting.join(timeout=TIMEOUT)
    run = siemens_long
    headers = output.run(run.label)
    k = headers[0]["tr"]
    assert k >= 5
    assert headers[0]["missed_before"] == k  # volumes 0..k-1 went by: missed, not renumbered
    assert [h["tr"] for h in headers] == list(range(k, n))
    assert [h["missed_before"] for h in headers[1:]] == [0] * (n - k - 1)
    assert [h["volume_crc32"] for h in headers] == run.crcs[k:n]
    assert output.status["missed"] == k and output.status["runs"] == 1
    with session.recording() as recording:  # the recorder, there from the start, has all
        values, _ = recording.volumes()
        np.testing.assert_array_equal(values, run.flats[:n])
