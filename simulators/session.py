"""Generate a synthetic fMRI session on disk, BIDS-like, with its ground truth beside it.

Layout under the session root (the :mod:`rt_recon.dataset` format)::

    dataset.json                       manifest: config, runs (train/test), files
    dataset_description.json           BIDS: the session is a BIDS dataset as well
    stimuli/stim-00042.png, stimuli.tsv
    sub-01/func/sub-01_task-vision_run-01_bold.nii.gz   (+ _bold.json, _events.tsv with
                                       stimulus_id, stim_file and caption per trial)
    sub-01/masks/sub-01_desc-{brain,ev,hv}_mask.nii.gz
    groundtruth/sub-01_run-01_truth.safetensors, brain.safetensors

The ``easy`` participant (:class:`~rt_recon.simulators.brain.SyntheticBrain`):
runs 1..n_train_runs are training runs; the last run is the held-out test
run; all from one session.

The ``realistic`` participant (:class:`~rt_recon.simulators.realistic_brain.
RealisticBrain`) has two sessions, BIDS ``ses-01`` and ``ses-02``
(``sub-01/ses-NN/func/sub-01_ses-NN_task-vision_run-NN_bold.nii.gz``): the
training runs on the first; a ``validation`` run and the ``test`` run on the
second, with the head repositioned, its own noise, drift and motion draws.
Its ``sub-01/masks/`` ROI masks are atlas-like (what the decoder fits on);
the oracle ROIs are under ``groundtruth/`` only (``oracle_masks`` in the
manifest), for evaluating the simulator.

Every trial shows one picture for ``stimulus_trs`` TRs followed by one blank
TR; runs begin and end with blank TRs. Test and validation runs show only the
world's held-out pictures, which neither the training runs nor the embedded
render model ever saw.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

from rt_recon._safetensors import save_arrays
from rt_recon.config import SimulationSection
from rt_recon.dataset import MANIFEST, Dataset
from rt_recon.errors import DataError
from rt_recon.simulators.atlas_masks import mask_disagreement
from rt_recon.simulators.brain import NoiseModel, SyntheticBrain
from rt_recon.simulators.realistic_brain import ROIS, RealisticBrain, ScanDay
from rt_recon.simulators.world import BLANK_ID, StimulusWorld

log = logging.getLogger(__name__)

GENERATOR_VERSION = 3  # 2: fixed-slot captions, head motion, partial-volume edges;
#                        3: held-out runs show only the world's held-out pictures
TASK = "vision"
REST_TRS_BETWEEN_TRIALS = 1
#: The realistic participant's runs on its second session, in order.
SESSION_2_ROLES = ("validation", "test")


#: The columns of a run's events.tsv: BIDS ``stim_file`` names the picture under ``stimuli/``
#: (so the session is a BIDS dataset too: ``rt-recon fit ROOT --train-runs 1 2`` reads it).
#: Added after generator version 3 without a new version: volumes, masks and manifest are
#: unchanged, and a session cached before (no ``stim_file``) is read through its
#: ``stimuli/stimuli.tsv``.
EVENT_COLUMNS = ("onset", "duration", "trial_type", "stimulus_id", "stim_file", "caption")


def stimulus_filename(stimulus_id: int) -> str:
    return "stim-blank.png" if stimulus_id == BLANK_ID else f"stim-{stimulus_id:05d}.png"


def simulation_settings(sim: SimulationSection) -> dict:
    """The settings that shape a session, as the manifest and the cache key record them.

    By alias (``tr_s`` as ``tr``), without ``participant`` when it is ``easy`` and
    without ``world_version`` when it is 1: the payload, and so the key and manifest, of
    sessions generated before participant presets and world versions existed.
    """
    settings = sim.model_dump(mode="json", by_alias=True)
    if settings.get("participant") == "easy":
        del settings["participant"]
    if settings.get("world_version") == 1:  # as before worlds had versions
        del settings["world_version"]
    return settings


def session_key(sim: SimulationSection, subject: str) -> str:
    """A short hash naming a generated session by everything that shapes it."""
    payload = json.dumps(
        {"sim": simulation_settings(sim), "subject": subject, "version": GENERATOR_VERSION},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def run_schedule(sim: SimulationSection, n_trials: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Onsets (s), durations (s) and the run length in TRs for ``n_trials`` trials."""
    period = sim.stimulus_trs + REST_TRS_BETWEEN_TRIALS
    onset_trs = sim.lead_in_trs + period * np.arange(n_trials)
    n_trs = sim.lead_in_trs + period * n_trials + sim.lead_out_trs
    return onset_trs * sim.tr_s, np.full(n_trials, sim.stimulus_trs * sim.tr_s), int(n_trs)


def build_brain(sim: SimulationSection) -> SyntheticBrain:
    """The synthetic subject of ``sim.participant`` (its world, geometry and tuning)."""
    world = StimulusWorld(seed=sim.seed, image_size=sim.image_size, version=sim.world_version)
    brain_class = RealisticBrain if sim.participant == "realistic" else SyntheticBrain
    return brain_class(world, grid=sim.grid, voxel_size_mm=sim.voxel_size_mm, seed=sim.seed)


@dataclass(frozen=True)
class _PlannedRun:
    """One run to simulate: its role, its session and the random draws it takes."""

    role: str
    session: str | None  # None: the easy layout, no ``ses-`` level
    rng: np.random.Generator
    day: ScanDay | None = None


def _easy_plan(sim: SimulationSection, rng: np.random.Generator) -> list[_PlannedRun]:
    roles = ["train"] * sim.n_train_runs + ["test"]
    return [_PlannedRun(role, None, rng) for role in roles]


def _realistic_plan(
    sim: SimulationSection, brain: RealisticBrain, rng: np.random.Generator
) -> list[_PlannedRun]:
    first, second = brain.scan_day(1), brain.scan_day(2)
    second_rng = np.random.default_rng([sim.seed, 7, 2])  # another day's noise
    train = [_PlannedRun("train", first.session, rng, first) for _ in range(sim.n_train_runs)]
    held_out = [_PlannedRun(role, second.session, second_rng, second) for role in SESSION_2_ROLES]
    return train + held_out


def _draw_pictures(
    world: StimulusWorld, roles: list[str], per_run: int, rng: np.random.Generator
) -> np.ndarray:
    """Each run's ``per_run`` pictures, run after run, none twice: training runs from the
    world's training pictures, held-out runs (validation, test) from its held-out ones
    (:meth:`~rt_recon.simulators.world.StimulusWorld.holdout_ids`), which no model of this
    project trains on."""
    held_out = [role != "train" for role in roles]
    pools = {False: world.training_ids(), True: world.holdout_ids()}
    draws = {}
    for kind, pool in pools.items():
        needed = sum(h == kind for h in held_out) * per_run
        if needed > len(pool):
            raise DataError(
                f"{needed} {'held-out' if kind else 'training'} pictures needed "
                f"({per_run} per run), the world has {len(pool)}"
            )
        draws[kind] = iter(rng.choice(pool, size=needed, replace=False))
    return np.array([next(draws[h]) for h in held_out for _ in range(per_run)])


def generate_session(sim: SimulationSection, root: str | Path, subject: str = "01") -> Dataset:
    """Generate (or overwrite) a synthetic session of ``sim.participant`` under ``root``."""
    root = Path(root)
    rng = np.random.default_rng([sim.seed, 7])
    brain = build_brain(sim)
    world = brain.world
    realistic = isinstance(brain, RealisticBrain)
    noise = NoiseModel.from_simulation(sim.snr, sim.motion)
    plan = _realistic_plan(sim, brain, rng) if realistic else _easy_plan(sim, rng)
    chosen = _draw_pictures(world, [p.role for p in plan], sim.trials_per_run, rng)
    sub = f"sub-{subject}"
    mask_dir = root / sub / "masks"
    for d in (mask_dir, root / "stimuli", root / "groundtruth"):
        d.mkdir(parents=True, exist_ok=True)

    decoder_masks = brain.decoder_masks if realistic else brain.roi_masks
    masks = {}
    for name, mask in (("brain", brain.brain_mask), *decoder_masks.items()):
        rel = f"{sub}/masks/{sub}_desc-{name}_mask.nii.gz"
        nib.save(nib.Nifti1Image(mask.astype(np.uint8), brain.affine), root / rel)
        masks[name] = rel

    runs = []
    for r, planned in enumerate(plan):
        run = f"{r + 1:02d}"
        ids = chosen[r * sim.trials_per_run : (r + 1) * sim.trials_per_run]
        onsets, durations, n_trs = run_schedule(sim, len(ids))
        args = (ids, onsets, durations, sim.tr_s, n_trs, noise, planned.rng)
        if planned.day is None:
            bold, truth = brain.simulate_run(*args)
        else:
            bold, truth = brain.simulate_run(*args, day=planned.day)
        if planned.session is None:
            func_dir, stem = root / sub / "func", f"{sub}_task-{TASK}_run-{run}"
        else:
            ses = f"ses-{planned.session}"
            func_dir, stem = root / sub / ses / "func", f"{sub}_{ses}_task-{TASK}_run-{run}"
        func_dir.mkdir(parents=True, exist_ok=True)
        files = _write_run(
            func_dir, stem, bold, brain.affine, sim.tr_s, ids, onsets, durations, world
        )
        save_arrays(truth, root / "groundtruth" / f"{sub}_run-{run}_truth.safetensors")
        entry = {
            "run": run,
            "role": planned.role,
            **{k: str(v.relative_to(root)) for k, v in files.items() if k != "sidecar"},
            "n_trs": n_trs,
            "tr": sim.tr_s,
            "stimulus_ids": [int(i) for i in ids],
        }
        if planned.session is not None:
            entry["session"] = planned.session
        runs.append(entry)
        log.info("run %s (%s): %d TRs, %d trials", run, planned.role, n_trs, len(ids))

    _write_stimuli(root, world, [int(i) for i in chosen])
    truth_arrays = {
        "prf_centres": brain.prf_centres.astype(np.float32),
        "prf_sizes": brain.prf_sizes.astype(np.float32),
        "ev_index": brain.ev_index.astype(np.int64),
        "hv_index": brain.hv_index.astype(np.int64),
        "hv_tuning": brain.hv_tuning.astype(np.float32),
    }
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "subject": subject,
        "task": TASK,
        "simulation": simulation_settings(sim),
        "noise": noise.__dict__,
        "masks": masks,
        "runs": runs,
    }
    if realistic:
        truth_arrays.update(_realistic_truth(brain))
        manifest.update(_realistic_manifest(root, sub, brain, plan))
    save_arrays(truth_arrays, str(root / "groundtruth" / "brain.safetensors"))
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "rt_recon synthetic session", "BIDSVersion": "1.9.0"}, indent=2)
    )
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return Dataset(root=root, manifest=manifest)


def _realistic_truth(brain: RealisticBrain) -> dict[str, np.ndarray]:
    """The realistic participant's hidden parameters, for evaluating the simulator."""
    out = {"css_exponents": brain.css_exponents.astype(np.float32)}
    for roi in ROIS:
        out[f"hrf_peak_shift_{roi}"] = brain.hrf_shifts[roi].astype(np.float32)
        out[f"voxel_gain_{roi}"] = brain.voxel_gains[roi].astype(np.float32)
        out[f"decoder_{roi}_index"] = brain.decoder_index[roi].astype(np.int64)
    out["shared_noise_loadings"] = brain.shared.loadings.astype(np.float32)
    return out


def _realistic_manifest(
    root: Path, sub: str, brain: RealisticBrain, plan: list[_PlannedRun]
) -> dict:
    """Oracle masks (written under groundtruth/), sessions and mask errors for the manifest."""
    oracle = {}
    for roi in ROIS:
        rel = f"groundtruth/{sub}_desc-{roi}oracle_mask.nii.gz"
        nib.save(nib.Nifti1Image(brain.roi_masks[roi].astype(np.uint8), brain.affine), root / rel)
        oracle[roi] = rel
    days = {p.session: p.day for p in plan if p.day is not None}
    return {
        "participant": "realistic",
        "oracle_masks": oracle,
        "mask_errors": {
            roi: {
                **mask_disagreement(brain.decoder_masks[roi], brain.roi_masks[roi]),
                "registration_offset_voxels": [float(v) for v in brain.mask_offsets[roi]],
            }
            for roi in ROIS
        },
        "sessions": {
            session: {
                "head_offset": [float(v) for v in day.head_offset],
                "head_offset_units": "tx, ty, tz mm; rotations about x, y, z rad",
                "noise_scale": day.noise_scale,
            }
            for session, day in days.items()
        },
    }


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
        writer.writerow(EVENT_COLUMNS)
        for sid, onset, duration in zip(ids, onsets, durations, strict=True):
            picture = stimulus_filename(int(sid))  # BIDS stim_file: relative to stimuli/
            row = [f"{onset:.3f}", f"{duration:.3f}", "stimulus", int(sid), picture]
            writer.writerow([*row, world.caption(int(sid))])
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
