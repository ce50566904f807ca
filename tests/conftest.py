"""Shared fixtures: a small synthetic dataset, a tiny random model and a bundle fitted on them;
node processes started through the supervisor.

Everything is built in code, seeded, on the CPU, in seconds; nothing is
downloaded. LSL stream names and ZeroMQ ports are unique per test.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from rt_recon.config import SessionConfig, SimulationSection
from rt_recon.nodes.supervisor import Child, Supervisor

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

#: A session small enough to generate and fit in a few seconds: the easy participant in world
#: version 1 (the original synthetic brain and world, unchanged: the figures the tests on it
#: state were measured there, and tests/simulators/test_participant_presets.py pins its data).
#: The default world and participant are tested on the demo's own session (the slow tests).
SMALL_SIM = SimulationSection(
    participant="easy",
    world_version=1,
    seed=3,
    tr_s=1.0,
    grid=(16, 20, 12),
    n_train_runs=2,
    trials_per_run=10,
    stimulus_trs=2,
    lead_in_trs=4,
    lead_out_trs=6,
    snr=2.0,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """With ``pytest -n 2 --dist loadgroup`` the slow and browser tests (real-time processes,
    pacing, headless Chromium) run one after another on one xdist worker while the quick
    ones share the other. CI (the README's test command) runs the quick tests on two
    workers and then the slow and browser ones in one process on their own: on clean
    clones, slow tests beside a second worker failed (frames and markers late under load)."""
    for item in items:
        if item.get_closest_marker("slow") or item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.xdist_group("serial"))


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port nothing is bound to now and that this test process has not handed out
    before: the kernel may offer a port again once its probe socket is closed, and a config
    holding two endpoints on one port is refused (a CI run once drew the same port twice)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rt_recon.render.tiny import build_tiny_model
    from rt_recon.simulators.world import StimulusWorld

    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny", StimulusWorld().vocabulary())


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory):
    from rt_recon.simulators.session import generate_session

    return generate_session(SMALL_SIM, tmp_path_factory.mktemp("session") / "ds")


@pytest.fixture(scope="session")
def small_bundle_path(tmp_path_factory, small_dataset, tiny_model_dir) -> Path:
    from rt_recon.apps.fit import fit_dataset
    from rt_recon.config import FitSection
    from rt_recon.render.model import load_render_model

    model = load_render_model(tiny_model_dir, with_text=True)
    bundle = fit_dataset(small_dataset, model, FitSection(alphas=(1.0, 100.0, 1e4)))
    return bundle.save(tmp_path_factory.mktemp("bundle") / "bundle.safetensors")


@pytest.fixture
def node_config(tmp_path, small_bundle_path, tiny_model_dir) -> SessionConfig:
    """A session config with unique stream ids and free ports, for node tests."""
    return SessionConfig.model_validate(
        {
            "paths": {"output_dir": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache")},
            "simulation": SMALL_SIM.model_dump(mode="json"),
            "stream": {
                "name": unique("vol"),
                "source_id": unique("vol_src"),
                "markers_name": unique("mrk"),
                "markers_source_id": unique("mrk_src"),
                "resolve_timeout_s": 20,
            },
            "decoder": {
                "bundle": str(small_bundle_path),
                "latents_endpoint": f"tcp://127.0.0.1:{free_port()}",
                "subscriber_timeout_s": 30,
            },
            "renderer": {
                "model": str(tiny_model_dir),
                "steps": 2,
                "strength": 0.5,
                "frames_endpoint": f"tcp://127.0.0.1:{free_port()}",
                "subscriber_timeout_s": 30,
            },
            "recorder": {
                "control_endpoint": f"tcp://127.0.0.1:{free_port()}",
                "status_endpoint": f"tcp://127.0.0.1:{free_port()}",
            },
            "replay": {"speed": 8.0},
        }
    ).resolved()


class NodeProcesses:
    """The processes of one test, started through a :class:`Supervisor` (the ``node_processes``
    fixture): nodes by name, other ``rt-recon`` commands, Python helpers.

    Each child's stdout and stderr go to ``<tmp_path>/logs/<name>.log``; a
    :class:`~rt_recon.nodes.supervisor.Child` gives its ``pid``, ``send_signal``,
    ``wait(timeout)``, ``returncode``, ``log_text()``, ``tail()`` and
    ``wait_for_line(pattern, timeout)``. At teardown every child is stopped (SIGTERM, then
    SIGKILL after 10 s) and the test fails if a process one of them started outlives them.
    """

    def __init__(self, supervisor: Supervisor, config_dir: Path):
        self.supervisor = supervisor
        self._config_dir = config_dir
        self._config_paths: dict[str, Path] = {}

    def config_path(self, config: SessionConfig) -> Path:
        """``config`` as a file for the children (written once per distinct config)."""
        text = config.to_json()
        path = self._config_paths.get(text)
        if path is None:
            path = self._config_dir / f"session-{len(self._config_paths)}.json"
            path.write_text(text)
            self._config_paths[text] = path
        return path

    def node(self, node: str, config: SessionConfig | Path, *extra_args: str | Path) -> Child:
        """Start node ``node`` (decoder, renderer, recorder, console, replay) on ``config``.

        (To run one under a wrapper command, with more environment or a resource limit:
        ``supervisor.start_node(node, config_path(config), ..., wrapper=, env=, preexec=)``.)
        """
        path = self.config_path(config) if isinstance(config, SessionConfig) else config
        return self.supervisor.start_node(node, path, *(str(a) for a in extra_args))

    def replay_when_ready(self, config: SessionConfig, *args: str | Path) -> Child:
        """The replay node (``args``: its run and options) streaming once the decoder and the
        recorder report streaming (``--await-ready``), so both get its first volume."""
        ready = ["--await-ready", config.decoder.latents_endpoint]
        ready += ["--await-ready", config.recorder.status_endpoint]
        return self.node("replay", config, *args, *ready)

    def rt_recon(self, name: str, *args: str | Path) -> Child:
        """Start ``rt-recon *args`` (``bridge ...``, ``run CONFIG``) as child ``name``."""
        return self.supervisor.start(name, [str(a) for a in args])

    def python(self, name: str, *args: str | Path) -> Child:
        """Start ``python *args`` (``-m tests.nodes._stream_source ...``, ``-c CODE``) as child
        ``name``, with this repository importable (the helpers import ``tests``)."""
        pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        argv = [sys.executable, *(str(a) for a in args)]
        return self.supervisor.spawn(name, argv, env={"PYTHONPATH": pythonpath})

    def exited(self) -> dict[str, int]:
        """Children that have exited, with their exit codes."""
        return self.supervisor.exited()

    def assert_running(self, *names: str) -> None:
        """Fail, naming each with its exit code and last log lines, if any of children
        ``names`` (all, if none are named) has exited."""
        exited = {n: c for n, c in self.exited().items() if not names or n in names}
        assert not exited, "\n".join(
            f"{name} exited with code {code}:\n{self.supervisor.children[name].tail()}"
            for name, code in exited.items()
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every child (SIGTERM, SIGKILL after ``timeout`` s); fail if a process one of
        them started is still there ``timeout`` s later (it is killed)."""
        descendants: list[psutil.Process] = []
        for child in self.supervisor.children.values():
            with contextlib.suppress(psutil.NoSuchProcess):
                descendants += psutil.Process(child.pid).children(recursive=True)
        self.supervisor.stop_all(timeout)
        _, left = psutil.wait_procs(descendants, timeout)
        for process in left:
            process.kill()
        assert not left, f"left behind by the children: {[p.pid for p in left]}"


@pytest.fixture
def node_processes(tmp_path: Path) -> Iterator[NodeProcesses]:
    """Processes of one test, all stopped at its end: see :class:`NodeProcesses`."""
    processes = NodeProcesses(Supervisor(tmp_path / "logs"), tmp_path)
    try:
        yield processes
    finally:
        for name, child in processes.supervisor.children.items():  # shown if the test failed
            print(f"--- {name} (pid {child.pid}, exit {child.returncode}):\n{child.tail(40)}")
        processes.stop()


@dataclass
class DemoOfflineRun:
    """The demo's default session through the real pipeline, offline (see the fixture)."""

    config: Any
    dataset: Any
    run: Any  # rt_recon.evaluate.offline.RunEvaluation of the test run
    report: Any  # rt_recon.evaluate.semantic.SemanticReport, world baselines included


@pytest.fixture(scope="session")
def demo_offline_run(tmp_path_factory: pytest.TempPathFactory) -> DemoOfflineRun:
    """What ``rt-recon demo`` computes, without its processes: a fresh session of the shipped
    default config (the realistic participant), decoders fitted for the embedded model, the
    held-out test run decoded and rendered by the objects the nodes use, scored with every
    baseline the world can draw. Built once for the tests that judge the embedded default."""
    from rt_recon.apps.demo import wrong_shape_pictures
    from rt_recon.apps.fit import fit_dataset
    from rt_recon.cli import DEFAULT_CONFIG
    from rt_recon.config import load_config
    from rt_recon.evaluate.offline import evaluate_run
    from rt_recon.evaluate.semantic import WRONG_SHAPE, evaluate_semantic
    from rt_recon.render.embedded import EMBEDDED_DIR
    from rt_recon.render.factory import make_renderer
    from rt_recon.render.model import load_render_model
    from rt_recon.simulators.session import generate_session
    from rt_recon.simulators.world import StimulusWorld

    config = load_config(DEFAULT_CONFIG)
    sim = config.simulation
    dataset = generate_session(sim, tmp_path_factory.mktemp("demo_session") / "ds")
    model = load_render_model(EMBEDDED_DIR, with_text=True)
    bundle = fit_dataset(dataset, model, config.fit)
    run = evaluate_run(dataset, dataset.runs("test")[0], bundle, make_renderer(model, config))
    world = StimulusWorld(seed=sim.seed, image_size=sim.image_size, version=sim.world_version)
    report = evaluate_semantic(
        run.recons,
        run.truths,
        n_shown=run.scores.n_shown,
        world_baselines={WRONG_SHAPE: wrong_shape_pictures(world, run.stimulus_ids)},
    )
    return DemoOfflineRun(config, dataset, run, report)


# ------------------------------------------------------------------ the browser
# One Playwright (Debian's chromium) for the whole session, here rather than under
# tests/display/: a second sync Playwright started beside the first (a test elsewhere that
# imported its own) fails with "using Playwright Sync API inside the asyncio loop".


@pytest.fixture(scope="session")
def browser() -> Iterator:
    """Playwright driving Debian's chromium, skipped cleanly where either is absent."""
    from tests.display._helpers import CHROMIUM, CHROMIUM_ARGS

    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
    )
    if not CHROMIUM.is_file():
        pytest.skip(f"no {CHROMIUM}: install Debian's chromium (apt-get install -y chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def context(browser) -> Iterator:
    """A fresh browser profile (no cookies) for one test, closed after it."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    yield context
    context.close()
