"""Generate a synthetic fMRI session on disk, BIDS-like, with its ground truth beside it.

Layout under the session root (the :mod:`rt_recon.dataset` format)::

    dataset.json                       manifest: config, runs (train/test), files
    dataset_description.json
    stimuli/stim-00042.png, stimuli.tsv
    sub-01/func/sub-01_task-vision_run-01_bold.nii.gz   (+ _bold.json, _events.tsv)
    sub-01/masks/sub-01_desc-{brain,ev,hv}_mask.nii.gz
    groundtruth/sub-01_run-01_truth.safetensors, brain.safetensors

Runs 1..n_train_runs are training runs; the last run is the held-out test
run, whose pictures never appear in training. Every trial shows one picture
for ``stimulus_trs`` TRs followed by one blank TR; runs begin and end with
blank TRs.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

from rt_recon._safetensors import save_arrays
from rt_recon.config import SimulationSection
from rt_recon.dataset import MANIFEST, Dataset
from rt_recon.simulators.brain import NoiseModel, SyntheticBrain
from rt_recon.simulators.world import BLANK_ID, StimulusWorld

log = logging.getLogger(__name__)

GENERATOR_VERSION = 2  # 2: fixed-slot captions, head motion, partial-volume edges
TASK = "vision"
REST_TRS_BETWEEN_TRIALS = 1


def stimulus_filename(stimulus_id: int) -> str:
    return "stim-blank.png" if stimulus_id == BLANK_ID else f"stim-{stimulus_id:05d}.png"


def session_key(sim: SimulationSection, subject: str) -> str:
    """A short hash naming a generated session by everything that shapes it."""
    # by alias (``tr_s`` as ``tr``): the payload, and so the key, of earlier versions
    settings = sim.model_dump(mode="json", by_alias=True)
    payload = json.dumps(
        {"sim": settings, "subject": subject, "version": GENERATOR_VERSION}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def run_schedule(sim: SimulationSection, n_trials: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Onsets (s), durations (s) and the run length in TRs for ``n_trials`` trials."""
    period = sim.stimulus_trs + REST_TRS_BETWEEN_TRIALS
    onset_trs = sim.lead_in_trs + period * np.arange(n_trials)
    n_trs = sim.lead_in_trs + period * n_trials + sim.lead_out_trs
    return onset_trs * sim.tr_s, np.full(n_trials, sim.stimulus_trs * sim.tr_s), int(n_trs)


def generate_session(sim: SimulationSection, root: str | Path, subject: str = "01") -> Dataset:
    """Generate (or overwrite) a synthetic session under ``root``."""
    root = Path(root)
    rng = np.random.default_rng([sim.seed, 7])
    world = StimulusWorld(seed=sim.seed, image_size=sim.image_size)
    brain = SyntheticBrain(world, grid=sim.grid, voxel_size_mm=sim.voxel_size_mm, seed=sim.seed)
    noise = NoiseModel.from_simulation(sim.snr, sim.motion)
    n_runs = sim.n_train_runs + 1
    chosen = rng.choice(world.n_stimuli, size=n_runs * sim.trials_per_run, replace=False)
    sub = f"sub-{subject}"
    func_dir, mask_dir = root / sub / "func", root / sub / "masks"
    for d in (func_dir, mask_dir, root / "stimuli", root / "groundtruth"):
        d.mkdir(parents=True, exist_ok=True)

    masks = {}
    for name, mask in (("brain", brain.brain_mask), *brain.roi_masks.items()):
        rel = f"{sub}/masks/{sub}_desc-{name}_mask.nii.gz"
        nib.save(nib.Nifti1Image(mask.astype(np.uint8), brain.affine), root / rel)
        masks[name] = rel

    runs = []
    for r in range(n_runs):
        run = f"{r + 1:02d}"
        role = "test" if r == n_runs - 1 else "train"
        ids = chosen[r * sim.trials_per_run : (r + 1) * sim.trials_per_run]
        onsets, durations, n_trs = run_schedule(sim, len(ids))
        bold, truth = brain.simulate_run(ids, onsets, durations, sim.tr_s, n_trs, noise, rng)
        stem = f"{sub}_task-{TASK}_run-{run}"
        files = _write_run(
            func_dir, stem, bold, brain.affine, sim.tr_s, ids, onsets, durations, world
        )
        save_arrays(truth, root / "groundtruth" / f"{sub}_run-{run}_truth.safetensors")
        runs.append(
            {
                "run": run,
                "role": role,
                **{k: str(v.relative_to(root)) for k, v in files.items() if k != "sidecar"},
                "n_trs": n_trs,
                "tr": sim.tr_s,
                "stimulus_ids": [int(i) for i in ids],
            }
        )
        log.info("run %s (%s): %d TRs, %d trials", run, role, n_trs, len(ids))

    _write_stimuli(root, world, [int(i) for i in chosen])
    save_arrays(
        {
            "prf_centres": brain.prf_centres.astype(np.float32),
            "prf_sizes": brain.prf_sizes.astype(np.float32),
            "ev_index": brain.ev_index.astype(np.int64),
            "hv_index": brain.hv_index.astype(np.int64),
            "hv_tuning": brain.hv_tuning.astype(np.float32),
        },
        str(root / "groundtruth" / "brain.safetensors"),
    )
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "subject": subject,
        "task": TASK,
        "simulation": sim.model_dump(mode="json", by_alias=True),
        "noise": noise.__dict__,
        "masks": masks,
        "runs": runs,
    }
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "rt_recon synthetic session", "BIDSVersion": "1.9.0"}, indent=2)
    )
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return Dataset(root=root, manifest=manifest)


def _write_run(
    func_dir: Path,
    stem: str,
    bold: np.ndarray,
    affine: np.ndarray,
    tr_s: float,
    ids: np.ndarray,
    onsets: np.ndarray,
    durations: np.ndarray,
    world: StimulusWorld,
) -> dict[str, Path]:
    image = nib.Nifti1Image(bold, affine)
    image.header.set_xyzt_units("mm", "sec")
    image.header.set_zooms((*image.header.get_zooms()[:3], tr_s))
    paths = {
        "bold": func_dir / f"{stem}_bold.nii.gz",
        "events": func_dir / f"{stem}_events.tsv",
        "sidecar": func_dir / f"{stem}_bold.json",
    }
    nib.save(image, paths["bold"])
    paths["sidecar"].write_text(json.dumps({"RepetitionTime": tr_s, "TaskName": TASK}, indent=2))
    with paths["events"].open("w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(["onset", "duration", "trial_type", "stimulus_id", "caption"])
        for sid, onset, duration in zip(ids, onsets, durations, strict=True):
            writer.writerow(
                [f"{onset:.3f}", f"{duration:.3f}", "stimulus", int(sid), world.caption(int(sid))]
            )
    return paths


def _write_stimuli(root: Path, world: StimulusWorld, ids: list[int]) -> None:
    with (root / "stimuli" / "stimuli.tsv").open("w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(["stimulus_id", "caption", "file"])
        for sid in [BLANK_ID, *ids]:
            name = stimulus_filename(sid)
            Image.fromarray(world.image(sid)).save(root / "stimuli" / name)
            writer.writerow([sid, world.caption(sid), name])


def ensure_session(sim: SimulationSection, cache_dir: Path, subject: str = "01") -> Dataset:
    """The cached session for ``sim``, generated on first use."""
    root = Path(cache_dir) / "sessions" / session_key(sim, subject)
    if (root / MANIFEST).is_file():
        return Dataset.open(root)
    log.info("generating synthetic session in %s", root)
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    dataset = generate_session(sim, tmp, subject)
    tmp.rename(root)
    return Dataset(root=root, manifest=dataset.manifest)
