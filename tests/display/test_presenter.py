"""The presenter's side of a run without a browser: what each page message turns into on the
marker stream (rt_recon.display.presenter), the scanner's start read from a real LSL volume
stream (rt_recon.display.trigger), and both through the console's own socket."""

from __future__ import annotations

import http.client
import json
import threading
import time

import numpy as np
import pylsl
import pytest
import websockets.sync.client

from rt_recon.display.design import DesignSpec, build_design, read_stimulus_set
from rt_recon.display.messages import PresentDesign
from rt_recon.display.presenter import Presenter
from rt_recon.display.server import run_console
from rt_recon.display.trigger import wait_for_first_volume
from rt_recon.errors import ProtocolError
from rt_recon.protocol import Marker, VolumeStreamMeta, decode_marker, encode_marker
from rt_recon.transport.lsl import VolumeOutlet
from tests.conftest import unique
from tests.display._helpers import console_config
from tests.display._stimuli import write_stimulus_set


class Sink:
    """Markers as they would go out: through the wire encoding, with their stamps."""

    def __init__(self) -> None:
        self.sent: list[tuple[Marker, float]] = []

    def push(self, event: Marker, timestamp: float) -> None:
        self.sent.append((decode_marker(encode_marker(event)), timestamp))


@pytest.fixture
def presenter(tmp_path):
    stimuli = read_stimulus_set(write_stimulus_set(tmp_path / "stim", [4, 9]))
    design = build_design(stimuli, DesignSpec(duration_s=1.0, isi_s=0.5, n_blank=1, n_catch=1))
    return Presenter(design, stimuli, Sink(), run="03", trigger_key="t", response_keys=("1",))


def test_page_reports_become_markers_stamped_with_their_times(presenter):
    trials = presenter.design.trials
    sink = presenter.markers
    assert presenter.handle({"type": "ping", "id": 7})["id"] == 7
    presenter.handle({"type": "response", "key": "1", "t": 99.0})  # before the start: ignored
    presenter.handle({"type": "start", "t": 100.0})
    presenter.handle({"type": "start", "t": 101.0})  # a second trigger: ignored
    for trial in trials:
        presenter.handle({"type": "onset", "trial": trial.trial, "t": 100.0 + trial.onset + 0.01})
    catch = next(t for t in trials if t.trial_type == "catch")
    pressed = 100.0 + catch.onset + 0.01 + 0.42
    presenter.handle({"type": "response", "key": "1", "t": pressed})
    presenter.handle({"type": "response", "key": "x", "t": pressed})  # not a response key
    presenter.handle({"type": "end", "t": 100.0 + presenter.design.total_s})

    kinds = [m.type for m, _ in sink.sent]
    assert kinds == ["run_start", *["event"] * len(trials), "response", "run_end"]
    assert sink.sent[0] == (Marker(type="run_start", run="03"), 100.0)
    for (marker, stamp), trial in zip(sink.sent[1:-2], trials, strict=True):
        assert stamp == pytest.approx(100.0 + trial.onset + 0.01)
        assert marker.onset == pytest.approx(trial.onset + 0.01)
        assert (marker.trial, marker.stimulus_id, marker.trial_type, marker.caption) == (
            trial.trial, trial.stimulus_id, trial.trial_type, trial.caption,
        )  # fmt: skip
    response, stamp = sink.sent[-2]
    assert stamp == pressed
    assert (response.trial, response.key) == (catch.trial, "1")
    assert response.response_time == pytest.approx(0.42)


def test_malformed_page_messages_are_refused(presenter):
    with pytest.raises(ProtocolError, match="no such trial, or the run has not begun"):
        presenter.handle({"type": "onset", "trial": 0, "t": 1.0})
    presenter.handle({"type": "start", "t": 1.0})
    with pytest.raises(ProtocolError, match="expected a finite number in 't', found 'soon'"):
        presenter.handle({"type": "onset", "trial": 0, "t": "soon"})
    with pytest.raises(ProtocolError, match="unknown present message type 'draw'"):
        presenter.handle({"type": "draw"})
    assert [m.type for m, _ in presenter.markers.sent] == ["run_start"]


def test_the_start_on_the_scanner_is_its_first_volume_less_the_volumes_missed():
    meta = VolumeStreamMeta(shape=(3, 3, 2), affine=np.eye(4), tr_s=1.5, run="05")
    source_id = unique("vol_src")
    stop = threading.Event()
    result = {}
    waiter = threading.Thread(
        target=lambda: result.update(start=wait_for_first_volume(source_id, stop, retry_s=1.0))
    )
    waiter.start()
    with VolumeOutlet(meta, unique("vol"), source_id) as outlet:
        assert outlet.wait_for_consumers(10.0)
        stamp = pylsl.local_clock()
        outlet.push(np.zeros(meta.n_channels, dtype=np.float32), stamp, index=2)
        waiter.join(timeout=10.0)
    start = result["start"]
    assert (start.index, start.tr_s, start.run) == (2, 1.5, "05")
    # the inlet's clock correction may move a stamp by microseconds on one machine
    assert start.stamp == pytest.approx(stamp, abs=1e-3)
    assert start.t == pytest.approx(start.stamp - 2 * 1.5)


def test_a_presenter_started_on_the_last_runs_stream_starts_on_the_next_run():
    """Between two runs the bridge keeps the ended run's stream: the presenter of the next
    run finds that one first, sees it end, and starts on the next series' first volume."""
    source_id = unique("vol_src")
    old = VolumeStreamMeta(shape=(3, 3, 2), affine=np.eye(4), tr_s=1.5, run="05")
    new = VolumeStreamMeta(shape=(3, 3, 2), affine=np.eye(4), tr_s=1.5, run="06")
    stop = threading.Event()
    result = {}
    waiter = threading.Thread(
        target=lambda: result.update(start=wait_for_first_volume(source_id, stop, retry_s=2.0))
    )
    with VolumeOutlet(old, unique("vol"), source_id) as previous:
        waiter.start()
        assert previous.wait_for_consumers(10.0)
        with VolumeOutlet(new, unique("vol"), source_id) as following:
            previous.end_run()  # the new series began: the old stream ends
            assert following.wait_for_consumers(10.0)
            stamp = pylsl.local_clock()
            following.push(np.zeros(new.n_channels, dtype=np.float32), stamp, index=0)
            waiter.join(timeout=10.0)
    stop.set()
    start = result["start"]
    assert (start.run, start.index) == ("06", 0)
    assert start.t == pytest.approx(stamp, abs=1e-3)


def test_waiting_for_the_scanner_ends_when_stopped():
    stop = threading.Event()
    stop.set()
    assert wait_for_first_volume(unique("nothing"), stop, retry_s=0.2) is None


def test_a_console_serving_a_run_set_to_the_scanner_starts_it_at_the_first_volume(tmp_path):
    """The console with a presenter, in process: the page's socket gets the design, clock
    pongs, and the start once the scanner's first volume comes; a second page is told busy."""
    stimuli = read_stimulus_set(write_stimulus_set(tmp_path / "stim", [4, 9]))
    design = build_design(stimuli, DesignSpec(duration_s=1.0, isi_s=0.5))
    config = console_config(tmp_path)
    source_id = unique("vol_src")
    config = config.model_copy(
        update={"stream": config.stream.model_copy(update={"source_id": source_id})}
    )
    presenter = Presenter(
        design, stimuli, Sink(), run="04", start_on="volume", volume_source_id=source_id,
        resolve_timeout_s=0.5,
    )  # fmt: skip
    stop = threading.Event()
    server = threading.Thread(target=run_console, args=(config, stop, presenter))
    server.start()
    url = f"ws://127.0.0.1:{config.console.port}/ws/present"
    try:
        with _connect(url) as page:
            message = json.loads(page.recv(timeout=5))
            assert PresentDesign.model_validate(message).start_on == "volume"
            assert [t["stimulus_id"] for t in message["trials"]] == [
                t.stimulus_id for t in design.trials
            ]
            before = pylsl.local_clock()
            page.send(json.dumps({"type": "ping", "id": 3}))
            pong = json.loads(page.recv(timeout=5))
            assert pong["id"] == 3 and before <= pong["t"] <= pylsl.local_clock()
            with _connect(url) as other:
                assert json.loads(other.recv(timeout=5)) == {"type": "busy"}
            status, picture = _get(config.console.port, "/present/9")
            assert status == 200 and picture == (tmp_path / "stim" / "pics" / "9.png").read_bytes()
            assert _get(config.console.port, "/present/5")[0] == 404

            page.send(json.dumps({"type": "ready"}))
            meta = VolumeStreamMeta(shape=(2, 2, 2), affine=np.eye(4), tr_s=2.0, run="04")
            with VolumeOutlet(meta, unique("vol"), source_id) as outlet:
                assert outlet.wait_for_consumers(10.0)
                stamp = pylsl.local_clock()
                outlet.push(np.ones(meta.n_channels, dtype=np.float32), stamp, index=0)
                start = json.loads(page.recv(timeout=10))
    finally:
        stop.set()
        server.join(timeout=15)
    assert start["type"] == "start" and start["t"] == pytest.approx(stamp, abs=1e-3)
    assert presenter.markers.sent == [(Marker(type="run_start", run="04", tr=2.0), start["t"])]


def _connect(url: str, timeout_s: float = 15.0):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return websockets.sync.client.connect(url, open_timeout=2)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()
