"""Event-related designs for training runs: which picture is shown when (``rt-recon present``).

A **stimulus set** is a folder of pictures plus a TSV (``stimuli.tsv``: columns
``stimulus_id``, ``caption``, ``file``; the layout of a dataset's ``stimuli/`` folder, whose
row ``-1`` is the blank screen and is skipped). A **design** (:class:`DesignSpec`) says how
long each picture stays up, the gap after it, how many blank trials, which stimuli form the
test set and how often it repeats, and how many attention catch trials. :func:`build_design`
turns both into the run's trials, from a seed (the same seed, the same run); the trials are
written as a BIDS ``events.tsv`` (:func:`write_events_tsv`) before the run starts, and are
what the participant page plays.

Trial types (``trial_type`` of the markers, docs/protocol.md 2): ``stimulus`` (a picture),
``blank`` (the fixation cross only: no ``stimulus_id``, so no trial for the decoder) and
``catch`` (the attention task: the picture of the trial before, shown again straight after
it; the participant presses a response key on a repeat). Every trial takes one slot of
``duration_s + isi_s`` seconds: the picture for ``duration_s``, then the fixation cross.

Pure: no sockets, no clock (the server's :mod:`rt_recon.display.presenter` plays it).
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from rt_recon.dataset import BLANK_ID
from rt_recon.errors import DataError
from rt_recon.protocol import TrialType

log = logging.getLogger(__name__)

#: Picture formats the page can show (and the server serves).
PICTURE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}

#: The columns of a stimulus table.
STIMULUS_COLUMNS = ("stimulus_id", "caption", "file")

#: The columns of the events.tsv a design is written as, in order.
EVENT_COLUMNS = ("onset", "duration", "trial_type", "stimulus_id", "caption", "trial")


@dataclass(frozen=True)
class Stimulus:
    """One picture of a stimulus set."""

    stimulus_id: int
    caption: str
    path: Path


def read_stimulus_set(folder: Path, table: Path | None = None) -> dict[int, Stimulus]:
    """``{stimulus_id: Stimulus}`` from ``folder/stimuli.tsv`` (or ``table``), files relative
    to ``folder``. A :class:`DataError` names the file and what is wrong."""
    folder = Path(folder)
    table = Path(table) if table is not None else folder / "stimuli.tsv"
    if not table.is_file():
        raise DataError(
            f"no stimulus table {table}: expected a TSV with columns {', '.join(STIMULUS_COLUMNS)}"
        )
    with table.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        missing = [c for c in STIMULUS_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(
                f"{table}: expected columns {', '.join(STIMULUS_COLUMNS)}, "
                f"found {reader.fieldnames}; missing {missing}"
            )
        rows = list(reader)
    stimuli: dict[int, Stimulus] = {}
    for line, row in enumerate(rows, start=2):
        try:
            stimulus_id = int(row["stimulus_id"])
        except (TypeError, ValueError):
            raise DataError(
                f"{table}: line {line}: expected an integer stimulus_id, "
                f"found {row['stimulus_id']!r}"
            ) from None
        if stimulus_id == BLANK_ID:
            continue  # a dataset's blank screen: the page draws its own
        if stimulus_id in stimuli:
            raise DataError(f"{table}: line {line}: stimulus_id {stimulus_id} appears twice")
        path = folder / (row["file"] or "")
        if path.suffix.lower() not in PICTURE_TYPES:
            raise DataError(
                f"{table}: line {line}: expected a picture file ({', '.join(PICTURE_TYPES)}), "
                f"found {row['file']!r}"
            )
        if not path.is_file():
            raise DataError(f"{table}: line {line}: picture {path} does not exist")
        stimuli[stimulus_id] = Stimulus(stimulus_id, row["caption"] or "", path)
    if not stimuli:
        raise DataError(f"{table}: no stimuli (expected at least one row besides id {BLANK_ID})")
    return stimuli


class DesignSpec(BaseModel):
    """How a training run presents its stimulus set (seconds)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    duration_s: float = Field(default=3.0, gt=0, description="Seconds each picture is shown")
    isi_s: float = Field(default=1.0, ge=0, description="Fixation after each trial, seconds")
    lead_in_s: float = Field(default=0.0, ge=0, description="Fixation before the first trial")
    lead_out_s: float = Field(default=0.0, ge=0, description="Fixation after the last trial")
    n_blank: int = Field(default=0, ge=0, description="Blank (fixation-only) trials")
    test_ids: tuple[int, ...] = Field(
        default=(), description="Stimuli of the test set (repeated); the others are shown once"
    )
    test_repeats: int = Field(default=1, ge=1, description="Showings of each test stimulus")
    n_catch: int = Field(
        default=0, ge=0, description="Catch trials: a picture repeated at once (press a key)"
    )
    seed: int = 0

    @model_validator(mode="after")
    def _distinct_test_ids(self) -> DesignSpec:
        if len(set(self.test_ids)) != len(self.test_ids):
            raise ValueError(f"test_ids must be distinct, found {list(self.test_ids)}")
        return self

    @property
    def slot_s(self) -> float:
        """Seconds from one trial's onset to the next."""
        return self.duration_s + self.isi_s


@dataclass(frozen=True)
class PlannedTrial:
    """One trial of a run: ``onset`` seconds from the run's start (the scanner's first volume
    or the trigger key); ``stimulus_id``/``caption`` None for a blank trial."""

    trial: int
    onset: float
    duration: float
    trial_type: TrialType
    stimulus_id: int | None
    caption: str | None

    def to_json(self) -> dict[str, object]:
        return {
            "trial": self.trial,
            "onset": self.onset,
            "duration": self.duration,
            "trial_type": self.trial_type,
            "stimulus_id": self.stimulus_id,
            "caption": self.caption,
        }


@dataclass(frozen=True)
class Design:
    """A run's trials in order, and its length."""

    spec: DesignSpec
    trials: tuple[PlannedTrial, ...]

    @property
    def total_s(self) -> float:
        """Seconds from the start to the end of the lead-out."""
        return self.spec.lead_in_s + len(self.trials) * self.spec.slot_s + self.spec.lead_out_s

    def counts(self) -> dict[str, int]:
        """Trials per ``trial_type``."""
        out = {"stimulus": 0, "blank": 0, "catch": 0}
        for trial in self.trials:
            out[trial.trial_type] += 1
        return out


def build_design(stimuli: dict[int, Stimulus], spec: DesignSpec) -> Design:
    """The run's trials: every stimulus not in the test set once, each test stimulus
    ``test_repeats`` times, ``n_blank`` blank trials, in an order drawn from ``spec.seed``;
    then ``n_catch`` catch trials, each right after a distinct picture trial (never after a
    blank or another catch), repeating its picture. Onsets are one slot apart after the
    lead-in.

    Raises:
        DataError: a test id is not in the stimulus set, or there are more catch trials
            than picture trials to follow.
    """
    unknown = [i for i in spec.test_ids if i not in stimuli]
    if unknown:
        raise DataError(
            f"test_ids {unknown} are not in the stimulus set (it has ids "
            f"{sorted(stimuli)[:10]}{' ...' if len(stimuli) > 10 else ''})"
        )
    rng = np.random.default_rng(spec.seed)
    test = set(spec.test_ids)
    pictures = [i for i in sorted(stimuli) if i not in test]
    pictures += [i for i in spec.test_ids for _ in range(spec.test_repeats)]
    sequence: list[int | None] = [*pictures, *([None] * spec.n_blank)]
    order = rng.permutation(len(sequence))
    sequence = [sequence[k] for k in order]
    picture_slots = [k for k, item in enumerate(sequence) if item is not None]
    if spec.n_catch > len(picture_slots):
        raise DataError(
            f"n_catch {spec.n_catch} is more than the {len(picture_slots)} picture trials "
            "a catch trial can follow"
        )
    after = set(rng.choice(picture_slots, size=spec.n_catch, replace=False).tolist())
    kinds: list[tuple[TrialType, int | None]] = []
    for k, item in enumerate(sequence):
        kinds.append(("blank", None) if item is None else ("stimulus", item))
        if k in after:
            kinds.append(("catch", item))
    trials = tuple(
        PlannedTrial(
            trial=k,
            onset=round(spec.lead_in_s + k * spec.slot_s, 6),
            duration=spec.duration_s,
            trial_type=kind,
            stimulus_id=sid,
            caption=stimuli[sid].caption if sid is not None else None,
        )
        for k, (kind, sid) in enumerate(kinds)
    )
    design = Design(spec, trials)
    log.info("design: %s trials (%s), %.1f s", len(trials), design.counts(), design.total_s)
    return design


def write_events_tsv(design: Design, path: Path) -> Path:
    """The design as a BIDS ``events.tsv`` (``n/a`` where a blank trial has no picture);
    ``rt-recon simulate replay`` and ``rt-recon fit`` read it as they read any run's events."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(EVENT_COLUMNS)
        for t in design.trials:
            writer.writerow(
                [
                    f"{t.onset:g}",
                    f"{t.duration:g}",
                    t.trial_type,
                    "n/a" if t.stimulus_id is None else t.stimulus_id,
                    "n/a" if t.caption is None else t.caption,
                    t.trial,
                ]
            )
    return path
