"""Picture delay to the participant display: renderer publishes a frame -> the page shows it.

A real console (``python -m rt_recon console``) subscribes to a real ZeroMQ
publisher in this process; headless Chromium (Debian's, driven by
Playwright) shows the participant page. Per picture, from just before
``Publisher.send`` to: the page's WebSocket message, the picture drawn into
the canvas, and the next animation frame (when the browser composes it).
The floor is the same frame to a plain ZeroMQ subscriber in this process.
The page draws each picture as it comes (``console.crossfade_ms: 0``); the crossfade's
own figures are ``benchmarks.bench_display_smoothing``'s.
Clocks: the page's ``performance.timeOrigin + now()`` against ``time.time()``,
offset measured from the shortest of several round trips.

    python -m benchmarks.bench_display [--sizes 64 512] [--repeats 50] [--rate 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import http.client
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import pylsl

from benchmarks._page import free_port, wait_js
from benchmarks._report import Timing, machine, write_json
from rt_recon.config import SessionConfig
from rt_recon.protocol import TOPIC_FRAME
from rt_recon.transport.zmq import Publisher, Subscriber

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


def _header(i: int) -> dict:
    now = pylsl.local_clock()
    return {"seq": i, "tr": i, "times": {"acquired": now, "published": now}}


def _picture(i: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def _floor(size: int, repeats: int) -> list[float]:
    """Publish -> a Python ZeroMQ subscriber on loopback, same process."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    out = []
    with Publisher(endpoint) as pub, Subscriber(endpoint, [TOPIC_FRAME]) as sub:
        pub.wait_for_subscribers(1, TOPIC_FRAME, timeout=10)
        for i in range(repeats + 3):
            image = _picture(i, size)
            start = time.perf_counter()
            pub.send(TOPIC_FRAME, _header(i), {"image": image})
            message = sub.receive(timeout=5)
            out.append(time.perf_counter() - start)
            assert message is not None and message.header["seq"] == i
    return out[3:]


class _Console:
    def __init__(self, tmp: Path):
        self.config = SessionConfig.model_validate(
            {
                "stream": {"markers_source_id": f"bench_{uuid.uuid4().hex[:8]}"},
                "decoder": {"latents_endpoint": f"tcp://127.0.0.1:{free_port()}"},
                "renderer": {"frames_endpoint": f"tcp://127.0.0.1:{free_port()}"},
                "recorder": {"status_endpoint": f"tcp://127.0.0.1:{free_port()}"},
                "console": {"port": free_port(), "crossfade_ms": 0},  # drawn as it comes
            }
        )
        path = tmp / "session.json"
        path.write_text(self.config.to_json())
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rt_recon", "console", "--config", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{self.config.console.port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.config.console.port)
                connection.request("GET", "/api/state")
                connection.getresponse().read()
                connection.close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the console did not start") from None
                time.sleep(0.2)

    def close(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=15)


def _clock_offset_ms(page) -> float:
    samples = []
    for _ in range(9):
        before = time.time() * 1000
        browser_now = page.evaluate("performance.timeOrigin + performance.now()")
        after = time.time() * 1000
        samples.append((after - before, browser_now - (before + after) / 2))
    return min(samples)[1]


def _page(browser, size: int, repeats: int, rate: float) -> dict[str, list[float]]:
    """Publish -> participant page, one picture every 1/rate s."""
    with TemporaryDirectory() as tmp:
        console = _Console(Path(tmp))
        try:
            with Publisher(console.config.renderer.frames_endpoint) as pub:
                pub.wait_for_subscribers(1, TOPIC_FRAME, timeout=30)
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(console.url + "/participant")
                wait_js(page, "document.body.dataset.socket === 'open'")
                offset = _clock_offset_ms(page)
                out: dict[str, list[float]] = {"message": [], "drawn": [], "frame": []}
                for i in range(repeats + 3):
                    image = _picture(i, size)
                    sent = time.time() * 1000
                    pub.send(TOPIC_FRAME, _header(i), {"image": image})
                    wait_js(
                        page,
                        f"window.rtParticipant.shown?.seq === {i} && "
                        "window.rtParticipant.shown.nextFrameAt !== null",
                    )
                    shown = page.evaluate("window.rtParticipant.shown")
                    if i >= 3:
                        out["message"].append((shown["receivedAt"] - offset - sent) / 1000)
                        out["drawn"].append((shown["drawnAt"] - offset - sent) / 1000)
                        out["frame"].append((shown["nextFrameAt"] - offset - sent) / 1000)
                    time.sleep(max(0.0, 1.0 / rate - (time.time() * 1000 - sent) / 1000))
                page.close()
        finally:
            console.close()
    return out


def run(sizes: list[int], repeats: int = 50, rate: float = 10.0) -> dict:
    from playwright.sync_api import sync_playwright

    rows: list[Timing] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for size in sizes:
            name = f"{size}x{size}:"
            rows.append(Timing.of(f"{name} ZeroMQ to a Python subscriber (floor)",
                                  _floor(size, repeats)))  # fmt: skip
            page = _page(browser, size, repeats, rate)
            rows.append(Timing.of(f"{name} the page's WebSocket message", page["message"]))
            rows.append(Timing.of(f"{name} drawn into the canvas", page["drawn"]))
            rows.append(Timing.of(f"{name} next animation frame", page["frame"]))
        browser.close()
    lines = ["| from publish to | n | median ms | p95 ms | min ms |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.name} | {r.n} | {r.median_ms:.2f} | {r.p95_ms:.2f} | {r.min_ms:.2f} |")
    return {"machine": machine(), "rate_hz": rate, "rows": rows, "table": "\n".join(lines)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--rate", type=float, default=10.0, help="pictures per second")
    parser.add_argument("--json", help="write the results as JSON here")
    args = parser.parse_args()
    result = run(args.sizes, args.repeats, args.rate)
    print(f"participant display delay, {args.rate:g} pictures/s, loopback; {result['machine']}")
    print(result["table"])
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
