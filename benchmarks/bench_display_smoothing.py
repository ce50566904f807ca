"""Smooth pictures between TRs: what the participant display shows, frame by frame.

A real console (``python -m rt_recon console``) shows pictures in headless Chromium
(Debian's, driven by Playwright) on the participant page. A probe in the page reads the
picture canvas back (``getImageData``) at every animation frame (``requestAnimationFrame``)
and keeps the frame's time and the mean absolute change of its pixels from the frame
before (RGB, 0-255). Reported per condition: animation frames per second, frames per
second in which the canvas changed, the largest frame-to-frame change, and the full change
between two consecutive pictures, which is what one frame shows without smoothing.

Conditions:

* ``off``: ``console.crossfade_ms: 0``, pictures at TR pace (today's behaviour before the
  crossfade: each picture replaces the one before in one frame);
* ``crossfade``: the page's crossfade (``console.crossfade_ms``, default 500 ms);
* ``renderer`` (``--renderer``): the renderer node with the embedded model on this
  machine, interpolating between TRs (``renderer.interpolate_fps``), its frames shown with
  the crossfade; latents of held-out world pictures at TR pace. Also reported: the rate of
  interpolated frames it sustained, its render time per frame alone, and the largest change
  between two consecutive frames it sent (how smooth its own sequence is).

The pictures of ``off`` and ``crossfade`` are uniform noise, a new one per TR (a change
of about 85 of 255 per pixel on average): the hardest case for the eye. The first picture
is left out (it comes in from the fixation cross).

    python -m benchmarks.bench_display_smoothing [--trs 8] [--tr 1.0] [--size 128]
        [--crossfade 500] [--renderer] [--interpolate-fps 30] [--interpolate-ms 500]
        [--threads 0] [--model embedded --device cpu --dtype float32] [--json out.json]

On a GPU: ``--renderer --model /models/sd-turbo --device cuda --dtype float16``.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np
import pylsl

from benchmarks._page import free_port, wait_js
from benchmarks._report import machine, write_json
from rt_recon.config import SessionConfig
from rt_recon.protocol import (
    TOPIC_FRAME,
    TOPIC_LATENTS,
    Frame,
    FrameHeader,
    Latents,
    LatentsHeader,
    Status,
    Times,
    is_interpolated,
)
from rt_recon.transport.zmq import Publisher, Subscriber

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip

#: Installed in the page once the first picture is up: at every animation frame it reads the
#: picture canvas back and keeps the frame's time and the mean absolute change of its RGB
#: from the frame read before (``window.rtSmoothing``).
PROBE = """() => {
  const canvas = document.getElementById("picture");
  const ctx = canvas.getContext("2d");
  const probe = { t: [], change: [], running: true, reads: 0 };
  window.rtSmoothing = probe;
  let before = null;
  const tick = (timestamp) => {
    if (!probe.running) return;
    if (document.body.dataset.state === "showing" && canvas.width > 0) {
      const now = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      if (before !== null && before.length === now.length) {
        let sum = 0;
        for (let i = 0; i < now.length; i += 4) {
          sum += Math.abs(now[i] - before[i]) + Math.abs(now[i + 1] - before[i + 1])
            + Math.abs(now[i + 2] - before[i + 2]);
        }
        probe.t.push(timestamp);
        probe.change.push(sum / ((now.length / 4) * 3));
      }
      before = now;
      probe.reads += 1;
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}"""


@dataclass
class Shown:
    """What the participant page showed over one condition's pictures."""

    condition: str
    crossfade_ms: float
    frame_ms: list[float]  # animation frame times (ms, the page's clock)
    change: list[float]  # mean absolute RGB change from the frame before, 0-255
    picture_change: list[float]  # between consecutive pictures sent (TR pictures), 0-255
    exact_at_rest: bool  # the canvas equals the last picture once it is wholly up
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return (self.frame_ms[-1] - self.frame_ms[0]) / 1000.0 if len(self.frame_ms) > 1 else 0.0

    @property
    def fps(self) -> float:
        """Animation frames per second (the rate the display is drawn at)."""
        return (len(self.frame_ms) - 1) / self.seconds if self.seconds > 0 else 0.0

    @property
    def changing_fps(self) -> float:
        """Frames per second in which the picture on the canvas changed."""
        changed = sum(1 for c in self.change if c > 0)
        return changed / self.seconds if self.seconds > 0 else 0.0

    @property
    def largest(self) -> float:
        return max(self.change, default=0.0)

    @property
    def median_step(self) -> float:
        """The median change of a frame in which the canvas changed."""
        steps = [c for c in self.change if c > 0]
        return float(np.median(steps)) if steps else 0.0

    @property
    def full_change(self) -> float:
        """The median change between two consecutive pictures: one frame's, without smoothing."""
        return float(np.median(self.picture_change)) if self.picture_change else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "condition": self.condition,
            "crossfade_ms": self.crossfade_ms,
            "frames": len(self.frame_ms),
            "seconds": round(self.seconds, 2),
            "fps": round(self.fps, 1),
            "changing_fps": round(self.changing_fps, 1),
            "largest_change": round(self.largest, 2),
            "median_changing_step": round(self.median_step, 2),
            "picture_change_median": round(self.full_change, 2),
            "picture_changes": len(self.picture_change),
            "exact_at_rest": self.exact_at_rest,
            **self.extra,
        }


def session_config(crossfade_ms: float, **renderer: Any) -> SessionConfig:
    """Free ports, a unique marker stream, the participant page's crossfade."""
    return SessionConfig.model_validate(
        {
            "stream": {"markers_source_id": f"bench_{uuid.uuid4().hex[:8]}"},
            "decoder": {"latents_endpoint": f"tcp://127.0.0.1:{free_port()}"},
            "renderer": {"frames_endpoint": f"tcp://127.0.0.1:{free_port()}", **renderer},
            "recorder": {
                "status_endpoint": f"tcp://127.0.0.1:{free_port()}",
                "control_endpoint": f"tcp://127.0.0.1:{free_port()}",
            },
            "console": {"port": free_port(), "crossfade_ms": crossfade_ms},
        }
    )


@contextmanager
def console(config: SessionConfig, folder: Path) -> Iterator[str]:
    """``rt-recon console`` as a subprocess; yields its URL once it answers."""
    path = folder / "session.json"
    path.write_text(config.to_json())
    process = subprocess.Popen(
        [sys.executable, "-m", "rt_recon", "console", "--config", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port = config.console.port
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", "/api/state")
                connection.getresponse().read()
                connection.close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the console did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def noise_pictures(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` pictures of uniform RGB noise, each unlike the one before."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def mean_change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute RGB difference of two pictures, 0-255."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def canvas_rgb(page) -> np.ndarray:
    """The participant canvas's pixels ``(H, W, 3)`` uint8."""
    width, height, data = page.evaluate(
        """() => {
            const c = document.getElementById("picture");
            const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            return [c.width, c.height, Array.from(d)];
        }"""
    )
    return np.array(data, dtype=np.uint8).reshape(height, width, 4)[..., :3]


def _frame(i: int, image: np.ndarray) -> list[Any]:
    now = pylsl.local_clock()
    header = FrameHeader(
        seq=i, tr=i, volume_crc32=i, session="bench", run="01", model_fingerprint="bench",
        lag_trs=0, mode="continuous", times=Times(acquired=now, published=now),
    )  # fmt: skip
    return Frame(header, image).encode()


def _heartbeat(seq: int) -> list[Any]:
    status = Status(
        node="renderer", pid=os.getpid(), state="running", seq=seq,
        t=pylsl.local_clock(), uptime_s=float(seq), counters={},
    )  # fmt: skip
    return status.encode()


def _paced(n: int, tr_s: float, send: Callable[[int], None]) -> None:
    """``send(i)`` for i in 0..n-1 at ``i * tr_s`` from now (target times, no drift)."""
    start = time.monotonic()
    for i in range(n):
        time.sleep(max(0.0, start + i * tr_s - time.monotonic()))
        send(i)


def _wait(page, expression: str, timeout_s: float = 20.0) -> None:
    wait_js(page, expression, timeout_s, poll_s=0.01)


def _probe(page, run: Callable[[], None], settle_s: float) -> tuple[list[float], list[float]]:
    """Install the probe, ``run()`` (sends pictures) once it has read the canvas, wait
    ``settle_s``, read the probe."""
    page.evaluate(PROBE)
    _wait(page, "window.rtSmoothing.reads >= 2")  # the picture before the first change read
    run()
    time.sleep(settle_s)
    got = page.evaluate(
        "() => { window.rtSmoothing.running = false; "
        "return [window.rtSmoothing.t, window.rtSmoothing.change]; }"
    )
    return list(got[0]), list(got[1])


def measure_pictures(
    browser, pictures: list[np.ndarray], tr_s: float, crossfade_ms: float, condition: str
) -> Shown:
    """Publish ``pictures`` at TR pace to a console with ``crossfade_ms``; what its
    participant page showed after the first."""
    config = session_config(crossfade_ms)
    with (
        TemporaryDirectory() as tmp,
        console(config, Path(tmp)) as url,
        Publisher(config.renderer.frames_endpoint) as renderer,
    ):
        renderer.wait_for_subscribers(1, TOPIC_FRAME, timeout=30)
        page = browser.new_page(viewport={"width": 800, "height": 600})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url + "/participant")
        _wait(page, "document.body.dataset.socket === 'open'")
        renderer.send_frames(_heartbeat(0))
        renderer.send_frames(_frame(0, pictures[0]))
        _wait(page, "window.rtParticipant.shown?.seq === 0 && window.rtParticipant.shown.settledAt")

        def send(i: int) -> None:
            renderer.send_frames(_heartbeat(i + 1))
            renderer.send_frames(_frame(i + 1, pictures[i + 1]))

        frame_ms, change = _probe(
            page, lambda: _paced(len(pictures) - 1, tr_s, send), settle_s=max(tr_s, 0.8)
        )
        last = len(pictures) - 1
        _wait(
            page,
            f"window.rtParticipant.shown?.seq === {last} && window.rtParticipant.shown.settledAt",
        )
        exact = bool(np.array_equal(canvas_rgb(page), pictures[-1]))
        schema = page.evaluate("window.rtSchema")
        page.close()
    if errors or not schema["loaded"] or schema["errors"]:
        raise RuntimeError(f"the page failed: {errors} {schema}")
    changes = [mean_change(a, b) for a, b in itertools.pairwise(pictures)]
    return Shown(condition, crossfade_ms, frame_ms, change, changes, exact)


def _world_latents(model, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Decoder targets (z, c) of ``n`` held-out world pictures: what a perfect decoder sends."""
    from rt_recon.render.targets import encode_captions, encode_images
    from rt_recon.simulators.world import StimulusWorld

    world = StimulusWorld(image_size=model.image_size)
    ids = [int(i) for i in world.holdout_ids()[: n * 7 : 7]]
    return encode_images(model, world.images(ids)), encode_captions(
        model, [world.caption(i) for i in ids]
    )


def render_rate(renderer, zs: np.ndarray, cs: np.ndarray, repeats: int = 20) -> dict[str, Any]:
    """The renderer's time per interpolated frame alone (ms), between the first two TRs'
    start points of ``zs``, ``cs``."""
    import torch

    renderer.render(zs[0], cs[0])
    a = renderer.last_start
    renderer.render(zs[1], cs[1])
    b = renderer.last_start
    for _ in range(3):
        renderer.render_between(a, b, 0.5)
    times = []
    for k in range(repeats):
        start = time.perf_counter()
        renderer.render_between(a, b, (k + 1) / (repeats + 1))
        times.append(time.perf_counter() - start)
    ms = float(np.median(times) * 1000.0)
    return {
        "render_ms_median": round(ms, 1),
        "render_fps": round(1000.0 / ms, 1),
        "n": repeats,
        "torch_threads": torch.get_num_threads(),
    }


def measure_renderer(
    browser,
    n_trs: int,
    tr_s: float,
    crossfade_ms: float,
    fps: float,
    interpolate_ms: float,
    threads: int = 0,
    model: str = "embedded",
    device: str = "cpu",
    dtype: str = "float32",
) -> Shown:
    """The renderer node (``model`` on ``device``; on the CPU ``threads`` torch threads, 0:
    torch's default) interpolating between TRs at ``fps``, fed the latents of held-out
    world pictures at TR pace; what the page showed."""
    from rt_recon.decode.specs import ModelSpec
    from rt_recon.nodes.renderer import RendererNode
    from rt_recon.nodes.runner import run_node
    from rt_recon.render import load_render_model, make_renderer, resolve_model_path

    config = session_config(
        crossfade_ms,
        model=model,
        device=device,
        dtype=dtype,
        steps=4,
        strength=0.5,
        write_png=False,
        interpolate_fps=fps,
        interpolate_ms=interpolate_ms,
        threads=threads,
    )
    if threads:
        import torch

        torch.set_num_threads(threads)
    loaded = load_render_model(resolve_model_path(config), device, dtype, with_text=True)
    fingerprint = ModelSpec.from_json(loaded.describe()).fingerprint
    zs, cs = _world_latents(loaded, n_trs)
    alone = render_rate(make_renderer(loaded, config), zs, cs)
    del loaded  # the node loads its own
    stop = threading.Event()
    node = RendererNode(config)
    thread = threading.Thread(target=run_node, args=(node, stop), name="renderer", daemon=True)
    frames: list[tuple[dict, np.ndarray]] = []
    with TemporaryDirectory() as tmp:
        thread.start()
        try:
            with (
                Publisher(config.decoder.latents_endpoint) as decoder,
                console(config, Path(tmp)) as url,
                Subscriber(config.renderer.frames_endpoint, [TOPIC_FRAME]) as watch,
            ):
                decoder.wait_for_subscribers(1, TOPIC_LATENTS, timeout=120)
                page = browser.new_page(viewport={"width": 800, "height": 600})
                page.goto(url + "/participant")
                _wait(page, "document.body.dataset.socket === 'open'")

                def send(i: int) -> None:
                    now = pylsl.local_clock()
                    header = LatentsHeader(
                        seq=i, tr=i, volume_crc32=i, session="bench", run="01",
                        model_fingerprint=fingerprint, lag_trs=0, mode="continuous",
                        times=Times(acquired=now, sent=now),
                    )  # fmt: skip
                    decoder.send_frames(Latents(header, zs[i], cs[i]).encode())

                send(0)
                _wait(page, "window.rtParticipant.shown?.tr === 0", timeout_s=60)
                _wait(page, "window.rtParticipant.shown.settledAt !== null")

                def run() -> None:
                    _paced(n_trs - 1, tr_s, lambda i: send(i + 1))

                frame_ms, change = _probe(
                    page, run, settle_s=max(tr_s, interpolate_ms / 1000) + 0.5
                )
                page.close()
                while (message := watch.receive(timeout=0.2)) is not None:
                    frames.append((message.header, message.arrays["image"]))
        finally:
            stop.set()
            thread.join(timeout=30)
    own = {h["tr"]: image for h, image in frames if not is_interpolated(h)}
    trs = sorted(own)
    changes = [mean_change(own[a], own[b]) for a, b in itertools.pairwise(trs)]
    between = [h["tr"] for h, _ in frames if is_interpolated(h)]
    per_tr = [between.count(tr) for tr in trs if tr > 0]
    # within an interpolation: its frames and the TR's own, over interpolate_ms
    sustained = (float(np.mean(per_tr)) + 1.0) / (interpolate_ms / 1000.0) if per_tr else 0.0
    # how smooth the renderer's own sequence is: change between consecutive frames it sent
    steps = [mean_change(a, b) for (_, a), (_, b) in itertools.pairwise(frames)]
    extra = {
        "renderer_step_largest": round(max(steps, default=0.0), 2),
        "renderer_step_median": round(float(np.median(steps)) if steps else 0.0, 2),
        "interpolate_fps": fps,
        "interpolate_ms": interpolate_ms,
        "threads": threads,
        "model": model,
        "device": device,
        "tr_frames": len(trs),
        "interpolated_frames": len(between),
        "interpolated_per_tr": per_tr,
        "sustained_fps": round(sustained, 1),
        "alone": alone,
        "node_counters": asdict(node.counters),
    }
    return Shown("renderer", crossfade_ms, frame_ms, change, changes, True, extra)


def run(
    n_trs: int = 8,
    tr_s: float = 1.0,
    size: int = 128,
    crossfade_ms: float = 500.0,
    renderer: bool = False,
    interpolate_fps: float = 30.0,
    interpolate_ms: float = 500.0,
    threads: int = 0,
    model: str = "embedded",
    device: str = "cpu",
    dtype: str = "float32",
) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    pictures = noise_pictures(n_trs, size)
    shown: list[Shown] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            shown.append(measure_pictures(browser, pictures, tr_s, 0.0, "off"))
            shown.append(measure_pictures(browser, pictures, tr_s, crossfade_ms, "crossfade"))
            if renderer:
                args = (n_trs, tr_s, crossfade_ms, interpolate_fps, interpolate_ms, threads)
                shown.append(measure_renderer(browser, *args, model, device, dtype))
        finally:
            browser.close()
    off, on = shown[0], shown[1]
    lines = [
        "| condition | animation frames/s | frames/s with a change | largest frame-to-frame "
        "change | median change of a changing frame | change between pictures (median) | "
        "frames |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in shown:
        name = s.condition if s.condition == "off" else f"{s.condition}, {s.crossfade_ms:g} ms"
        lines.append(
            f"| {name} | {s.fps:.1f} | {s.changing_fps:.1f} | {s.largest:.2f} | "
            f"{s.median_step:.2f} | {s.full_change:.2f} | {len(s.frame_ms)} |"
        )
    return {
        "machine": machine(),
        "trs": n_trs,
        "tr_s": tr_s,
        "size": size,
        "conditions": [s.summary() for s in shown],
        "ratio_largest_off_to_crossfade": round(off.largest / max(on.largest, 1e-9), 1),
        "table": "\n".join(lines),
        "shown": shown,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trs", type=int, default=8, help="pictures, one a TR")
    parser.add_argument("--tr", type=float, default=1.0, help="seconds between pictures")
    parser.add_argument("--size", type=int, default=128, help="noise pictures, pixels a side")
    parser.add_argument("--crossfade", type=float, default=500.0, help="console.crossfade_ms")
    parser.add_argument("--renderer", action="store_true", help="also the embedded renderer")
    parser.add_argument("--interpolate-fps", type=float, default=30.0)
    parser.add_argument("--interpolate-ms", type=float, default=500.0)
    parser.add_argument("--threads", type=int, default=0, help="renderer.threads (0: default)")
    parser.add_argument("--model", default="embedded", help="renderer.model (with --renderer)")
    parser.add_argument("--device", default="cpu", help="renderer.device, e.g. cuda")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--json", help="write the results as JSON here")
    args = parser.parse_args()
    result = run(
        args.trs, args.tr, args.size, args.crossfade, args.renderer, args.interpolate_fps,
        args.interpolate_ms, args.threads, args.model, args.device, args.dtype,
    )  # fmt: skip
    print(f"participant display, {args.trs} pictures {args.tr:g} s apart; {result['machine']}")
    print(result["table"])
    print(f"largest change, off / crossfade: {result['ratio_largest_off_to_crossfade']}x")
    for condition in result["conditions"]:
        print(condition)
    if args.json:
        write_json(args.json, {k: v for k, v in result.items() if k != "shown"})


if __name__ == "__main__":
    main()
