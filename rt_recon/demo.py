"""``rt-recon demo``: the whole pipeline on the embedded default, end to end.

1. generate (or reuse from the cache) the synthetic session;
2. fit the decoders for the render model (cached by session, model and fit settings);
3. start recorder, renderer, decoder and replay as separate processes;
4. collect every latents message and frame until the last TR is rendered;
5. stop every process, report per-stage latency, and score the session's
   recording: each trial's frame against the picture shown (two-way
   identification, PixCorr, SSIM), with an HTML report and a grid of true
   vs reconstructed pictures.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from rt_recon.acquire.events import read_events
from rt_recon.config import SessionConfig
from rt_recon.dataset import Dataset
from rt_recon.decode.bundle import DecoderBundle
from rt_recon.errors import RtReconError
from rt_recon.evaluate.latency import StageSummary, summarise
from rt_recon.evaluate.report import write_report
from rt_recon.evaluate.session_eval import SessionEvaluation, evaluate_recording
from rt_recon.nodes.renderer import frames_dir
from rt_recon.nodes.supervisor import Supervisor
from rt_recon.protocol import TOPIC_FRAME, TOPIC_LATENTS, Message
from rt_recon.render.embedded import resolve_model_path
from rt_recon.render.model import model_fingerprint
from rt_recon.transport.zmq import Subscriber

log = logging.getLogger(__name__)

#: How long to wait for more frames once the replay has finished.
_DRAIN_S = 10.0


@dataclass
class DemoResult:
    run_dir: Path
    frames_dir: Path
    n_trs: int
    latents: list[dict] = field(default_factory=list)  # headers, in arrival order
    frames: list[Message] = field(default_factory=list)
    latency: list[StageSummary] = field(default_factory=list)
    recording: Path | None = None
    evaluation: SessionEvaluation | None = None
    report: Path | None = None

    @property
    def skipped_frames(self) -> int:
        return max((f.header.get("skipped_total", 0) for f in self.frames), default=0)


def ensure_bundle(dataset: Dataset, model_path: Path, config: SessionConfig) -> Path:
    """The cached decoder bundle for this dataset, model and fit settings; fitted on first use."""
    key = hashlib.sha256(
        json.dumps(
            {
                "dataset": dataset.root.name,
                "model": model_fingerprint(model_path),
                "fit": config.fit.model_dump(mode="json"),
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:12]
    path = config.paths.cache_dir / "bundles" / f"{key}.safetensors"
    if path.is_file():
        return path
    from rt_recon.decode.dataset_fit import fit_dataset
    from rt_recon.render.model import load_render_model

    log.info("fitting decoders on %s", dataset.root)
    model = load_render_model(model_path, with_text=True)
    bundle = fit_dataset(dataset, model, config.fit)
    return bundle.save(path)


def prepare(config: SessionConfig) -> tuple[SessionConfig, Dataset, Path]:
    """Session data, model and bundle ready; returns the node config, dataset and its path."""
    from simulators.session import ensure_session

    dataset = ensure_session(config.simulation, config.paths.cache_dir, config.session.subject)
    model_path = resolve_model_path(config)
    bundle_path = config.decoder.bundle or ensure_bundle(dataset, model_path, config)
    DecoderBundle.load(bundle_path)  # fail here, not in a child, if it is unreadable
    run_dir = config.paths.output_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    node_config = config.with_overrides(
        {
            "decoder.bundle": str(bundle_path),
            "renderer.model": str(model_path),
            # latents go to the renderer, the recorder and this process; frames to the last two
            "decoder.wait_for_subscribers": 3,
            "renderer.wait_for_subscribers": 2,
            # a new recording per demo run: recordings are never overwritten
            "recorder.path": str(run_dir / f"recording-{time.strftime('%Y%m%d-%H%M%S')}.h5"),
        }
    ).resolved()
    config_path = run_dir / "session.json"
    config_path.write_text(node_config.to_json())
    return node_config, dataset, config_path


def run_demo(config: SessionConfig) -> DemoResult:
    node_config, dataset, config_path = prepare(config)
    test = dataset.runs("test")[0]
    out_frames = frames_dir(node_config)
    for old in out_frames.glob("tr-*.png") if out_frames.is_dir() else []:
        old.unlink()
    result = DemoResult(node_config.paths.output_dir, out_frames, test.n_trs)
    cfg_arg = ["--config", str(config_path)]
    with (
        Supervisor(node_config.paths.output_dir / "logs") as supervisor,
        Subscriber(node_config.decoder.latents_endpoint, [TOPIC_LATENTS]) as latents,
        Subscriber(node_config.renderer.frames_endpoint, [TOPIC_FRAME]) as frames,
    ):
        supervisor.start("recorder", ["record", *cfg_arg])
        supervisor.start("renderer", ["render", *cfg_arg])
        supervisor.start("decoder", ["decode", *cfg_arg])
        await_ready = [
            "--await-ready",
            node_config.decoder.latents_endpoint,
            "--await-ready",
            node_config.recorder.status_endpoint,
        ]
        supervisor.start(
            "replay",
            [
                "simulate",
                "replay",
                str(test.bold),
                "--events",
                str(test.events),
                *await_ready,
                *cfg_arg,
            ],
        )
        _collect(supervisor, latents, frames, result)
    result.latency = summarise(f.header["times"] for f in result.frames)
    result.recording = node_config.recording_path
    ids = sorted({int(e["stimulus_id"]) for e in read_events(test.events) if "stimulus_id" in e})
    stimuli = dict(zip(ids, dataset.stimulus_images(ids), strict=True))
    result.evaluation = evaluate_recording(result.recording, stimuli)
    result.report = write_report(result.evaluation, result.run_dir / "report")
    return result


def _collect(
    supervisor: Supervisor, latents: Subscriber, frames: Subscriber, result: DemoResult
) -> None:
    poller = zmq.Poller()
    poller.register(latents.socket, zmq.POLLIN)
    poller.register(frames.socket, zmq.POLLIN)
    replay_done_at: float | None = None
    last_tr = result.n_trs - 1
    while True:
        ready = dict(poller.poll(100))
        if latents.socket in ready:
            message = latents.receive(timeout=0)
            if message is not None:
                result.latents.append(message.header)
        if frames.socket in ready:
            message = frames.receive(timeout=0)
            if message is not None:
                result.frames.append(message)
                if message.header.get("tr") == last_tr:
                    return
        for name, code in supervisor.exited().items():
            if name == "replay" and code == 0:
                replay_done_at = replay_done_at or time.monotonic()
            else:
                child = supervisor.children[name]
                raise RtReconError(
                    f"{name} exited with code {code} before the run finished; "
                    f"last lines of {child.log_path}:\n{child.tail()}"
                )
        if replay_done_at is not None and time.monotonic() - replay_done_at > _DRAIN_S:
            log.warning(
                "replay finished but no frame for TR %d arrived within %g s", last_tr, _DRAIN_S
            )
            return
