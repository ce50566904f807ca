"""What a fit needs, whatever it was read from: runs, stimuli and masks, checked once.

:class:`FitInputs` is the neutral description :func:`rt_recon.apps.fit.fit_from_inputs` fits a
bundle from:

* training runs and validation runs (:class:`FitRun`: a name for messages and a
  :class:`~rt_recon.acquire.nifti.RecordedRun` with its events);
* the stimuli by id (:class:`Stimulus`: picture file and caption);
* the user's masks by name (files on any grid: :func:`~rt_recon.acquire.masks.load_mask`
  resamples them onto the runs' grid);
* where it all came from (``origin``, for messages).

Its sources each have a constructor: :meth:`FitInputs.from_dataset` (an rt_recon dataset
with its ``dataset.json`` manifest), :func:`rt_recon.apps.fit_bids.bids_inputs` (a BIDS
dataset), :func:`rt_recon.apps.fit_recorded.recording_inputs` (the recorder's HDF5 files)
and :func:`rt_recon.apps.fit_recorded.series_inputs` (scanner series with events files).
:meth:`FitInputs.check` raises every data error a fit would meet, naming the file, before
a render model is loaded.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from rt_recon.acquire.nifti import RecordedRun, load_nifti_run
from rt_recon.dataset import MANIFEST, Dataset, read_picture
from rt_recon.decode.fit import MIN_RUNS, TrainingRun
from rt_recon.errors import DataError
from rt_recon.protocol import is_trial_event, onset_tr

log = logging.getLogger(__name__)

#: Affines of two runs closer than this (mm) are one grid.
SAME_GRID_MM = 1e-3
#: Slack (s) on "an event ends within its run": onsets are written to the millisecond.
_EVENT_SLACK_S = 1e-3


@dataclass(frozen=True)
class Stimulus:
    """One picture: its file and caption (None where the source has none)."""

    picture: Path
    caption: str | None = None


@dataclass
class FitRun:
    """One run: ``name`` (its file, as messages name it), the run with its events, and the
    file its events came from (None: they came with the run, as a recording's markers)."""

    name: str
    run: RecordedRun
    events_file: Path | None = None

    @property
    def events_source(self) -> str:
        return str(self.events_file) if self.events_file is not None else self.name

    def training_run(self) -> TrainingRun:
        """As the fit reads it: volume ``t`` at ``t * tr_s`` seconds.

        A run whose volumes carry acquisition times (a recording joined from segments
        around a recorder restart, a series with a missing volume) has each trial moved
        onto the volume nearest its onset (the protocol's trial rule 2, on those times),
        so a gap in the volumes does not shift the trials after it.
        """
        run = self.run
        events = run.events
        if run.times is not None and len(run.times) == len(run.volumes):
            times = [float(t) for t in run.times]
            rows = list(range(len(times)))
            events = [
                {**e, "onset": onset_tr(float(e["onset"]), rows, times) * run.tr_s}
                if is_trial_event(e)
                else e
                for e in events
            ]
        return TrainingRun(run.volumes, events, run.tr_s)


@dataclass
class FitInputs:
    """Everything a fit reads (see the module doc).

    Attributes:
        origin: where it came from, e.g. ``"BIDS dataset /data/ds (sub-01, task vision)"``.
        train: the runs fitted on (at least :data:`~rt_recon.decode.fit.MIN_RUNS`).
        validation: runs held out (checked like the training runs, not fitted on).
        stimuli: ``{stimulus_id: Stimulus}``.
        masks: ``{name: mask file}`` (``ev``, ``hv``, ``brain``, ...).
        captions_from: where captions are looked for, for the "no caption" error.
        stimuli_from: where the stimuli were listed (default: ``origin``), for messages.
        too_few: the "too few training runs" message's tail (how to give more runs).
    """

    origin: str
    train: list[FitRun]
    validation: list[FitRun] = field(default_factory=list)
    stimuli: dict[int, Stimulus] = field(default_factory=dict)
    masks: dict[str, Path] = field(default_factory=dict)
    captions_from: str = "the stimulus table"
    stimuli_from: str = ""
    too_few: str = "give another training run"

    # ----------------------------------------------------------------- sources

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> FitInputs:
        """An rt_recon dataset: its ``train`` and ``validation`` runs, ``stimuli/stimuli.tsv``
        and the masks its manifest lists."""
        check_run_count(
            f"{dataset.root}", len(_runs_with_role(dataset, "train")),
            f"role 'train' in {MANIFEST}", "add another training run",
        )  # fmt: skip
        load = lambda files: FitRun(  # noqa: E731
            str(files.bold), load_nifti_run(files.bold, files.events), files.events
        )
        stimuli = {sid: Stimulus(path, text) for sid, (text, path) in dataset.stimuli().items()}
        masks = {name: dataset.root / rel for name, rel in dataset.manifest["masks"].items()}
        return cls(
            origin=f"dataset {dataset.root}",
            train=[load(f) for f in _runs_with_role(dataset, "train")],
            validation=[load(f) for f in _runs_with_role(dataset, "validation")],
            stimuli=stimuli,
            masks=masks,
            captions_from=f"{dataset.root / 'stimuli' / 'stimuli.tsv'} (column caption)",
        )

    def with_masks(self, masks: Mapping[str, str | Path]) -> FitInputs:
        """These inputs with ``masks`` added (a name already there is replaced)."""
        return replace(self, masks={**self.masks, **{k: Path(v) for k, v in masks.items()}})

    # ------------------------------------------------------------------ reading

    def stimulus_ids(self) -> np.ndarray:
        """``(n,)`` the stimulus ids of the training runs' trials, ascending."""
        ids = {int(e["stimulus_id"]) for r in self.train for e in r.run.events if is_trial_event(e)}
        return np.array(sorted(ids), dtype=np.int64)

    def images(self, ids: Iterable[int]) -> np.ndarray:
        """``(n, H, W, 3)`` uint8 pictures of ``ids``."""
        return np.stack([read_picture(self.stimuli[int(i)].picture) for i in ids])

    def captions(self, ids: Iterable[int]) -> list[str]:
        return [str(self.stimuli[int(i)].caption) for i in ids]

    @property
    def grid(self) -> tuple[tuple[int, int, int], np.ndarray]:
        """``(shape, affine)`` of the runs (one grid: :meth:`check`)."""
        first = self.train[0].run
        return first.shape, first.affine

    # ------------------------------------------------------------------- checks

    def check(self) -> None:
        """Raise a :class:`DataError` naming the file for the first problem a fit would meet:
        too few training runs, runs on different grids, events beyond a run's end, a trial's
        picture unknown or missing, a training picture without a caption."""
        check_run_count(self.origin, len(self.train), "training runs given", self.too_few)
        runs = [*self.train, *self.validation]
        first = runs[0]
        for other in runs[1:]:
            _check_same_grid(first, other)
        for r in runs:
            _check_events_within(r)
            _check_pictures(r, self.stimuli, self.stimuli_from or self.origin)
        for r in self.train:
            if not any(is_trial_event(e) for e in r.run.events):
                raise DataError(
                    f"{r.events_source}: no trials in training run {r.name} (expected events "
                    "with a stimulus_id: docs/protocol.md section 2)"
                )
        missing = [i for i in self.stimulus_ids() if not self.stimuli[int(i)].caption]
        if missing:
            sid = int(missing[0])
            raise DataError(
                f"{self.origin}: no caption for {len(missing)} stimuli, e.g. id {sid} "
                f"({self.stimuli[sid].picture}): the render model's text encoder needs one per "
                f"picture; captions are read from {self.captions_from}"
            )


def check_run_count(where: str, found: int, what: str, remedy: str) -> None:
    """A :class:`DataError` unless ``found`` >= :data:`~rt_recon.decode.fit.MIN_RUNS`."""
    if found < MIN_RUNS:
        raise DataError(
            f"{where}: fitting needs at least {MIN_RUNS} training runs ({what}), found {found}: "
            f"the ridge penalties are chosen by leave-one-run-out cross-validation; {remedy}"
        )


def _runs_with_role(dataset: Dataset, role: str) -> list:
    return [r for r in dataset.runs() if r.role == role]


def _check_same_grid(first: FitRun, other: FitRun) -> None:
    a, b = first.run, other.run
    if tuple(a.shape) != tuple(b.shape):
        raise DataError(
            f"runs on different grids: {first.name} has shape {tuple(a.shape)}, {other.name} has "
            f"{tuple(b.shape)}; a bundle fits one grid: fit runs of one acquisition geometry"
        )
    offset = float(np.abs(np.asarray(a.affine) - np.asarray(b.affine)).max())
    if offset > SAME_GRID_MM:
        raise DataError(
            f"runs on different grids: {first.name} and {other.name} both have shape "
            f"{tuple(a.shape)} but their affines differ by up to {offset:.3g} mm; a bundle "
            "fits one grid: fit runs of one acquisition geometry"
        )


def _check_events_within(r: FitRun) -> None:
    run = r.run
    n_trs = len(run.volumes)
    end_s = (float(run.times[-1]) + run.tr_s) if run.times is not None else n_trs * run.tr_s
    for i, event in enumerate(run.events):
        stop = float(event["onset"]) + float(event.get("duration") or 0.0)
        if stop > end_s + _EVENT_SLACK_S:
            raise DataError(
                f"{r.events_source}: event {i + 1} (onset {float(event['onset']):g} s, duration "
                f"{float(event.get('duration') or 0.0):g} s) ends at {stop:g} s, after the end "
                f"of its run {r.name} ({n_trs} volumes x TR {run.tr_s:g} s = {end_s:g} s): "
                "are these the run's events?"
            )


def _check_pictures(r: FitRun, stimuli: Mapping[int, Stimulus], origin: str) -> None:
    for event in r.run.events:
        if not is_trial_event(event):
            continue
        sid = int(event["stimulus_id"])
        stimulus = stimuli.get(sid)
        if stimulus is None:
            raise DataError(
                f"{r.events_source}: stimulus {sid} is not among the {len(stimuli)} stimuli of "
                f"{origin}"
            )
        if not stimulus.picture.is_file():
            raise DataError(
                f"{r.events_source}: the picture of stimulus {sid}, {stimulus.picture}, is missing"
            )


# ------------------------------------------------------------ stimulus tables

#: Column names a stimulus table may use (the first found is read).
ID_COLUMNS = ("stimulus_id", "id")
FILE_COLUMNS = ("file", "stim_file")


def read_stimulus_table(path: Path, folder: Path | None = None) -> dict[int, Stimulus]:
    """``{stimulus_id: Stimulus}`` from a TSV with an id column (``stimulus_id`` or ``id``),
    a file column (``file`` or ``stim_file``, relative to ``folder``, default the table's
    folder) and optionally ``caption``."""
    folder = path.parent if folder is None else folder
    rows, columns = read_tsv(path)
    id_col = _column(path, columns, ID_COLUMNS)
    file_col = _column(path, columns, FILE_COLUMNS)
    table: dict[int, Stimulus] = {}
    for line, row in enumerate(rows, start=2):
        try:
            sid = int(row[id_col])
        except (TypeError, ValueError):
            raise DataError(
                f"{path}: line {line}: expected an integer {id_col}, found {row[id_col]!r}"
            ) from None
        table[sid] = Stimulus(folder / row[file_col], row.get("caption") or None)
    return table


def read_tsv(path: Path) -> tuple[list[dict[str, str]], list[str]]:
    """Rows and column names of a tab-separated file with a header line."""
    if not path.is_file():
        raise DataError(f"table not found: {path}")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        return list(reader), list(reader.fieldnames or [])


def _column(path: Path, columns: Sequence[str], names: Sequence[str]) -> str:
    for name in names:
        if name in columns:
            return name
    raise DataError(f"{path}: expected a column {' or '.join(names)}, found columns {columns}")
