"""Screenshots of the operator console and the participant display during a real replay.

Runs the embedded-default session as the demo does (cached synthetic session,
fitted decoders, embedded render model) with real processes: replay ->
decoder -> renderer -> console, and the recorder, then drives headless Chromium to both pages
and saves ``console.png`` and ``participant.png`` next to this file. With ``--presenter``
it instead takes the participant display presenting a training run (``rt-recon present``)
as ``docs/operators/presenter.png``.

    python docs/screenshots/make_screenshots.py [--config configs/demo.yaml] [--tr 40]
    python docs/screenshots/make_screenshots.py --presenter

Re-run it whenever the pages or the embedded model change.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory

from PIL import Image
from playwright.sync_api import sync_playwright

from rt_recon.apps.demo import prepare
from rt_recon.config import SessionConfig, load_config
from rt_recon.errors import RtReconError
from rt_recon.nodes.supervisor import Supervisor
from rt_recon.simulators.world import StimulusWorld

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip

PRESENTER_PNG = REPO / "docs" / "operators" / "presenter.png"

log = logging.getLogger("screenshots")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(page, expression: str, timeout_s: float, supervisor: Supervisor | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        crashed = {n: c for n, c in (supervisor.exited() if supervisor else {}).items() if c != 0}
        if crashed:
            name = next(iter(crashed))
            raise RtReconError(f"{name} exited: {supervisor.children[name].tail()}")
        if time.monotonic() > deadline:
            raise RtReconError(f"waited {timeout_s:g} s for {expression}")
        time.sleep(0.05)


def presenter_screenshot(out: Path) -> Path:
    """The participant display presenting a training run (``rt-recon present``), mid-trial:
    a stimulus set of the world's pictures (256², with captions) in a temporary folder,
    ``python -m rt_recon present`` on it, the run started with the trigger key."""
    world = StimulusWorld(image_size=256)
    ids = [int(i) for i in world.training_ids()[:3]]
    with TemporaryDirectory() as tmp:
        folder = Path(tmp) / "stimuli"
        folder.mkdir()
        rows = ["stimulus_id\tcaption\tfile"]
        for i in ids:
            Image.fromarray(world.image(i)).save(folder / f"{i}.png")
            rows.append(f"{i}\t{world.caption(i)}\t{i}.png")
        (folder / "stimuli.tsv").write_text("\n".join(rows) + "\n")
        tag = uuid.uuid4().hex[:8]
        port = _free_port()
        config = SessionConfig.model_validate(
            {
                "paths": {"output_dir": str(Path(tmp) / "out")},
                "stream": {"markers_source_id": f"shot_{tag}", "markers_name": f"shot_{tag}"},
                "decoder": {"latents_endpoint": f"tcp://127.0.0.1:{_free_port()}"},
                "renderer": {"frames_endpoint": f"tcp://127.0.0.1:{_free_port()}"},
                "recorder": {
                    "status_endpoint": f"tcp://127.0.0.1:{_free_port()}",
                    "control_endpoint": None,
                },
                "console": {"port": port},
            }
        )
        (Path(tmp) / "session.json").write_text(json.dumps(config.model_dump(mode="json")))
        process = subprocess.Popen(
            [sys.executable, "-m", "rt_recon", "present", str(folder), "--config",
             str(Path(tmp) / "session.json"), "--duration", "3", "--isi", "0.5"],
        )  # fmt: skip
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
                )
                page = browser.new_page(viewport={"width": 640, "height": 400})
                deadline = time.monotonic() + 30
                while True:
                    try:
                        page.goto(f"http://127.0.0.1:{port}/participant")
                        break
                    except Exception:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.3)
                _wait(page, "window.rtPresent?.phase === 'ready'", 30.0)
                page.keyboard.press("5")
                _wait(page, "window.rtPresent.onsets[0] !== undefined", 30.0)
                time.sleep(0.3)
                out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=out)
                browser.close()
        finally:
            process.terminate()
            process.wait(timeout=15)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml")
    parser.add_argument("--tr", type=int, default=40, help="take the pictures after this TR")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--presenter", action="store_true", help="the presenter page only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.presenter:
        log.info("wrote %s", presenter_screenshot(PRESENTER_PNG))
        return

    with TemporaryDirectory() as tmp:
        tag = uuid.uuid4().hex[:8]
        config = load_config(args.config).with_overrides(
            {
                "paths.output_dir": str(Path(tmp) / "run"),
                "stream.source_id": f"screens_vol_{tag}",
                "stream.markers_source_id": f"screens_mrk_{tag}",
                "decoder.latents_endpoint": f"tcp://127.0.0.1:{_free_port()}",
                "renderer.frames_endpoint": f"tcp://127.0.0.1:{_free_port()}",
                "recorder.status_endpoint": f"tcp://127.0.0.1:{_free_port()}",
                "recorder.control_endpoint": f"tcp://127.0.0.1:{_free_port()}",
                "renderer.write_png": False,
            }
        )
        node_config, dataset, config_path = prepare(config)
        node_config = node_config.with_overrides(
            {
                "decoder.wait_for_subscribers": 2,  # the renderer and the recorder
                "renderer.wait_for_subscribers": 1,  # the console
                "console.port": _free_port(),
                "console.dataset": str(dataset.root),
            }
        ).resolved()
        config_path.write_text(node_config.to_json())
        test = dataset.runs("test")[0]
        cfg = ["--config", str(config_path)]
        url = f"http://127.0.0.1:{node_config.console.port}"
        with Supervisor(Path(tmp) / "logs") as supervisor, sync_playwright() as playwright:
            supervisor.start("console", ["console", *cfg])
            supervisor.start("renderer", ["render", *cfg])
            supervisor.start("decoder", ["decode", *cfg])
            supervisor.start("recorder", ["record", *cfg])
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
            )
            console = browser.new_page(viewport={"width": 1400, "height": 900})
            participant = browser.new_page(viewport={"width": 960, "height": 600})
            for page, path in ((console, "/console"), (participant, "/participant")):
                deadline = time.monotonic() + 60
                while True:
                    try:
                        page.goto(url + path)
                        break
                    except Exception:  # the console is still starting
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.5)
            replay = ["simulate", "replay", str(test.bold), "--events", str(test.events), *cfg]
            replay += ["--await-ready", node_config.decoder.latents_endpoint]
            replay += ["--await-ready", node_config.recorder.status_endpoint]
            supervisor.start("replay", replay)
            # after --tr, at a TR whose reconstruction is of a picture that was shown
            _wait(
                console,
                f"Number(document.body.dataset.frameTr) >= {args.tr} && "
                "!document.getElementById('truth').hidden && "
                "document.getElementById('truth').naturalWidth > 0",
                timeout_s=180,
                supervisor=supervisor,
            )
            console.screenshot(path=args.out / "console.png")
            participant.screenshot(path=args.out / "participant.png")
            browser.close()
    log.info("wrote %s and %s", args.out / "console.png", args.out / "participant.png")


if __name__ == "__main__":
    main()
