"""Which source a fit reads, from what the user named (``rt-recon fit``'s arguments).

One of:

* a dataset folder: an rt_recon dataset (``dataset.json``) read by its manifest, or a BIDS
  dataset (no ``dataset.json``, or runs chosen with ``train_runs``) read by
  :func:`~rt_recon.apps.fit_bids.bids_inputs`;
* ``recordings`` (the recorder's ``.h5`` files) with a ``stimuli`` folder;
* ``series`` (DICOM folders, PAR/REC or NIfTI files) with one ``events`` file each and a
  ``stimuli`` folder.

``masks`` (``{name: file}``, from ``--mask NAME=FILE``) add to or replace the source's own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from rt_recon.apps.fit_inputs import FitInputs
from rt_recon.dataset import MANIFEST, Dataset
from rt_recon.errors import DataError

#: The file that makes a folder a BIDS dataset.
BIDS_DESCRIPTION = "dataset_description.json"


def parse_mask_option(text: str) -> tuple[str, Path]:
    """``"ev=/data/ev.nii.gz"`` -> ``("ev", Path("/data/ev.nii.gz"))``."""
    name, sep, path = str(text).partition("=")
    if not sep or not name.strip() or not path.strip():
        raise DataError(f"--mask {text!r}: expected NAME=FILE, e.g. --mask ev=ev_mask.nii.gz")
    return name.strip(), Path(path.strip())


def open_fit_inputs(
    dataset: str | Path | None = None,
    *,
    train_runs: Sequence[str] = (),
    validation_runs: Sequence[str] = (),
    subject: str | None = None,
    task: str | None = None,
    recordings: Sequence[str | Path] = (),
    series: Sequence[str | Path] = (),
    events: Sequence[str | Path] = (),
    stimuli: str | Path | None = None,
    masks: Mapping[str, str | Path] | None = None,
) -> FitInputs:
    """The inputs of the one source named (see the module doc), checked
    (:meth:`~rt_recon.apps.fit_inputs.FitInputs.check`)."""
    named = [
        what
        for what, given in (
            ("a dataset folder", dataset is not None),
            ("--recordings", bool(recordings)),
            ("--series", bool(series)),
        )
        if given
    ]
    if len(named) != 1:
        raise DataError(
            f"fit from one source: a dataset folder, --recordings or --series; found "
            f"{' and '.join(named) if named else 'none'}"
        )
    bids_choice = bool(train_runs or validation_runs or subject or task)
    if dataset is None and bids_choice:
        raise DataError(
            "--train-runs, --validation-runs, --subject and --task choose runs of a BIDS "
            "dataset folder; recordings and series are all training runs"
        )
    if dataset is None and stimuli is None:
        raise DataError(
            "--stimuli DIR is needed with --recordings or --series: the folder of the pictures "
            "shown, with its stimuli.tsv (columns stimulus_id, caption, file)"
        )
    if dataset is not None:
        root = Path(dataset)
        if not (root / MANIFEST).is_file() and not (root / BIDS_DESCRIPTION).is_file():
            raise DataError(
                f"{root} is neither an rt_recon dataset ({MANIFEST}) nor a BIDS dataset "
                f"({BIDS_DESCRIPTION}); for the recorder's files use --recordings, for scanner "
                "series --series"
            )
        if (root / MANIFEST).is_file() and not bids_choice:
            inputs = FitInputs.from_dataset(Dataset.open(root))
        else:
            from rt_recon.apps.fit_bids import bids_inputs

            inputs = bids_inputs(root, train_runs, validation_runs, subject=subject, task=task)
    elif recordings:
        from rt_recon.apps.fit_recorded import recording_inputs

        inputs = recording_inputs(recordings, stimuli)  # type: ignore[arg-type]
    else:
        from rt_recon.apps.fit_recorded import series_inputs

        inputs = series_inputs(series, events, stimuli)  # type: ignore[arg-type]
    if masks:
        inputs = inputs.with_masks(masks)
    inputs.check()
    return inputs
