"""Both pages in headless Chromium, fed by real ZeroMQ publishers and real nodes.

The console runs as ``python -m rt_recon console``; pictures, heartbeats and
markers come from real ZeroMQ / LSL publishers in the test or from real
decoder and renderer processes. Delays are measured and reported (run with
``-s`` to see them), never asserted.

Every page reads its messages through ``static/schema.js``: each test ends by
checking that the page loaded ``schema.json`` and read nothing it does not
declare (:func:`_assert_schema_held`); a test with a doctored schema proves the
check sees a script read a key, or a value, the schema does not allow.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pylsl
import pytest

from rt_recon.acquire.nifti import load_nifti_run
from rt_recon.display.messages import page_schema
from rt_recon.protocol import TOPIC_FRAME, TOPIC_STATUS, TrialRef, VolumeStreamMeta
from rt_recon.record.recording import RecordingReader
from rt_recon.transport.lsl import MarkerOutlet, VolumeOutlet
from rt_recon.transport.zmq import Publisher
from tests.conftest import free_port, unique
from tests.display._helpers import (
    ConsoleProcess,
    console_config,
    frame_header,
    frame_message,
    pattern,
    status_header,
)
from tests.nodes._stream_source import volume

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TOKEN = "Zq0-tLr4_w8YcE2nPk7sVb1u"


def _wait_js(page, expression: str, timeout_ms: int = 15_000) -> None:
    """Poll a JavaScript expression until truthy (``wait_for_function`` needs eval, which the
    pages' Content-Security-Policy forbids; ``evaluate`` goes through the debugger)."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_ms} ms for: {expression}")
        time.sleep(0.01)


def _clock_offset_ms(page) -> float:
    """Browser wall clock minus this process's, from the shortest of a few round trips."""
    samples = []
    for _ in range(7):
        before = time.time() * 1000
        browser_now = page.evaluate("performance.timeOrigin + performance.now()")
        after = time.time() * 1000
        samples.append((after - before, browser_now - (before + after) / 2))
    return min(samples)[1]


def _canvas_rgb(page, selector: str) -> np.ndarray:
    width, height, data = page.evaluate(
        """(selector) => {
            const c = document.querySelector(selector);
            const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            return [c.width, c.height, Array.from(d)];
        }""",
        selector,
    )
    return np.array(data, dtype=np.uint8).reshape(height, width, 4)[..., :3]


def _summary(values: list[float]) -> str:
    arr = np.asarray(values)
    return (
        f"median {np.median(arr):.1f} ms, p95 {np.percentile(arr, 95):.1f} ms, "
        f"max {arr.max():.1f} ms (n={arr.size})"
    )


def _open(context, url: str, errors: list[str]):
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    _wait_js(page, "document.body.dataset.socket === 'open'", timeout_ms=15_000)
    return page


def _level(page, node: str) -> str | None:
    return page.get_attribute(f'#nodes li[data-node="{node}"]', "data-level")


def _schema_report(page) -> dict:
    return page.evaluate("window.rtSchema")


def _assert_schema_held(page) -> None:
    """The page loaded schema.json and read no key, nor a value, the schema does not allow."""
    report = _schema_report(page)
    assert report["loaded"], f"the page did not load schema.json: {report['errors']}"
    assert report["errors"] == [], "the page read messages outside their schema"


def test_participant_page_waits_shows_each_new_picture_and_waits_again_when_the_renderer_goes(
    context, tmp_path, record_property
):
    config = console_config(tmp_path, crossfade_ms=0)  # each picture drawn as it comes
    errors: list[str] = []
    with (
        ConsoleProcess(config, tmp_path / "session.json") as console,
        Publisher(config.renderer.frames_endpoint) as renderer,
    ):
        renderer.wait_for_subscribers(1, TOPIC_FRAME, timeout=30)
        renderer.wait_for_subscribers(1, TOPIC_STATUS, timeout=30)
        page = _open(context, console.url + "/participant", errors)
        assert page.evaluate("document.body.dataset.state") == "waiting"
        assert page.locator("#fixation").is_visible()
        assert not page.locator("#picture").is_visible()

        offset = _clock_offset_ms(page)
        delays: dict[str, list[float]] = {"receivedAt": [], "drawnAt": [], "nextFrameAt": []}
        n_pictures = 30
        for i in range(n_pictures):
            image = pattern(i)
            renderer.send_frames(status_header("renderer", "running", i, rendered=i).encode())
            sent = time.time() * 1000
            renderer.send_frames(frame_message(frame_header(i, pylsl.local_clock()), image))
            _wait_js(
                page,
                f"window.rtParticipant.shown?.seq === {i} "
                "&& window.rtParticipant.shown.nextFrameAt !== null",
                timeout_ms=10_000,
            )
            shown = page.evaluate("window.rtParticipant.shown")
            for key, values in delays.items():
                values.append(shown[key] - offset - sent)
            np.testing.assert_array_equal(_canvas_rgb(page, "#picture"), image)
            time.sleep(0.1)  # a 10 Hz stream
        assert page.evaluate("document.body.dataset.state") == "showing"
        assert page.locator("#picture").is_visible()
        assert not page.locator("#fixation").is_visible()
        assert page.evaluate("window.rtParticipant.seqs") == list(range(n_pictures))

        # the renderer falls silent: after three heartbeat periods the display goes quiet
        silent_since = time.monotonic()
        _wait_js(page, "document.body.dataset.state === 'waiting'", timeout_ms=15_000)
        back_to_waiting = time.monotonic() - silent_since
        assert page.locator("#fixation").is_visible()
        assert page.evaluate("document.body.dataset.reason") == "away"  # silent, socket up
        assert page.inner_text("#notice") == ""

        # then its socket closes (the process is gone): the page says it is reconnecting
        closed_at = time.monotonic()
        renderer.close()
        _wait_js(page, "document.body.dataset.reason === 'reconnecting'", timeout_ms=15_000)
        to_reconnecting = time.monotonic() - closed_at
        assert page.evaluate("document.body.dataset.state") == "waiting"
        assert page.inner_text("#notice") == "reconnecting to the renderer…"
        assert page.locator("#fixation").is_visible()
        _assert_schema_held(page)
    assert not errors

    report = {
        "publish_to_page_message_ms": _summary(delays["receivedAt"]),
        "publish_to_drawn_ms": _summary(delays["drawnAt"]),
        "publish_to_next_animation_frame_ms": _summary(delays["nextFrameAt"]),
        "renderer_silent_to_waiting_s": round(back_to_waiting, 2),
        "renderer_socket_closed_to_reconnecting_s": round(to_reconnecting, 2),
    }
    for key, value in report.items():
        record_property(key, value)
    print("\nparticipant display, 64x64 pictures at 10 Hz:", json.dumps(report, indent=2))


def test_participant_page_never_shows_an_older_picture_after_a_newer_one(
    context, tmp_path, record_property
):
    config = console_config(tmp_path)
    errors: list[str] = []
    with (
        ConsoleProcess(config, tmp_path / "session.json") as console,
        Publisher(config.renderer.frames_endpoint) as renderer,
    ):
        renderer.wait_for_subscribers(1, TOPIC_FRAME, timeout=30)
        page = _open(context, console.url + "/participant", errors)
        n_pictures, size = 40, 512
        pictures = [pattern(i, size) for i in range(n_pictures)]
        for i, image in enumerate(pictures):  # a burst, far faster than a page can draw
            renderer.send_frames(frame_message(frame_header(i, pylsl.local_clock()), image))
        last = n_pictures - 1
        _wait_js(  # the last picture wholly up: its crossfade (console.crossfade_ms) ended
            page,
            f"window.rtParticipant.shown?.seq === {last} "
            "&& window.rtParticipant.shown.settledAt !== null",
            timeout_ms=20_000,
        )
        seqs = page.evaluate("window.rtParticipant.seqs")
        rng = np.random.default_rng(0)
        ys, xs = rng.integers(0, size, 64), rng.integers(0, size, 64)
        sampled = page.evaluate(
            """([ys, xs]) => {
                const c = document.getElementById("picture");
                const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
                return ys.map((y, k) => {
                    const at = 4 * (y * c.width + xs[k]);
                    return Array.from(d.slice(at, at + 3));
                });
            }""",
            [ys.tolist(), xs.tolist()],
        )
        _assert_schema_held(page)
    assert not errors
    assert seqs == sorted(set(seqs)), f"pictures drawn out of order or twice: {seqs}"
    assert seqs[-1] == last
    np.testing.assert_array_equal(np.array(sampled), pictures[last][ys, xs])
    record_property("burst_pictures_drawn", f"{len(seqs)} of {n_pictures}")
    print(f"\nburst of {n_pictures} {size}x{size} pictures: the page drew {len(seqs)}: {seqs}")


def test_console_shows_latency_budgets_lateness_motion_and_the_true_stimulus_beside_each_picture(
    context, tmp_path, small_dataset
):
    stimuli = [i for i in sorted(small_dataset.stimuli()) if i >= 0][:3]
    config = console_config(tmp_path, dataset=str(small_dataset.root))
    errors: list[str] = []
    with (
        ConsoleProcess(config, tmp_path / "session.json") as console,
        Publisher(config.renderer.frames_endpoint) as renderer,
        Publisher(config.decoder.latents_endpoint) as decoder,
    ):
        markers = MarkerOutlet(config.stream.markers_name, config.stream.markers_source_id)
        assert markers.wait_for_consumers(30), "the console did not open the marker stream"
        renderer.wait_for_subscribers(1, TOPIC_FRAME, timeout=30)
        decoder.wait_for_subscribers(1, TOPIC_STATUS, timeout=30)
        page = _open(context, console.url + "/console", errors)

        tr_s, speed, lag = 1.5, 4.0, 3
        interval = tr_s / speed
        t0 = pylsl.local_clock()
        markers.push({"type": "run_start", "run": "01", "tr": tr_s, "speed": speed}, t0)
        onsets = [9.0, 15.0, 21.0]  # TRs 6, 10, 14
        for k, (onset, stimulus) in enumerate(zip(onsets, stimuli, strict=True)):
            markers.push(
                {"type": "event", "run": "01", "trial": k, "onset": onset, "duration": 3.0,
                 "stimulus_id": stimulus, "caption": f"caption {k}"},
                t0 + onset / speed,
            )  # fmt: skip
        time.sleep(0.5)  # markers travel on their own stream; let them land first
        last_tr = 13
        for tr in range(last_tr + 1):
            slow = {"rendered": 420.0, "published": 421.0} if tr == 12 else {}
            fd = 0.9 if tr == 7 else 0.1 + 0.01 * tr
            decoder.send_frames(status_header("decoder", "running", tr, tr=tr, missed=0).encode())
            renderer.send_frames(status_header("renderer", "running", tr, rendered=tr).encode())
            k = 0 if tr <= 9 else 1  # the trial the decoder estimates (trial mode): onsets 6, 10
            onset = (6, 10)[k]
            trial = TrialRef(index=k, stimulus_id=stimuli[k], onset_tr=onset,
                             complete=tr >= onset + lag)  # fmt: skip
            header = frame_header(tr, t0 + tr * interval, stage_ms=slow, fd=fd, lag_trs=lag,
                                  mode="trial", trial=trial if tr >= 3 else None)  # fmt: skip
            renderer.send_frames(frame_message(header, pattern(tr)))
            time.sleep(0.05)
        _wait_js(page, f"document.body.dataset.frameTr === '{last_tr}'", timeout_ms=15_000)
        _wait_js(page, f"document.body.dataset.tr === '{last_tr}'", timeout_ms=15_000)

        assert _level(page, "decoder") == "ok" and _level(page, "renderer") == "ok"
        assert page.inner_text('#counts [data-count="late_trs"]') == "1"  # 421 ms > 375 ms TR
        assert page.inner_text('#counts [data-count="interval"]') == "375 ms"
        warnings = page.locator("#warnings li").all_inner_texts()
        (budget,) = [w for w in warnings if w.startswith("over budget")]  # one line, all stages
        assert budget.startswith("over budget (last 10 TRs): render 1 (worst ")
        assert "250 ms at TR 12)" in budget and "end_to_end 1 (worst 421.0 ms > 300 ms" in budget
        assert any(w.startswith("late: 1 of the last 10") for w in warnings)
        assert any(w.startswith("motion: framewise displacement 0.90 mm at TR 7") for w in warnings)
        assert page.get_attribute('#latency-table tr[data-stage="render"]', "class") == ""
        assert "latest FD 0.23 mm at TR 13" in page.inner_text("#motion-note")
        np.testing.assert_array_equal(_canvas_rgb(page, "#recon"), pattern(last_tr))

        # TR 13 shows TR 10, the onset of the second picture: the scored TR of that trial
        truth = page.locator("#truth")
        assert truth.get_attribute("data-stimulus") == str(stimuli[1])
        _wait_js(page, "document.getElementById('truth').naturalWidth > 0")
        caption = page.inner_text("#truth-caption")
        assert "scored TR" in caption
        assert f"decoder: trial 1, #{stimuli[1]} (onset TR 10, complete)" in caption
        strip = {
            int(f.get_attribute("data-tr")): f.locator("img").get_attribute("data-stimulus")
            if f.locator("img").count() else None
            for f in page.locator("#strip figure").all()
        }  # fmt: skip
        assert strip[9] == str(stimuli[0]) and strip[10] == str(stimuli[0])
        assert strip[11] is None and strip[12] is None  # blank between pictures
        state = json.loads(console.get("/api/state")[2])
        assert [p["truth"]["stimulus_id"] if p["truth"] else None for p in state["pairs"]][-5:] == [
            stimuli[0], stimuli[0], None, None, stimuli[1]
        ]  # fmt: skip
        assert state["counts"]["pairing_mismatches"] == 0  # the decoder's trials agree
        _assert_schema_held(page)
    assert not errors


def test_console_shows_node_health_change_when_real_nodes_stop(
    context, node_config, tmp_path, record_property
):
    config = node_config.with_overrides(
        {
            "decoder.wait_for_subscribers": 0,
            "console.port": free_port(),
            "recorder.status_endpoint": f"tcp://127.0.0.1:{free_port()}",
        }
    )
    config_path = tmp_path / "session.json"
    errors: list[str] = []
    with ConsoleProcess(config, config_path) as console:
        page = _open(context, console.url + "/console", errors)
        assert _level(page, "decoder") == "unknown" and _level(page, "renderer") == "unknown"
        nodes = {
            name: subprocess.Popen(
                [sys.executable, "-m", "rt_recon", command, "--config", str(config_path)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name, command in (("renderer", "render"), ("decoder", "decode"))
        }
        try:
            # the decoder waits for a volume stream that never comes; the renderer for latents
            page.wait_for_selector(
                '#nodes li[data-node="decoder"][data-level="waiting"]', timeout=60_000
            )
            page.wait_for_selector(
                '#nodes li[data-node="renderer"][data-level="ok"]', timeout=60_000
            )
            assert "waiting for stream" in page.inner_text('#nodes li[data-node="decoder"]')

            nodes["renderer"].send_signal(signal.SIGTERM)  # a clean stop says so
            assert nodes["renderer"].wait(timeout=20) == 0
            page.wait_for_selector(
                '#nodes li[data-node="renderer"][data-level="stopped"]', timeout=10_000
            )
            assert "renderer stopped" in page.locator("#warnings li").all_inner_texts()

            nodes["decoder"].kill()  # a crash says nothing, but its socket closes with it
            nodes["decoder"].wait(timeout=20)
            killed = time.monotonic()
            page.wait_for_selector(
                '#nodes li[data-node="decoder"][data-level="reconnecting"]', timeout=15_000
            )
            seen_reconnecting = time.monotonic() - killed
            assert page.inner_text('#nodes li[data-node="decoder"] .state') == "reconnecting"
            assert any(
                w.startswith("decoder reconnecting: its socket closed")
                for w in page.locator("#warnings li").all_inner_texts()
            )
            _assert_schema_held(page)  # real nodes' heartbeats, counters and all
        finally:
            for process in nodes.values():
                if process.poll() is None:
                    process.kill()
                    process.wait()
    assert not errors
    record_property("killed_node_shown_reconnecting_after_s", round(seen_reconnecting, 2))
    print(
        f"\nconsole showed the killed decoder reconnecting {seen_reconnecting:.2f} s after SIGKILL"
    )


def _warning(page, kind: str) -> str | None:
    texts = page.locator(f'#warnings li[data-kind="{kind}"]').all_inner_texts()
    return texts[0] if texts else None


def _wait_text(page, selector: str, expected: str, timeout_s: float = 20.0) -> None:
    """Until the element's text is ``expected`` (the page redraws four times a second)."""
    deadline = time.monotonic() + timeout_s
    found = None
    while time.monotonic() < deadline:
        texts = page.locator(selector).all_inner_texts()
        found = texts[0] if texts else None
        if found == expected:
            return
        time.sleep(0.05)
    raise AssertionError(f"{selector}: waited for {expected!r}, found {found!r}")


def test_console_follows_a_new_series_a_stalled_stream_and_keeps_its_pictures_over_a_reload(
    context, node_config, small_dataset, node_processes, tmp_path
):
    """Real decoder and renderer processes on a volume stream this test pushes: series 1, then
    series 2 on a new outlet (the new-series banner, the header, the bridge card), then no
    more volumes (the decoder amber, stalled); a reload brings the strip's pictures back."""
    config = node_config.with_overrides(
        {
            "console.port": free_port(),
            "recorder.status_endpoint": f"tcp://127.0.0.1:{free_port()}",
            "decoder.mode": "continuous",  # no marker stream: its card stays amber
            "stream.buffer_trs": 16,
            "stream.resolve_timeout_s": 120,
        }
    )
    run = load_nifti_run(small_dataset.runs("test")[0].bold)
    speed = 4.0  # a volume every 0.25 s; stalled after max(3 TRs on the wire, 5 s) = 5 s

    def series(number: int, n: int) -> None:
        """Series ``number`` on an outlet of its own: ``n`` volumes from index 0, then its end."""
        meta = VolumeStreamMeta(
            shape=run.shape, affine=run.affine, tr_s=run.tr_s, session="browser",
            run=str(number), series=str(number), series_description=f"func_run{number}",
            speed=speed,
        )  # fmt: skip
        outlet = VolumeOutlet(meta, unique("vol"), config.stream.source_id, buffer_trs=16)
        outlets.append(outlet)
        assert outlet.wait_for_consumers(90), "the decoder did not open the volume stream"
        t0 = pylsl.local_clock()
        for i in range(n):
            while (wait := t0 + i * meta.sample_interval - pylsl.local_clock()) > 0:
                time.sleep(min(wait, 0.01))
            outlet.push(volume(run, i), t0 + i * meta.sample_interval, i)

    outlets: list[VolumeOutlet] = []
    errors: list[str] = []
    node_processes.node("renderer", config)  # they load while the console starts
    node_processes.node("decoder", config)
    with ConsoleProcess(config, tmp_path / "console.json") as console:
        page = _open(context, console.url + "/console", errors)
        try:
            series(1, 12)
            _wait_js(page, "document.body.dataset.frameTr === '11'", timeout_ms=60_000)
            _wait_text(page, "#run", "run 1 · series 1 'func_run1' · 1st run")
            assert _warning(page, "new_series") is None  # the first run is no news
            outlets[0].end_run()  # as the bridge does: the run's end, its outlet gone a second
            time.sleep(1.0)  # later (the next series' outlet is up meanwhile at a scanner)
            outlets[0].close()

            series(2, 10)  # TRs from 0 again
            _wait_text(
                page,
                '#warnings li[data-kind="new_series"]',
                "new series 2 (func_run2): run 2 of the session began; TRs count from 0 again",
            )
            _wait_text(page, "#run", "run 2 · series 2 'func_run2' · 2nd run")
            bridge = page.inner_text('#sources li[data-node="bridge"]')
            assert "series 2 'func_run2'" in bridge and "TR 1.0 s at speed 4" in bridge
            assert page.get_attribute('#sources li[data-node="bridge"]', "data-level") == "ok"
            assert page.get_attribute('#sources li[data-node="markers"]', "data-level") == (
                "waiting"
            )
            _wait_js(page, "document.body.dataset.frameTr === '9'", timeout_ms=30_000)
            assert "last volume" in page.inner_text('#nodes li[data-node="decoder"]')

            # no more volumes, the outlet still up: the decoder still says streaming
            page.wait_for_selector(
                '#nodes li[data-node="decoder"][data-level="waiting"]', timeout=20_000
            )
            assert page.inner_text('#nodes li[data-node="decoder"] .state') == "streaming"
            stalled = _warning(page, "stalled")
            assert stalled.startswith("decoder: no volume for ") and "is the scanner still" in (
                stalled
            )
            state = json.loads(console.get("/api/state")[2])
            # the last eight pictures (fewer where the renderer skipped latents to keep up)
            last_pictures = [p["tr"] for p in state["pairs"]][-8:]
            assert len(last_pictures) >= 2  # the last TR of each run at least
            _assert_schema_held(page)

            page.reload()  # the strip is refilled from the server's history
            _wait_js(page, "document.body.dataset.socket === 'open'")
            _wait_js(
                page, f"document.querySelectorAll('#strip figure').length === {len(last_pictures)}"
            )
            strip = [int(f.get_attribute("data-tr")) for f in page.locator("#strip figure").all()]
            assert strip == last_pictures[::-1]  # newest first
            assert page.evaluate("document.body.dataset.frameTr") == str(last_pictures[-1])
            _wait_js(page, "document.querySelectorAll('#latency-table tbody tr').length > 0")
            assert page.get_attribute('#nodes li[data-node="decoder"]', "data-level") == "waiting"
            _assert_schema_held(page)
        finally:
            for outlet in outlets:
                outlet.close()
    assert not errors


def test_console_stops_and_starts_a_real_recorder(context, node_config, small_dataset, tmp_path):
    config = node_config.with_overrides(
        {
            "console.port": free_port(),
            "recorder.status_endpoint": f"tcp://127.0.0.1:{free_port()}",
            "stream.resolve_timeout_s": 60,
        }
    )
    config_path = tmp_path / "session.json"
    bold = small_dataset.runs("test")[0].bold
    errors: list[str] = []
    with ConsoleProcess(config, config_path) as console:
        nodes = [
            subprocess.Popen(
                [sys.executable, "-m", "rt_recon", *command, "--config", str(config_path)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for command in (
                ["record"],
                ["simulate", "replay", str(bold), "--loop",
                 "--await-ready", config.recorder.status_endpoint],
            )
        ]  # fmt: skip
        try:
            page = _open(context, console.url + "/console", errors)
            page.on("dialog", lambda dialog: dialog.accept())  # "Stop recording?" -> OK
            page.wait_for_selector('#recording[data-recording="on"]', timeout=90_000)
            assert page.inner_text("#record") == "Stop recording"
            page.click("#record")
            page.wait_for_selector('#recording[data-recording="off"]', timeout=15_000)
            assert page.inner_text("#record") == "Start recording"
            assert page.inner_text("#record-state") == "stopped: nothing is being recorded"
            _wait_js(
                page,
                "[...document.querySelectorAll('#warnings li')].some((li) => li.textContent"
                '.startsWith("recorder paused: recording stopped at the operator\'s request"))',
            )
            page.click("#record")
            page.wait_for_selector('#recording[data-recording="on"]', timeout=15_000)
            assert page.locator("#record-error").is_hidden()
            _assert_schema_held(page)
            nodes[0].send_signal(signal.SIGTERM)
            assert nodes[0].wait(timeout=30) == 0
        finally:
            for process in nodes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    assert not errors
    with RecordingReader(config.recording_path) as reading:
        events = [b for b in reading.status() if b.get("node") == "recorder"]
        n_volumes = reading.count("volumes")
    assert [(e["event"], e["by"]) for e in events] == [
        ("record_stop", "console"),
        ("record_start", "console"),
    ]
    assert n_volumes > 0


def test_browser_without_the_token_gets_neither_page_nor_socket(context, tmp_path):
    config = console_config(tmp_path, host="0.0.0.0", token=TOKEN)
    errors: list[str] = []
    with ConsoleProcess(config, tmp_path / "session.json") as console:
        page = context.new_page()
        for path in ("/console", "/participant"):
            response = page.goto(console.url + path)
            assert response.status == 401
            assert "access token required" in page.inner_text("body")
        outcome = page.evaluate(
            """(url) => new Promise((resolve) => {
                const socket = new WebSocket(url);
                socket.onopen = () => resolve("open");
                socket.onclose = (event) => resolve("refused " + event.code);
            })""",
            f"ws://127.0.0.1:{console.port}/ws/participant",
        )
        assert outcome.startswith("refused")

        page = context.new_page()  # now with the link the operator was given
        page.on("pageerror", lambda error: errors.append(str(error)))
        response = page.goto(f"{console.url}/console?token={TOKEN}")
        assert response.status == 200 and page.url == console.url + "/console"
        _wait_js(page, "document.body.dataset.socket === 'open'", timeout_ms=15_000)
        participant = context.new_page()  # the cookie now opens the other page too
        participant.on("pageerror", lambda error: errors.append(str(error)))
        assert participant.goto(console.url + "/participant").status == 200
        _wait_js(participant, "document.body.dataset.socket === 'open'", timeout_ms=15_000)
        assert participant.evaluate("document.body.dataset.state") == "waiting"
        for opened in (page, participant):  # schema.json came through the token check too
            _assert_schema_held(opened)
    assert not errors


def _doctored_schema() -> dict:
    """The page schema with two lies: the console picture has no ``lag_trs`` and its ``tr``
    is a string; the state's counts have no ``late_trs``."""
    schema = page_schema()
    picture = schema["$defs"]["ConsolePicture"]
    del picture["properties"]["lag_trs"]
    picture["required"].remove("lag_trs")
    picture["properties"]["tr"] = {"type": "string"}
    counts = schema["$defs"]["Counts"]
    del counts["properties"]["late_trs"]
    counts["required"].remove("late_trs")
    return schema


def test_the_pages_report_every_read_the_schema_does_not_allow(context, tmp_path):
    """With schema.json doctored in the browser, the console page's own reads of
    ``lag_trs``, ``tr`` and ``counts.late_trs`` are reported, with where, and the page goes on
    working; the participant page, which reads none of them, reports nothing."""
    config = console_config(tmp_path)
    errors: list[str] = []
    with (
        ConsoleProcess(config, tmp_path / "session.json") as console,
        Publisher(config.renderer.frames_endpoint) as renderer,
    ):
        context.route(
            "**/static/schema.json",
            lambda route: route.fulfill(
                status=200, content_type="application/json", body=json.dumps(_doctored_schema())
            ),
        )
        renderer.wait_for_subscribers(1, TOPIC_FRAME, timeout=30)
        page = _open(context, console.url + "/console", errors)
        participant = _open(context, console.url + "/participant", errors)
        _wait_js(page, "window.rtSchema.loaded && document.body.dataset.tr === ''")
        renderer.send_frames(frame_message(frame_header(2, pylsl.local_clock()), pattern(2)))
        _wait_js(page, "document.body.dataset.frameTr === '2'")
        _wait_js(page, "document.body.dataset.tr === '2'")
        _wait_js(participant, "window.rtParticipant.shown?.seq === 2")
        reported = _schema_report(page)["errors"]
        assert "console_picture.lag_trs: read, but the schema has no such key" in reported
        assert "console_picture.tr: expected string, found 2" in reported
        assert "state.counts.late_trs: read, but the schema has no such key" in reported
        assert len(reported) == 3, reported
        assert page.inner_text('#counts [data-count="late_trs"]') == "0"  # still drawn
        np.testing.assert_array_equal(_canvas_rgb(page, "#recon"), pattern(2))
        _assert_schema_held(participant)
    assert not errors
