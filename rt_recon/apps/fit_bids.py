"""Fit inputs from a BIDS dataset: runs chosen by their entities, pictures by ``stim_file``.

The layout is read with pybids (``bids.BIDSLayout``): the ``*_bold.nii[.gz]`` runs of one
subject and task (``func/``), each with the ``*_events.tsv`` of the same entities and
its ``RepetitionTime`` from the JSON sidecars (BIDS inheritance applies). Runs are chosen
by selectors (:func:`parse_run_selector`): ``3`` or ``run-3`` (run 3 of the subject's
task, in any session; two sessions with a run 3 must be told apart), or
``ses-02_run-4``.

Stimuli: an events row is a trial when it names a picture; ``stim_file`` is the picture's
path under the dataset's ``stimuli/`` folder (BIDS). Stimulus ids come from a
``stimulus_id`` column where every chosen run's events have one, else they are numbered
0, 1, ... over the distinct ``stim_file`` values in sorted order (stable across runs and
fits). Captions (the render model's text encoder needs one per picture): the events'
``caption`` column, else ``stimuli/stimuli.tsv`` (columns ``stim_file`` or ``file``, and
``caption``). A dataset without ``stim_file`` whose ``stimuli/stimuli.tsv`` lists each
``stimulus_id`` with its ``file`` (an rt_recon synthetic session from before
``stim_file``) is read through that table.

Masks: files named ``*_desc-<name>_mask.nii[.gz]`` of the subject, in the dataset
(``sub-01/masks/``, ``sub-01/anat/``, ...) or under ``derivatives/``, by ``<name>``
(``ev``, ``hv``, ``brain``); ``--mask NAME=FILE`` on the command line adds or replaces one.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rt_recon.acquire.events import read_events
from rt_recon.acquire.nifti import load_nifti_run
from rt_recon.apps.fit_inputs import (
    FitInputs,
    FitRun,
    Stimulus,
    check_run_count,
    read_stimulus_table,
    read_tsv,
)
from rt_recon.decode.fit import MIN_RUNS
from rt_recon.errors import DataError

log = logging.getLogger(__name__)

#: Values of an events column that mean "none" (BIDS: ``n/a``).
_NONE = ("", "n/a", "N/A", None)
#: A mask file's name: ``..._desc-<name>_mask.nii[.gz]``.
_MASK_NAME = re.compile(r"_desc-([A-Za-z0-9]+)_mask\.nii(\.gz)?$")


@dataclass(frozen=True)
class RunSelector:
    """A run by its BIDS entities: ``run`` and optionally ``session``."""

    run: int
    session: str | None = None

    def __str__(self) -> str:
        return f"ses-{self.session}_run-{self.run}" if self.session else f"run-{self.run}"


def parse_run_selector(text: str) -> RunSelector:
    """``"3"``, ``"run-3"``, ``"ses-02_run-4"`` -> :class:`RunSelector`."""
    entities = {}
    for part in str(text).split("_"):
        key, _, value = part.rpartition("-")
        entities[key or "run"] = value
    try:
        unknown = set(entities) - {"run", "ses"}
        if unknown or not entities.get("run"):
            raise ValueError
        return RunSelector(int(entities["run"]), entities.get("ses"))
    except ValueError:
        raise DataError(
            f"run {text!r}: expected a run number (3, run-3) or a session and run (ses-02_run-4)"
        ) from None


def bids_inputs(
    root: str | Path,
    train_runs: Sequence[str | RunSelector],
    validation_runs: Sequence[str | RunSelector] = (),
    subject: str | None = None,
    task: str | None = None,
) -> FitInputs:
    """The chosen runs of a BIDS dataset at ``root`` with their stimuli and masks.

    ``subject``/``task`` (labels without ``sub-``/``task-``) may be left out where the
    dataset has one. Raises a :class:`DataError` naming the file for each problem.
    """
    root = Path(root)
    layout = _layout(root)
    subject = _only(root, "subject", subject, layout.get_subjects(), "--subject")
    task = _only(root, "task", task, layout.get_tasks(subject=subject), "--task")
    bolds = layout.get(
        subject=subject, task=task, datatype="func", suffix="bold", extension=[".nii", ".nii.gz"]
    )
    found = ", ".join(_describe(b.get_entities()) for b in bolds) or "none"
    where = f"BIDS dataset {root} (sub-{subject}, task {task})"
    too_few = f"choose at least {MIN_RUNS} with --train-runs (its runs: {found})"
    check_run_count(where, len(train_runs), "--train-runs", too_few)
    train = [_pick(where, bolds, s, found) for s in train_runs]
    validation = [_pick(where, bolds, s, found) for s in validation_runs]
    both = [b.path for b in train if b.path in {v.path for v in validation}]
    if both:
        raise DataError(f"{both[0]}: chosen both as a training and as a validation run")
    events = {b.path: _events_file(layout, b) for b in [*train, *validation]}
    rows = {path: read_events(e) for path, e in events.items()}
    stimuli, ids = _stimuli(root, rows, events)
    runs = {}
    for bold in [*train, *validation]:
        run = load_nifti_run(bold.path)
        tr_s = bold.get_metadata().get("RepetitionTime")
        if tr_s:
            run.tr_s = float(tr_s)
        run.events = [
            {**{k: v for k, v in e.items() if k != "stimulus_id"}, **_id(sid)}
            for e, sid in zip(rows[bold.path], ids[bold.path], strict=True)
        ]
        runs[bold.path] = FitRun(bold.path, run, events[bold.path])
    log.info("%s: %d training and %d validation runs", where, len(train), len(validation))
    return FitInputs(
        origin=where,
        train=[runs[b.path] for b in train],
        validation=[runs[b.path] for b in validation],
        stimuli=stimuli,
        masks=_masks(root, subject),
        captions_from=(
            f"the caption column of the events files, else {root / 'stimuli' / 'stimuli.tsv'} "
            "(columns stim_file or file, and caption)"
        ),
        too_few=too_few,
    )


def _id(sid: int | None) -> dict[str, int]:
    return {} if sid is None else {"stimulus_id": int(sid)}


def _layout(root: Path) -> Any:
    if not (root / "dataset_description.json").is_file():
        raise DataError(
            f"{root} is not a BIDS dataset: {root / 'dataset_description.json'} is missing"
        )
    import bids  # imported here: only a BIDS fit needs pybids (half a second to import)

    with warnings.catch_warnings():  # pybids' notices about its own future defaults
        warnings.simplefilter("ignore")
        try:
            return bids.BIDSLayout(root, validate=False)
        except Exception as exc:  # pybids raises its own types for unreadable layouts
            raise DataError(f"{root}: not a readable BIDS dataset: {exc}") from None


def _only(root: Path, entity: str, value: str | None, found: list[str], option: str) -> str:
    if value is not None:
        value = str(value).removeprefix("sub-" if entity == "subject" else "task-")
        if value not in found:
            raise DataError(f"{root}: no {entity} {value!r} with runs; it has {sorted(found)}")
        return value
    if len(found) != 1:
        raise DataError(
            f"{root}: {len(found)} {entity}s ({', '.join(sorted(found)) or 'none'}): "
            f"choose one with {option}"
        )
    return found[0]


def _describe(entities: dict) -> str:
    run = entities.get("run")
    name = f"run-{int(run)}" if run is not None else "no run entity"
    return f"ses-{entities['session']}_{name}" if entities.get("session") else name


def _pick(where: str, bolds: list, selector: str | RunSelector, found: str) -> Any:
    sel = selector if isinstance(selector, RunSelector) else parse_run_selector(selector)
    matches = [
        b
        for b in bolds
        if b.get_entities().get("run") is not None
        and int(b.get_entities()["run"]) == sel.run
        and (sel.session is None or b.get_entities().get("session") == sel.session)
    ]
    if len(matches) != 1:
        what = "no run" if not matches else f"{len(matches)} runs"
        hint = "" if not matches else " (name the session: ses-XX_run-N)"
        raise DataError(f"{where}: {what} matching {sel}{hint}; its runs: {found}")
    return matches[0]


def _events_file(layout: Any, bold: Any) -> Path:
    entities = {
        k: v
        for k, v in bold.get_entities().items()
        if k not in ("suffix", "extension", "datatype", "echo", "part")
    }
    found = layout.get(**entities, suffix="events", extension=".tsv", return_type="filename")
    if len(found) != 1:
        raise DataError(
            f"{bold.path}: expected one events.tsv with its entities beside it, found "
            f"{len(found)}{': ' + ', '.join(found) if found else ''}"
        )
    return Path(found[0])


def _stimuli(
    root: Path, rows: dict[str, list[dict]], events: dict[str, Path]
) -> tuple[dict[int, Stimulus], dict[str, list[int | None]]]:
    """``({stimulus_id: Stimulus}, {bold: each event's stimulus id or None})``."""
    folder = root / "stimuli"
    with_ids = all(_has_column(events[p], "stimulus_id") for p in rows)
    files = sorted({str(r["stim_file"]) for rs in rows.values() for r in rs if _names_file(r)})
    numbered = {name: i for i, name in enumerate(files)}
    table = _stimulus_table(folder)
    ids: dict[str, list[int | None]] = {}
    pictures: dict[int, tuple[Path, Path]] = {}  # id -> (picture, the events file naming it)
    captions: dict[int, str] = {}
    for path, run_rows in rows.items():
        ids[path] = []
        for row in run_rows:
            sid = row.get("stimulus_id") if with_ids else None
            if sid is None and _names_file(row) and not with_ids:
                sid = numbered[str(row["stim_file"])]
            ids[path].append(sid)
            if sid is None:
                continue
            picture = _picture(folder, row, sid, table, events[path])
            seen = pictures.setdefault(sid, (picture, events[path]))
            if seen[0] != picture:
                raise DataError(
                    f"{events[path]}: stimulus {sid} is {picture.name}, {seen[1]} gives it "
                    f"{seen[0].name}: one stimulus_id, one picture"
                )
            caption = row.get("caption")
            if caption not in _NONE:
                captions.setdefault(sid, str(caption))
    stimuli = {}
    for sid, (picture, _) in pictures.items():
        caption = captions.get(sid) or _table_caption(table, sid, picture)
        stimuli[sid] = Stimulus(picture, caption)
    return stimuli, ids


def _has_column(path: Path, column: str) -> bool:
    return column in read_tsv(path)[1]


def _names_file(row: dict) -> bool:
    return row.get("stim_file") not in _NONE


def _stimulus_table(folder: Path) -> tuple[dict[int, Stimulus], dict[str, str | None]]:
    """``stimuli/stimuli.tsv`` by id (where it has ids) and captions by file name."""
    path = folder / "stimuli.tsv"
    if not path.is_file():
        return {}, {}
    rows, columns = read_tsv(path)
    by_id = read_stimulus_table(path, folder) if "stimulus_id" in columns else {}
    file_col = "stim_file" if "stim_file" in columns else "file"
    by_file = {row[file_col]: row.get("caption") or None for row in rows if row.get(file_col)}
    return by_id, by_file


def _picture(folder: Path, row: dict, sid: int, table: tuple[dict, dict], events: Path) -> Path:
    if _names_file(row):
        return folder / str(row["stim_file"])
    by_id = table[0]
    if sid in by_id:
        return by_id[sid].picture
    raise DataError(
        f"{events}: stimulus {sid} has no stim_file, and {folder / 'stimuli.tsv'} does not "
        "list it (columns stimulus_id, file): which picture was shown?"
    )


def _table_caption(table: tuple[dict, dict], sid: int, picture: Path) -> str | None:
    by_id, by_file = table
    caption = by_file.get(picture.name)
    if caption is None and sid in by_id and by_id[sid].picture == picture:
        caption = by_id[sid].caption
    return caption


def _masks(root: Path, subject: str) -> dict[str, Path]:
    """The subject's ``*_desc-<name>_mask.nii[.gz]`` files in the dataset or its derivatives."""
    sub = f"sub-{subject}"
    found: dict[str, list[Path]] = {}
    for base in [root / sub, *sorted((root / "derivatives").glob(f"*/{sub}"))]:
        for path in sorted(base.rglob(f"{sub}_*mask.nii*")):
            match = _MASK_NAME.search(path.name)
            if match:
                found.setdefault(match.group(1), []).append(path)
    masks = {}
    for name, paths in found.items():
        if len(paths) > 1:
            log.warning(
                "%s: %d masks named %r (%s); none is used unless given as --mask %s=FILE",
                root, len(paths), name, ", ".join(str(p) for p in paths), name,
            )  # fmt: skip
            continue
        masks[name] = paths[0]
    log.info("%s: masks %s", root, ", ".join(f"{k}: {v}" for k, v in masks.items()) or "none")
    return masks
