"""``rt-recon demo``: the whole pipeline on the embedded default, end to end.

1. generate (or reuse from the cache) the synthetic session;
2. fit the decoders for the render model (cached by session, model and fit settings);
3. start recorder, renderer, decoder and replay as separate processes
   (:mod:`rt_recon.apps.pipeline`);
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
from dataclasses import dataclass
from pathlib import Path

from rt_recon.acquire.events import read_events
from rt_recon.apps.pipeline import PIPELINE_OVERRIDES, PipelineResult, run_pipeline
from rt_recon.config import SessionConfig
from rt_recon.dataset import Dataset
from rt_recon.decode.bundle import DecoderBundle
from rt_recon.evaluate.report import write_report
from rt_recon.evaluate.session_eval import SessionEvaluation, evaluate_recording
from rt_recon.nodes.renderer import frames_dir
from rt_recon.render.embedded import resolve_model_path
from rt_recon.render.model import model_fingerprint

log = logging.getLogger(__name__)


@dataclass
class DemoResult:
    pipeline: PipelineResult
    frames_dir: Path
    evaluation: SessionEvaluation
    report: Path


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
    from rt_recon.apps.fit import fit_dataset
    from rt_recon.render.model import load_render_model

    log.info("fitting decoders on %s", dataset.root)
    model = load_render_model(model_path, with_text=True)
    bundle = fit_dataset(dataset, model, config.fit)
    return bundle.save(path)


def prepare(config: SessionConfig) -> tuple[SessionConfig, Dataset, Path]:
    """Session data, model and bundle ready; returns the node config, dataset and its path."""
    from rt_recon.simulators.session import ensure_session

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
            **PIPELINE_OVERRIDES,
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
    replay_args = [str(test.bold), "--events", str(test.events)]
    pipeline = run_pipeline(node_config, config_path, replay_args, test.n_trs)
    ids = sorted({int(e["stimulus_id"]) for e in read_events(test.events) if "stimulus_id" in e})
    stimuli = dict(zip(ids, dataset.stimulus_images(ids), strict=True))
    evaluation = evaluate_recording(pipeline.recording, stimuli)
    report = write_report(evaluation, pipeline.run_dir / "report")
    return DemoResult(pipeline, out_frames, evaluation, report)
