"""Cued imagery runs of a realistic synthetic session, cached beside it.

For each held-out vision run of the session's second day (``validation``,
``test``: :data:`~rt_recon.simulators.session.SESSION_2_ROLES`), one imagery
run on the same day (same head position, coil sensitivity and noise level)
cueing the *same pictures in the same order*, so that vision and imagery are
compared on identical pictures. The vision session itself (its volumes,
manifest and cache key, ``GENERATOR_VERSION``) is untouched: the imagery
runs live under ``ROOT/imagery/KEY/`` with their own manifest
(``imagery.json``), ``KEY`` a hash of the session, the design and the imagery
parameters, generated on first use.

A trial (:class:`CuedImageryDesign`, TRs of the session's ``tr_s``)::

    | cue: the picture's caption | imagine: blank screen | rest: blank |
      cue_trs (1)                  imagery_trs (stimulus_trs, 2)  rest_trs (1)

after ``lead_in_trs`` blank TRs, with ``lead_out_trs`` at the end. The
events follow the presenter's convention (docs/protocol.md, ``rt-recon
present --task imagery``): a ``cue`` row (no ``stimulus_id``; ``caption``:
the cue text, here the cued picture's caption; ``duration``: the cue) then an
``imagery`` row (``stimulus_id``: the cued picture, ``onset``: the start of
the imagining period, ``duration``: that period, ``caption``: the picture's
caption, ``stim_file``: the cued picture's file, though it is never shown).
By the trial rule an event with a ``stimulus_id`` is a trial, so each
imagery row is a decoder trial with its onset at the imagining period.

What the participant's brain does on those trials is
:class:`~rt_recon.simulators.participant.Imagery`; the cue word's own visual
response is not simulated (the cue TR drives no response: a *chosen*
simplification; a word is a small, low-contrast-energy patch next to a
picture, and its meaning is what the imagery period then evokes).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from rt_recon._safetensors import save_arrays
from rt_recon.config import SimulationSection
from rt_recon.dataset import Dataset
from rt_recon.errors import DataError
from rt_recon.simulators.brain import NoiseModel
from rt_recon.simulators.participant import Imagery, RealisticParticipant
from rt_recon.simulators.realistic_brain import RealisticBrain
from rt_recon.simulators.session import (
    EVENT_COLUMNS,
    SESSION_2_ROLES,
    simulation_settings,
    stimulus_filename,
)
from rt_recon.simulators.world import StimulusWorld

log = logging.getLogger(__name__)

IMAGERY_VERSION = 1
TASK = "imagery"
#: Folder under the session root holding one folder per imagery key.
IMAGERY_DIR = "imagery"
IMAGERY_MANIFEST = "imagery.json"


@dataclass(frozen=True)
class CuedImageryDesign:
    """Timing of a cued imagery trial, in TRs (*chosen*).

    ``cue_trs``: the word cue on screen (1 TR, 1.5 s at the demo's TR: time to
    read a caption's few words); ``imagery_trs``: the imagining period on a
    blank screen (None: the session's ``stimulus_trs``, so the imagined
    picture is "on" exactly as long as the seen one was); ``rest_trs``: blank
    after it, as the vision runs' rest between trials.
    """

    cue_trs: int = 1
    imagery_trs: int | None = None
    rest_trs: int = 1

    def __post_init__(self) -> None:
        if (
            self.cue_trs < 0
            or self.rest_trs < 0
            or (self.imagery_trs is not None and self.imagery_trs < 1)
        ):
            raise DataError(
                f"a cued imagery trial needs cue_trs >= 0, imagery_trs >= 1 (or None) and "
                f"rest_trs >= 0; found {self}"
            )

    def imagining_trs(self, sim: SimulationSection) -> int:
        return sim.stimulus_trs if self.imagery_trs is None else self.imagery_trs


@dataclass(frozen=True)
class ImagerySchedule:
    """One imagery run's timing: seconds from the run's start, and its length in TRs."""

    cue_onsets: np.ndarray
    cue_duration_s: float
    onsets: np.ndarray  # the imagining periods' starts (the trials' onsets)
    duration_s: float
    n_trs: int


def imagery_schedule(
    sim: SimulationSection, design: CuedImageryDesign, n_trials: int
) -> ImagerySchedule:
    """Cue and imagining onsets (s) of ``n_trials`` cued imagery trials, and the run length."""
    imagining = design.imagining_trs(sim)
    period = design.cue_trs + imagining + design.rest_trs
    cue_trs = sim.lead_in_trs + period * np.arange(n_trials)
    n_trs = sim.lead_in_trs + period * n_trials + sim.lead_out_trs
    return ImagerySchedule(
        cue_onsets=cue_trs * sim.tr_s,
        cue_duration_s=design.cue_trs * sim.tr_s,
        onsets=(cue_trs + design.cue_trs) * sim.tr_s,
        duration_s=imagining * sim.tr_s,
        n_trs=int(n_trs),
    )


def imagery_key(dataset: Dataset, design: CuedImageryDesign, imagery: Imagery) -> str:
    """A short hash naming a session's imagery runs by everything that shapes them."""
    payload = json.dumps(
        {
            "session": dataset.manifest["simulation"],
            "subject": dataset.subject,
            "design": dataclasses.asdict(design),
            "imagery": dataclasses.asdict(imagery),
            "version": IMAGERY_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _check_session(dataset: Dataset, sim: SimulationSection) -> None:
    if sim.participant != "realistic":
        raise DataError(
            f"imagery runs need the realistic participant (its Imagery parameters); found "
            f"participant {sim.participant!r}: set simulation.participant: realistic"
        )
    settings = simulation_settings(sim)
    if dataset.manifest.get("simulation") != settings:
        raise DataError(
            f"{dataset.root}: its manifest's simulation settings "
            f"{dataset.manifest.get('simulation')} are not the ones given ({settings}): "
            "imagery runs must be simulated with the session's own settings"
        )


def _write_events(
    path: Path, ids: list[int], schedule: ImagerySchedule, world: StimulusWorld
) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(EVENT_COLUMNS)
        for sid, cue, onset in zip(ids, schedule.cue_onsets, schedule.onsets, strict=True):
            caption = world.caption(sid)
            writer.writerow([f"{cue:.3f}", f"{schedule.cue_duration_s:.3f}", "cue", "n/a", "n/a",
                             caption])  # fmt: skip
            writer.writerow([f"{onset:.3f}", f"{schedule.duration_s:.3f}", TASK, sid,
                             stimulus_filename(sid), caption])  # fmt: skip


def generate_imagery_runs(
    dataset: Dataset,
    sim: SimulationSection,
    root: Path,
    design: CuedImageryDesign,
    imagery: Imagery,
) -> dict:
    """Simulate the imagery runs of ``dataset`` into ``root``; returns their manifest.

    Run paths in the manifest are relative to ``root``.
    """
    params = RealisticParticipant(imagery=imagery)
    world = StimulusWorld(seed=sim.seed, image_size=sim.image_size, version=sim.world_version)
    brain = RealisticBrain(
        world, grid=sim.grid, voxel_size_mm=sim.voxel_size_mm, seed=sim.seed, params=params
    )
    noise = NoiseModel.from_simulation(sim.snr, sim.motion)
    day = brain.scan_day(2)
    sub = f"sub-{dataset.subject}"
    func_dir = root / sub / f"ses-{day.session}" / "func"
    func_dir.mkdir(parents=True, exist_ok=True)
    (root / "groundtruth").mkdir(exist_ok=True)
    vision = [r for r in dataset.manifest["runs"] if r["role"] in SESSION_2_ROLES]
    if not vision:
        raise DataError(f"{dataset.root}: no {' or '.join(SESSION_2_ROLES)} run to pair with")
    runs = []
    for k, seen in enumerate(vision):
        ids = [int(i) for i in seen["stimulus_ids"]]
        schedule = imagery_schedule(sim, design, len(ids))
        rng = np.random.default_rng([sim.seed, 7, 3, k])  # this run's own noise and gains
        bold, truth = brain.simulate_run(
            np.array(ids),
            schedule.onsets,
            np.full(len(ids), schedule.duration_s),
            sim.tr_s,
            schedule.n_trs,
            noise,
            rng,
            day=day,
            imagery=np.ones(len(ids), dtype=bool),
        )
        run = f"{k + 1:02d}"
        stem = f"{sub}_ses-{day.session}_task-{TASK}_run-{run}"
        image = nib.Nifti1Image(bold, brain.affine)
        image.header.set_xyzt_units("mm", "sec")
        image.header.set_zooms((*image.header.get_zooms()[:3], sim.tr_s))
        nib.save(image, func_dir / f"{stem}_bold.nii.gz")
        (func_dir / f"{stem}_bold.json").write_text(
            json.dumps({"RepetitionTime": sim.tr_s, "TaskName": TASK}, indent=2)
        )
        _write_events(func_dir / f"{stem}_events.tsv", ids, schedule, world)
        save_arrays(truth, root / "groundtruth" / f"{sub}_task-{TASK}_run-{run}_truth.safetensors")
        runs.append(
            {
                "run": run,
                "role": seen["role"],
                "session": day.session,
                "task": TASK,
                "vision_run": seen["run"],
                "bold": str((func_dir / f"{stem}_bold.nii.gz").relative_to(root)),
                "events": str((func_dir / f"{stem}_events.tsv").relative_to(root)),
                "n_trs": schedule.n_trs,
                "tr": sim.tr_s,
                "stimulus_ids": ids,
            }
        )
        log.info("imagery run %s (%s, cues vision run %s)", run, seen["role"], seen["run"])
    return {
        "imagery_version": IMAGERY_VERSION,
        "design": dataclasses.asdict(design),
        "imagery": dataclasses.asdict(imagery),
        "runs": runs,
    }


def ensure_imagery_runs(
    dataset: Dataset,
    sim: SimulationSection,
    design: CuedImageryDesign | None = None,
    imagery: Imagery | None = None,
) -> Dataset:
    """The imagery runs of a realistic session, generated on first use.

    Returns a :class:`~rt_recon.dataset.Dataset` over the same root (masks and
    stimuli are the session's) whose runs are the imagery runs, each with the
    ``role`` of the vision run it pairs with (``vision_run`` in the manifest).
    """
    _check_session(dataset, sim)
    design = design or CuedImageryDesign()
    imagery = imagery or Imagery()
    key = imagery_key(dataset, design, imagery)
    folder = dataset.root / IMAGERY_DIR / key
    path = folder / IMAGERY_MANIFEST
    if not path.is_file():
        log.info("generating imagery runs in %s", folder)
        partial = folder.with_name(key + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        manifest = generate_imagery_runs(dataset, sim, partial, design, imagery)
        (partial / IMAGERY_MANIFEST).write_text(json.dumps(manifest, indent=2))
        partial.rename(folder)
    manifest = json.loads(path.read_text())
    prefix = folder.relative_to(dataset.root)
    runs = [
        {**r, "bold": str(prefix / r["bold"]), "events": str(prefix / r["events"])}
        for r in manifest["runs"]
    ]
    return Dataset(root=dataset.root, manifest={**dataset.manifest, "task": TASK, "runs": runs})
