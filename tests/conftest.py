"""Shared fixtures: a small synthetic dataset, a tiny random model and a bundle fitted on them.

Everything is built in code, seeded, on the CPU, in seconds; nothing is
downloaded. LSL stream names and ZeroMQ ports are unique per test.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from rt_recon.config import SessionConfig, SimulationSection

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

#: A session small enough to generate and fit in a few seconds.
SMALL_SIM = SimulationSection(
    seed=3,
    tr=1.0,
    grid=(16, 20, 12),
    n_train_runs=2,
    trials_per_run=10,
    stimulus_trs=2,
    lead_in_trs=4,
    lead_out_trs=6,
    snr=2.0,
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
            "recorder": {"control_endpoint": f"tcp://127.0.0.1:{free_port()}"},
            "replay": {"speed": 8.0},
        }
    ).resolved()
