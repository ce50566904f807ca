"""``rt-recon simulate participant``: presenter markers over real LSL in, XA DICOM out at TR pace,
read back by the bridge's readers, with the brain's response to the pictures the markers named."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pylsl
import pytest
import yaml

from rt_recon.acquire.bridge import BridgeOptions, ScannerBridge
from rt_recon.acquire.formats import read_file
from rt_recon.config import SessionConfig
from rt_recon.errors import StreamError
from rt_recon.protocol import RUN_END, RUN_START, Marker
from rt_recon.simulators.live_scan import (
    LiveScanOptions,
    LiveScanReport,
    _pull_until,
    _Run,
    participant_for,
    simulate_participant,
)
from rt_recon.transport.lsl import MarkerOutlet, VolumeInlet
from tests.conftest import SMALL_SIM, unique

TR_S = 0.25
SERIES = 7


def _config(**simulation) -> SessionConfig:
    sim = SMALL_SIM.model_copy(update={"tr_s": TR_S, **simulation})
    return SessionConfig.model_validate(
        {
            "simulation": sim.model_dump(mode="json"),
            "stream": {
                "markers_name": unique("markers"),
                "markers_source_id": unique("ms"),
                "resolve_timeout_s": 5.0,
            },
        }
    )


def _present(outlet: MarkerOutlet, t0: float, events: list[tuple[float, Marker]]) -> None:
    """Send each marker when its time comes, stamped with that time (as a presenter does)."""
    assert outlet.wait_for_consumers(5.0), "the participant did not open the marker stream"
    for offset, marker in events:
        while (wait := t0 + offset - pylsl.local_clock()) > 0:
            threading.Event().wait(wait)
        outlet.push(marker, t0 + offset)


def test_markers_in_dicom_out_with_the_response_to_the_pictures_shown(tmp_path):
    config = _config(snr=4.0, motion=0.0)
    options = LiveScanOptions(series=SERIES, n_trs=40, atomic=True)
    participant = participant_for(config, options)
    world = participant.brain.world
    ids = [int(i) for i in world.training_ids()[:2]]
    outlet = MarkerOutlet(config.stream.markers_name, config.stream.markers_source_id)
    t0 = pylsl.local_clock() + 1.5  # the participant resolves the markers meanwhile
    events = [
        (0.0, Marker(type=RUN_START, run="01")),
        (0.3, Marker(run="01", trial=0, onset=0.3, duration=2.0, stimulus_id=ids[0])),
        (2.4, Marker(run="01", trial=1, onset=2.4, duration=0.2, trial_type="blank")),
        (2.6, Marker(run="01", trial=2, onset=2.6, duration=2.0, stimulus_id=ids[1])),
        (6.5, Marker(type=RUN_END, run="01")),
    ]
    export = tmp_path / "export"
    export.mkdir()
    result: dict = {}

    def scan() -> None:
        try:
            result["report"] = simulate_participant(
                config, export, options, participant=participant, start_at=t0
            )
        except BaseException as exc:  # raised again below
            result["error"] = exc

    presenter = threading.Thread(target=_present, args=(outlet, t0, events), daemon=True)
    scanner = threading.Thread(target=scan, daemon=True)
    source_id = unique("bridge")
    options_bridge = BridgeOptions(
        name=source_id, source_id=source_id, clock="synced", consumer_wait=20.0, give_up=2.0
    )
    bridge, stop_bridge = ScannerBridge(export, options_bridge), threading.Event()
    bridging = threading.Thread(target=bridge.run, args=(stop_bridge,), daemon=True)
    bridging.start()
    assert bridge.watching.wait(10)
    stamps, streamed, indices = [], [], []
    presenter.start()
    scanner.start()
    with VolumeInlet.resolve(source_id, 10.0) as inlet:
        while (stamp := inlet.pull(timeout=0.5)) is not None or scanner.is_alive():
            if stamp is not None:
                stamps.append(stamp)
                streamed.append(inlet.values.copy())
                indices.append(inlet.index)
        run_id = inlet.meta.run
    stop_bridge.set()
    bridging.join(timeout=10)
    presenter.join(timeout=5)
    if "error" in result:
        raise result["error"]
    report = result["report"]

    # the run: stopped at run_end, one file per TR, paced by target times, no temporary files
    assert report.stopped_by == "run_end"
    assert 26 <= report.n_volumes <= 29  # run_end at 6.5 s: volume 26 or the next ones
    files = sorted(p.name for p in export.iterdir())
    assert files == [f"001_{SERIES:06d}_{k:06d}.dcm" for k in range(1, report.n_volumes + 1)]
    assert np.median(report.export.lateness()) < 0.05
    assert [p.stimulus_id for p in report.shown] == ids  # the blank trial shows no picture
    assert [p.onset_s for p in report.shown] == pytest.approx([0.3, 2.6], abs=1e-3)
    assert report.late_markers == 0

    # read back as the bridge reads them: one volume per file, the series, the TR, the grid
    volumes = [read_file(export / name)[0] for name in files]
    brain = participant.brain
    assert [v.index for v in volumes] == list(range(1, report.n_volumes + 1))
    assert {v.series_label for v in volumes} == {str(SERIES)}
    assert len({v.series for v in volumes}) == 1
    assert [v.tr_s for v in volumes] == pytest.approx([TR_S] * len(volumes))
    assert all(v.shape == brain.grid for v in volumes)
    np.testing.assert_allclose(volumes[0].affine, brain.affine, atol=1e-4)
    starts = np.array([v.scanner_time for v in volumes])
    np.testing.assert_allclose(np.diff(starts), TR_S, atol=1e-4)  # acquisition times, TR apart

    # reproducible: the same seed and the same pictures at the same times, the same volumes
    replay = participant_for(config, options, participant.brain)
    for picture in report.shown:
        replay.show(picture.stimulus_id, picture.onset_s, picture.duration_s)
    for t, v in enumerate(volumes):
        np.testing.assert_array_equal(v.data, replay.volume(t))

    # the bridge streamed every volume as written, stamped with its acquisition time
    assert run_id == str(SERIES)
    assert indices == list(range(report.n_volumes))
    for t, values in enumerate(streamed):
        np.testing.assert_array_equal(values, np.ravel(replay.volume(t), order="F"))
    np.testing.assert_allclose(stamps, t0 + TR_S * np.arange(len(stamps)), atol=0.005)

    # early visual cortex responds to the pictures the markers named, at their times: the
    # volumes differ from the same run without pictures by that response (and not another)
    blank = participant_for(config, options, brain)
    ev = brain.ev_index
    scale = np.ravel(brain.baseline, order="F")[ev] / 100.0  # percent signal change
    diff = np.stack(
        [np.ravel(v.data, order="F")[ev] - np.ravel(blank.volume(t), order="F")[ev]
         for t, v in enumerate(volumes)]
    ).astype(float)  # fmt: skip
    expected = np.stack([replay.signal(t)["ev"] for t in range(len(volumes))]) * scale
    swapped = participant_for(config, options, brain)
    swapped.show(ids[1], report.shown[0].onset_s, 2.0)
    swapped.show(ids[0], report.shown[1].onset_s, 2.0)
    wrong = np.stack([swapped.signal(t)["ev"] for t in range(len(volumes))]) * scale
    assert np.abs(expected).max() > 3.0  # intensity units: well above the int16 rounding
    assert np.abs(diff - expected).max() <= 1.0  # two roundings apart at most
    assert np.abs(diff - wrong).max() > 3.0


class _Waiting:
    """A marker inlet whose markers have all arrived already."""

    def __init__(self, markers: list[tuple[Marker, float]]):
        self.markers = list(markers)

    def pull(self, timeout: float) -> tuple[Marker, float] | None:
        return self.markers.pop(0) if self.markers else None


def test_a_participant_behind_its_schedule_shows_the_markers_already_there_first():
    """A busy machine held the participant past the time volume 1 was due: the markers that
    arrived meanwhile are shown before it is written (volume t sees every picture shown
    before it), not once the run has caught up (a rehearsal's volumes then depended on the
    machine's load; found by an end-to-end visit test, in git history at 4d198ee)."""
    config = _config()
    participant = participant_for(config, LiveScanOptions(n_trs=8))
    ids = [int(i) for i in participant.brain.world.training_ids()[:2]]
    t0 = pylsl.local_clock() - 5.0  # volume 1 was due seconds ago
    report = LiveScanReport(t0=t0, tr_s=TR_S, series=1)
    run = _Run(participant, report)
    run.written_through = 0
    inlet = _Waiting(
        [(Marker(run="01", trial=k, onset=0.3 + k, duration=0.5, stimulus_id=i), t0 + 0.3 + k)
         for k, i in enumerate(ids)]
    )  # fmt: skip
    _pull_until(inlet, run, t0 + 2 * TR_S, threading.Event())
    assert [p.stimulus_id for p in report.shown] == ids
    assert [p.onset_s for p in report.shown] == pytest.approx([0.3, 1.3])
    assert report.late_markers == 0  # both stamped after volume 0, the one written
    assert inlet.markers == []


def test_an_imagery_run_imagines_the_cued_picture_and_ignores_the_cue():
    """The presenter's imagery run (docs/operators.md): the ``cue`` marker carries no
    picture, the ``imagery`` marker the cued one, which the participant imagines."""
    config = _config(participant="realistic")
    participant = participant_for(config, LiveScanOptions(n_trs=8))
    sid = int(participant.brain.world.training_ids()[0])
    t0 = pylsl.local_clock()
    report = LiveScanReport(t0=t0, tr_s=TR_S, series=1)
    run = _Run(participant, report)
    run.on_marker(Marker(run="01", trial=0, onset=0.2, duration=1.0, trial_type="cue",
                         caption="a red circle"), t0 + 0.2)  # fmt: skip
    run.on_marker(Marker(run="01", trial=1, onset=1.2, duration=2.0, trial_type="imagery",
                         stimulus_id=sid), t0 + 1.2)  # fmt: skip
    assert [(p.stimulus_id, p.imagined) for p in report.shown] == [(sid, True)]
    assert report.shown[0].onset_s == pytest.approx(1.2)


def test_without_a_presenter_it_says_what_to_start(tmp_path):
    config = _config()
    options = LiveScanOptions(n_trs=2)
    config = config.with_overrides({"stream.resolve_timeout_s": 0.5})
    with pytest.raises(StreamError, match="rt-recon present"):
        simulate_participant(config, tmp_path / "export", options)
    assert not any((tmp_path / "export").iterdir())


def test_the_command_writes_a_resting_run_without_a_presenter(tmp_path):
    config = _config().model_dump(mode="json")
    path = tmp_path / "rehearsal.yaml"
    path.write_text(
        yaml.safe_dump({"simulation": config["simulation"], "stream": config["stream"]})
    )
    export = tmp_path / "export"
    args = ["--export", str(export), "--config", str(path), "--series", "4", "--trs", "3"]
    args += ["--tr", "0.1", "--start-delay", "0", "--no-markers"]
    done = subprocess.run(
        [sys.executable, "-m", "rt_recon", "simulate", "participant", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "series 4: wrote 3 volumes" in done.stdout
    names = sorted(p.name for p in export.iterdir())
    assert names == [f"001_000004_00000{k}.dcm" for k in (1, 2, 3)]
    assert [read_file(export / n)[0].index for n in names] == [1, 2, 3]
