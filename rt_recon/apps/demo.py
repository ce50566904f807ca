"""``rt-recon demo``: the whole pipeline on the embedded default, end to end.

1. generate (or reuse from the cache) the synthetic session;
2. fit the decoders for the render model (cached by session, model and fit settings);
3. start recorder, renderer, decoder and replay as separate processes
   (:mod:`rt_recon.apps.pipeline`);
4. collect every latents message and frame until the last TR is rendered;
5. stop every process, report per-stage latency, and score the session's
   recording: each trial's frame against the picture shown (two-way
   identification in the metric network's features, against same-background
   distractors, attributes, and in pixels, PixCorr, SSIM; each beside its
   baselines, docs/metrics.md), with an HTML report and a grid of true vs
   reconstructed pictures.

The two baselines only the world can draw are built here
(:func:`add_world_baselines`, used by ``rt-recon evaluate`` too): each scored
trial's true picture with another shape, everything else equal, and the
training picture nearest to the trial's decoded latents.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rt_recon.acquire.events import read_events
from rt_recon.apps.pipeline import PIPELINE_OVERRIDES, PipelineResult, run_pipeline
from rt_recon.config import SessionConfig
from rt_recon.dataset import Dataset
from rt_recon.decode.bundle import DecoderBundle
from rt_recon.decode.caption_bank import BANK_FILE
from rt_recon.errors import RtReconError
from rt_recon.evaluate.report import write_report
from rt_recon.evaluate.semantic import NEAREST_TRAINING, WRONG_SHAPE, nearest_by_latents
from rt_recon.evaluate.session_eval import SessionEvaluation, evaluate_recording
from rt_recon.nodes.renderer import frames_dir
from rt_recon.render.embedded import resolve_model, resolve_model_path, trained_world_version
from rt_recon.render.model import model_fingerprint

if TYPE_CHECKING:
    from rt_recon.simulators.world import StimulusWorld

log = logging.getLogger(__name__)


@dataclass
class DemoResult:
    pipeline: PipelineResult
    frames_dir: Path
    evaluation: SessionEvaluation
    report: Path


def ensure_bundle(dataset: Dataset, model_path: Path, config: SessionConfig) -> Path:
    """The cached decoder bundle for this dataset, model and fit settings; fitted on first use.

    The key holds the confidence null's settings too (:func:`rt_recon.decode.confidence.
    settings`), so a bundle cached before the fit stored a confidence (or with other
    settings) is refitted, never used without it. A recipe that snaps ``c`` takes the
    heads of the same fit without snapping (cached under that fit's key: the heads do not
    depend on the bank) and adds the render model's caption bank, cached under a key that
    holds the bank file's digest too."""
    from rt_recon.decode.confidence import settings as confidence_settings

    fit = config.fit.model_dump(mode="json")
    snap = bool(fit["recipe"].pop("snap_c", False))  # not in the heads' key: see above
    key = hashlib.sha256(
        json.dumps(
            {
                "dataset": dataset.root.name,
                "model": model_fingerprint(model_path),
                "fit": fit,
                "confidence": confidence_settings(),
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:12]
    path = config.paths.cache_dir / "bundles" / f"{key}.safetensors"
    bank_file = model_path / BANK_FILE
    snapped = None
    if snap:
        digest = (
            hashlib.sha256(bank_file.read_bytes()).hexdigest()[:8]
            if bank_file.is_file()
            else "none"
        )
        snapped = path.with_name(f"{key}-snap-{digest}.safetensors")
        if snapped.is_file():
            return snapped
    if snapped is None and path.is_file():
        return path
    from rt_recon.apps.fit import encode_bank, fit_dataset
    from rt_recon.render.model import load_render_model

    model = load_render_model(model_path, with_text=True)
    if not path.is_file():
        log.info("fitting decoders on %s", dataset.root)
        heads_fit = config.fit.model_copy(
            update={"recipe": config.fit.recipe.model_copy(update={"snap_c": False})}
        )
        fit_dataset(dataset, model, heads_fit).save(path)
    if snapped is None:
        return path
    return DecoderBundle.load(path).with_caption_bank(encode_bank(model)).save(snapped)


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
    add_world_baselines(evaluation, dataset, model_path=node_config.renderer.model)
    report = write_report(evaluation, pipeline.run_dir / "report")
    return DemoResult(pipeline, out_frames, evaluation, report)


#: Seed of the wrong shape each trial's true picture is drawn with.
WRONG_SHAPE_SEED = 0


def wrong_shape_pictures(
    world: StimulusWorld, stimulus_ids: list[int], seed: int = WRONG_SHAPE_SEED
) -> np.ndarray:
    """Each stimulus drawn with another shape (drawn at random, seeded, from the world's
    others), everything else equal: ``(n, H, W, 3)`` uint8 (the blank stays blank)."""
    from rt_recon.simulators.world import draw

    rng = np.random.default_rng(seed)
    shapes = list(dict(world.axes)["shape"])
    pictures = []
    for sid in stimulus_ids:
        if int(sid) < 0:  # the blank screen has no shape to change
            pictures.append(world.image(int(sid)))
            continue
        stim = world.stimulus(int(sid))
        others = [s for s in shapes if s != stim.shape]
        wrong = dataclasses.replace(stim, shape=others[int(rng.integers(len(others)))])
        pictures.append(draw(wrong, world.image_size))
    return np.stack(pictures)


def nearest_training_pictures(
    dataset: Dataset, model_path: Path, decoded: dict[str, np.ndarray]
) -> np.ndarray:
    """For each trial's decoded latents, the training run picture whose encoded ``[z, c]``
    (the decoders' targets, from the render model) is nearest by correlation."""
    from rt_recon.apps.fit import training_runs
    from rt_recon.render.model import load_render_model
    from rt_recon.render.targets import encode_captions, encode_images

    ids = sorted(
        {
            int(e["stimulus_id"])
            for run in training_runs(dataset)
            for e in read_events(run.events)
            if "stimulus_id" in e and int(e["stimulus_id"]) >= 0
        }
    )
    pictures = dataset.stimulus_images(ids)
    model = load_render_model(model_path, with_text=True)
    bank = {"z": encode_images(model, pictures), "c": encode_captions(model, dataset.captions(ids))}
    return pictures[nearest_by_latents(decoded, bank)]


def warn_if_test_pictures_were_seen(model_dir: Path, session_version: int) -> None:
    """Log a warning when the render model was trained on another world version: version 2
    holds out other attribute combinations than version 1, so a model of version 2 has seen
    most of version 1's held-out (test) pictures."""
    trained = trained_world_version(model_dir)
    if trained is not None and trained != session_version:
        log.warning(
            "the render model %s was trained on world version %d and this session shows "
            "version %d: that world holds out other pictures, so most of this session's test "
            "pictures were among the model's training pictures and its accuracy here is not a "
            "held-out figure (train a model on version %d: python -m training.train_embedded "
            "--world-version %d)",
            model_dir,
            trained,
            session_version,
            session_version,
            session_version,
        )


def add_world_baselines(
    evaluation: SessionEvaluation, dataset: Dataset | None, model_path: str | Path | None
) -> None:
    """Score the world-drawn baselines of ``evaluation``, when ``dataset`` is a synthetic
    session (its manifest's ``simulation``); each one that cannot be built is stated as not
    available, with why (None: scored against a stimulus folder). ``model_path``: the render
    model the decoders target (a path or ``embedded``)."""
    sim = None if dataset is None else dataset.manifest.get("simulation")
    if not isinstance(sim, dict):
        where = "a stimulus folder" if dataset is None else f"{dataset.root}"
        why = f"{where} is no synthetic session: there is no world to draw from"
        evaluation.add_world_baselines({}, dict.fromkeys((WRONG_SHAPE, NEAREST_TRAINING), why))
        return
    from rt_recon.evaluate.metric_net import load_metric_net
    from rt_recon.simulators.world import StimulusWorld

    world = StimulusWorld(
        seed=int(sim["seed"]),
        image_size=int(sim["image_size"]),
        version=int(sim.get("world_version", 1)),
    )
    trained = load_metric_net().trained_on.get("world_version")
    # version 1's pictures are version 2's on plain backgrounds: a newer net knows them
    if trained is not None and int(trained) < world.version:
        log.warning(
            "the metric network was trained on world version %s, this session shows version "
            "%d: its attribute readings of pictures outside its world are unreliable",
            trained,
            world.version,
        )
    pictures = {WRONG_SHAPE: wrong_shape_pictures(world, evaluation.scored_stimulus_ids)}
    missing = {}
    if evaluation.decoded is None:
        missing[NEAREST_TRAINING] = "the recording holds no decoded latents for its frames"
    elif model_path is None:
        missing[NEAREST_TRAINING] = "no render model to encode the training pictures with"
    else:
        try:
            path = resolve_model(model_path)
            warn_if_test_pictures_were_seen(path, world.version)
            pictures[NEAREST_TRAINING] = nearest_training_pictures(
                dataset, path, evaluation.decoded
            )
        except (RtReconError, OSError) as exc:
            missing[NEAREST_TRAINING] = f"the render model {model_path} could not be used: {exc}"
    for name, why in missing.items():
        log.warning("baseline %r not available: %s", name, why)
    evaluation.add_world_baselines(pictures, missing)
