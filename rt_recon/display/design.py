"""Event-related designs for training runs: which picture is shown (or cued) when
(``rt-recon present``).

A **stimulus set** is a folder of pictures plus a TSV (``stimuli.tsv``: columns
``stimulus_id``, ``caption``, ``file`` and, optionally, ``cue``; the layout of a dataset's
``stimuli/`` folder, whose row ``-1`` is the blank screen and is skipped). A **design**
(:class:`DesignSpec`) says whether the run shows the pictures (``task`` ``vision``) or cues
them to be imagined (``imagery``), how long each stays up, the gap after it, how many blank
trials, which stimuli form the test set and how often it repeats, and how many attention
catch trials. :func:`build_design` turns both into the run's rows, from a seed (the same
seed, the same run); the rows are written as a BIDS ``events.tsv`` (:func:`write_events_tsv`)
before the run starts, and are what the participant page plays.

Trial types (``trial_type`` of the markers, docs/protocol.md 2): ``stimulus`` (a picture),
``blank`` (the fixation cross only: no ``stimulus_id``, so no trial for the decoder),
``catch`` (the attention task: the picture of the trial before, shown again straight after
it; the participant presses a response key on a repeat), and in an imagery run ``cue`` and
``imagery``. Every trial takes one slot of :attr:`DesignSpec.slot_s` seconds:

* vision: the picture for ``duration_s``, then the fixation cross for ``isi_s``;
* imagery: the cue (words naming a picture: the table's ``cue``, else its caption) for
  ``cue_s`` as a ``cue`` row (no ``stimulus_id``: no trial for the decoder; ``caption`` the
  cue's text), then the imagining period for ``duration_s`` as an ``imagery`` row (the cued
  picture's ``stimulus_id`` and caption: the decoder's trial, its onset the start of the
  imagining), then the rest for ``isi_s``. The picture is never shown. Imagining and rest
  both keep a fixation cross (so the eyes stay put and the screen carries no picture
  content); the imagining period draws it white, the rest grey, so the participant sees when
  to stop imagining. A blank trial is the grey cross for the whole slot less the rest
  (``cue_s + duration_s``: the time a cue and its imagining would take), one ``blank`` row.
  Catch trials repeat a picture, which an imagery run never shows: refused.

Rows are numbered in order (``trial``): a cue and its imagery row are two rows, two numbers.

Pure: no sockets, no clock (the server's :mod:`rt_recon.display.presenter` plays it).
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from rt_recon.dataset import BLANK_ID
from rt_recon.errors import DataError
from rt_recon.protocol import TRIAL_TYPES, TrialType

log = logging.getLogger(__name__)

#: Picture formats the page can show (and the server serves).
PICTURE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}

#: The columns of a stimulus table.
STIMULUS_COLUMNS = ("stimulus_id", "caption", "file")

#: An optional column of a stimulus table: the word cue of an imagery trial (default: the caption).
CUE_COLUMN = "cue"

#: What a run asks of the participant: see the pictures, or imagine them from word cues.
Task = Literal["vision", "imagery"]

#: Seconds an imagery trial's word cue is shown by default (*chosen*: time to read a few words).
DEFAULT_CUE_S = 1.5

#: The trial types whose rows show their picture (the page loads it; the server serves it).
PICTURE_TRIAL_TYPES: frozenset[str] = frozenset({"stimulus", "catch"})

#: The columns of the events.tsv a design is written as, in order.
EVENT_COLUMNS = ("onset", "duration", "trial_type", "stimulus_id", "caption", "trial")


@dataclass(frozen=True)
class Stimulus:
    """One picture of a stimulus set; ``cue`` the words an imagery trial shows instead of it
    (empty: the caption)."""

    stimulus_id: int
    caption: str
    path: Path
    cue: str = ""

    @property
    def cue_text(self) -> str:
        """What an imagery trial's cue shows: the ``cue`` column's words, else the caption."""
        return self.cue.strip() or self.caption.strip()


def read_stimulus_set(folder: Path, table: Path | None = None) -> dict[int, Stimulus]:
    """``{stimulus_id: Stimulus}`` from ``folder/stimuli.tsv`` (or ``table``), files relative
    to ``folder``; a ``cue`` column, where there is one, gives the imagery cues. A
    :class:`DataError` names the file and what is wrong."""
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
        stimuli[stimulus_id] = Stimulus(
            stimulus_id, row["caption"] or "", path, cue=row.get(CUE_COLUMN) or ""
        )
    if not stimuli:
        raise DataError(f"{table}: no stimuli (expected at least one row besides id {BLANK_ID})")
    return stimuli


class DesignSpec(BaseModel):
    """How a training run presents its stimulus set (seconds).

    ``task`` ``vision`` (the default) shows each picture for ``duration_s``; ``imagery`` shows
    its word cue for ``cue_s``, then a fixation cross for ``duration_s`` while the participant
    imagines it (the module docstring). ``cue_s`` belongs to imagery runs: a vision run
    refuses any but the default (:data:`DEFAULT_CUE_S`), so a spec dumped and read back
    still validates.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: Task = Field(default="vision", description="vision: show pictures; imagery: cue them")
    cue_s: float = Field(
        default=DEFAULT_CUE_S, gt=0, description="Imagery: seconds the word cue is shown"
    )
    duration_s: float = Field(
        default=3.0, gt=0, description="Seconds each picture is shown (imagery: imagined)"
    )
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

    @model_validator(mode="after")
    def _task_options(self) -> DesignSpec:
        if self.task == "vision" and self.cue_s != DEFAULT_CUE_S:
            raise ValueError(
                f"cue_s ({self.cue_s}) applies to imagery runs (task 'imagery'); "
                "a vision run shows its pictures, no cue"
            )
        if self.task == "imagery" and self.n_catch:
            raise ValueError(
                f"n_catch {self.n_catch}: an imagery run has no catch trials (a catch trial "
                "repeats a picture, and an imagery run shows none); use n_catch 0"
            )
        return self

    @property
    def slot_s(self) -> float:
        """Seconds from one trial's onset to the next (imagery: the cue's onsets)."""
        cue = self.cue_s if self.task == "imagery" else 0.0
        return cue + self.duration_s + self.isi_s


@dataclass(frozen=True)
class PlannedTrial:
    """One row of a run: ``onset`` seconds from the run's start (the scanner's first volume
    or the trigger key); ``stimulus_id`` None for a blank or cue row, ``caption`` None for a
    blank row (a cue row's caption is the cue's text)."""

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

    @property
    def shows_picture(self) -> bool:
        """Whether the page draws this row's picture (never on a cue, imagery or blank row)."""
        return self.trial_type in PICTURE_TRIAL_TYPES


@dataclass(frozen=True)
class Design:
    """A run's rows in order, and its length."""

    spec: DesignSpec
    trials: tuple[PlannedTrial, ...]

    @property
    def n_slots(self) -> int:
        """Trial slots: every row but an imagery row (it continues its cue's slot)."""
        return sum(1 for t in self.trials if t.trial_type != "imagery")

    @property
    def total_s(self) -> float:
        """Seconds from the start to the end of the lead-out."""
        return self.spec.lead_in_s + self.n_slots * self.spec.slot_s + self.spec.lead_out_s

    def counts(self) -> dict[str, int]:
        """Rows per ``trial_type``, every type listed (:data:`rt_recon.protocol.TRIAL_TYPES`)."""
        out = dict.fromkeys(TRIAL_TYPES, 0)
        for trial in self.trials:
            out[trial.trial_type] += 1
        return out


def build_design(stimuli: dict[int, Stimulus], spec: DesignSpec) -> Design:
    """The run's rows: every stimulus not in the test set once, each test stimulus
    ``test_repeats`` times, ``n_blank`` blank trials, in an order drawn from ``spec.seed``;
    then ``n_catch`` catch trials, each right after a distinct picture trial (never after a
    blank or another catch), repeating its picture. Trials are one slot apart after the
    lead-in; in an imagery run each picture trial is a cue row at the slot's start and an
    imagery row ``cue_s`` later (the same order a vision run of the seed would show).

    Raises:
        DataError: a test id is not in the stimulus set, there are more catch trials
            than picture trials to follow, or (imagery) a cued stimulus has neither a cue
            nor a caption.
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
    if spec.task == "imagery":
        trials = _imagery_rows(stimuli, spec, kinds)
    else:
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


def _imagery_rows(
    stimuli: dict[int, Stimulus], spec: DesignSpec, slots: list[tuple[TrialType, int | None]]
) -> tuple[PlannedTrial, ...]:
    """An imagery run's rows, one slot per entry of ``slots`` (``stimulus`` or ``blank``):
    a picture becomes its cue row and its imagery row, a blank one blank row."""
    silent = [sid for _, sid in slots if sid is not None and not stimuli[sid].cue_text]
    if silent:
        raise DataError(
            f"stimuli {sorted(set(silent))} have neither a cue nor a caption: an imagery trial "
            f"shows words naming its picture (a {CUE_COLUMN!r} column or a caption in the "
            "stimulus table)"
        )
    rows: list[PlannedTrial] = []
    for k, (_, sid) in enumerate(slots):
        start = spec.lead_in_s + k * spec.slot_s
        if sid is None:
            blank_s = spec.cue_s + spec.duration_s
            rows.append(PlannedTrial(len(rows), round(start, 6), blank_s, "blank", None, None))
            continue
        stimulus = stimuli[sid]
        rows.append(
            PlannedTrial(len(rows), round(start, 6), spec.cue_s, "cue", None, stimulus.cue_text)
        )
        rows.append(
            PlannedTrial(
                len(rows),
                round(start + spec.cue_s, 6),
                spec.duration_s,
                "imagery",
                sid,
                stimulus.caption,
            )
        )
    return tuple(rows)


def write_events_tsv(design: Design, path: Path) -> Path:
    """The design as a BIDS ``events.tsv`` (``n/a`` where a blank or cue row has no picture);
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
