"""Fit inputs from what a visit leaves: the recorder's files, or scanner series with events.

* :func:`recording_inputs`: rt_recon recordings (``.h5``, the recorder's HDF5 files). Each
  part of a recording (:func:`rt_recon.record.to_run.recorded_parts`: its segments on one
  grid, joined across recorder restarts) is a run, or the runs a presenter's ``run_start``
  markers delimit in it (:func:`~rt_recon.record.to_run.presented_runs`: one recorder for
  all the training runs of a visit); ``A.h5:7`` takes only the part that
  recorded run (series) ``7``. The events are the recorded trial markers
  (docs/protocol.md section 2: each carries its ``stimulus_id``).
* :func:`series_inputs`: scanner series (a DICOM folder, a PAR/REC or NIfTI file; read by
  :func:`rt_recon.record.runs.load_run`, as ``rt-recon convert`` and replay read them), each
  with its BIDS ``events.tsv`` (``stimulus_id`` per trial).

Both take the pictures from a stimulus folder: a TSV (``stimuli.tsv``, or the folder's
only ``.tsv``) with columns ``stimulus_id`` (or ``id``), ``caption`` and ``file`` (or
``stim_file``), files relative to the folder: the table the presenter shows. A picture
without a caption in the table takes the caption its markers or events carry.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from rt_recon.apps.fit_inputs import (
    FitInputs,
    FitRun,
    Stimulus,
    check_run_count,
    read_stimulus_table,
)
from rt_recon.errors import DataError
from rt_recon.protocol import is_trial_event
from rt_recon.record.runs import load_run
from rt_recon.record.to_run import presented_runs, recorded_parts

log = logging.getLogger(__name__)


def stimulus_table_path(stimuli: str | Path) -> Path:
    """The stimulus table of a folder (``stimuli.tsv``, else its only ``.tsv``) or the table."""
    stimuli = Path(stimuli)
    if stimuli.is_file():
        return stimuli
    if not stimuli.is_dir():
        raise DataError(f"stimulus folder not found: {stimuli}")
    if (stimuli / "stimuli.tsv").is_file():
        return stimuli / "stimuli.tsv"
    tables = sorted(stimuli.glob("*.tsv"))
    if len(tables) != 1:
        raise DataError(
            f"{stimuli}: expected a stimulus table stimuli.tsv (columns stimulus_id, caption, "
            f"file), found {len(tables)} .tsv files{': ' if tables else ''}"
            f"{', '.join(t.name for t in tables)}"
        )
    return tables[0]


def split_part(text: str | Path) -> tuple[Path, str | None]:
    """``"A.h5:7"`` -> ``(A.h5, "7")``; ``"A.h5"`` -> ``(A.h5, None)``."""
    text = str(text)
    head, sep, part = text.rpartition(":")
    if sep and head.lower().endswith(".h5") and part and "/" not in part:
        return Path(head), part
    return Path(text), None


def recording_inputs(recordings: Sequence[str | Path], stimuli: str | Path) -> FitInputs:
    """Every part of each recording (or the part ``A.h5:LABEL`` names) as a training run."""
    table = stimulus_table_path(stimuli)
    origin = f"recordings {', '.join(str(r) for r in recordings)}"
    runs = []
    for item in recordings:
        path, part = split_part(item)
        if not path.is_file():
            raise DataError(f"recording not found: {path} (expected an rt_recon .h5 recording)")
        labels = [part] if part is not None else [p.label for p in recorded_parts(path)]
        presented = [run for label in labels for run in presented_runs(path, label)]
        for label, run in presented:
            name = f"{path} (run {label})" if len(presented) > 1 or part else str(path)
            runs.append(FitRun(name, run))
    remedy = "record another run, or give another recording"
    check_run_count(origin, len(runs), "runs in the recordings", remedy)
    return _with_stimuli(origin, runs, table, "markers", remedy)


def series_inputs(
    series: Sequence[str | Path], events: Sequence[str | Path], stimuli: str | Path
) -> FitInputs:
    """Each series (DICOM folder, PAR/REC or NIfTI file) with its events file, in order."""
    if len(series) != len(events):
        raise DataError(
            f"{len(series)} series and {len(events)} events files: give one --events TSV per "
            "--series, in the same order"
        )
    table = stimulus_table_path(stimuli)
    origin = f"series {', '.join(str(s) for s in series)}"
    remedy = "give another --series with its --events"
    check_run_count(origin, len(series), "--series given", remedy)
    runs = [FitRun(str(s), load_run(s, e), Path(e)) for s, e in zip(series, events, strict=True)]
    return _with_stimuli(origin, runs, table, "events files", remedy)


def _with_stimuli(
    origin: str, runs: list[FitRun], table: Path, carried_by: str, remedy: str
) -> FitInputs:
    stimuli = read_stimulus_table(table)
    carried = {
        int(e["stimulus_id"]): str(e["caption"])
        for r in runs
        for e in r.run.events
        if is_trial_event(e) and e.get("caption")
    }
    stimuli = {
        sid: s if s.caption else Stimulus(s.picture, carried.get(sid)) for sid, s in stimuli.items()
    }
    log.info("%s: %d runs, %d stimuli in %s", origin, len(runs), len(stimuli), table)
    return FitInputs(
        origin=origin,
        train=runs,
        stimuli=stimuli,
        captions_from=f"{table} (column caption), else the {carried_by}' caption",
        stimuli_from=str(table),
        too_few=remedy,
    )
