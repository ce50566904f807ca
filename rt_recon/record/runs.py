"""One entry point for every recording a replay can stream (``rt-recon simulate replay``).

It lives in ``record`` (above ``acquire``) because it reads rt_recon's own
recordings too; every other format comes from ``acquire``:

* a 4D NIfTI file (a BIDS ``*_bold.nii.gz``; its ``events.tsv`` with ``events``);
* a scanner series: a folder of DICOM (Siemens mosaic, XA enhanced, GE
  slices), PAR/REC or 3D NIfTI files, or one enhanced DICOM / PAR file,
  read exactly as the bridge reads it (:func:`rt_recon.acquire.series.read_series`);
* an XDF recording (``.xdf``) of an rt_recon session (:mod:`rt_recon.acquire.xdf`);
* an rt_recon recording (``.h5``, :func:`rt_recon.record.to_run.recorded_run`): one of
  its parts (runs on their own grids), picked by the run it recorded.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib

from rt_recon.acquire.events import read_events
from rt_recon.acquire.formats import DEFAULT_READ, ReadOptions
from rt_recon.acquire.nifti import RecordedRun, load_nifti_run
from rt_recon.acquire.series import read_series
from rt_recon.acquire.xdf import load_xdf_run
from rt_recon.errors import DataError
from rt_recon.record.to_run import recorded_run


def _is_4d_nifti(path: Path) -> bool:
    if not path.is_file() or not path.name.lower().endswith((".nii", ".nii.gz")):
        return False
    try:
        return len(nib.load(path).shape) == 4
    except Exception:
        return False


def load_run(
    path: str | Path,
    events: str | Path | None = None,
    options: ReadOptions = DEFAULT_READ,
    series: str | None = None,
    stream: str | None = None,
) -> RecordedRun:
    """Read any replayable recording into a :class:`RecordedRun`.

    Args:
        path: 4D NIfTI, series folder/file, ``.xdf`` or rt_recon ``.h5`` recording.
        events: BIDS events.tsv to send as markers (for XDF: instead of its markers).
        options: TR override, slices per volume, Philips image type (series only).
        series: series number to pick from a folder holding several; for an rt_recon
            recording, the part to read by the run it recorded (default: the first).
        stream: name of the volume stream in an XDF file holding several.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"recording not found: {path} (expected a 4D NIfTI, a scanner series folder "
            "or file, an .xdf recording or an rt_recon .h5 recording)"
        )
    if path.suffix.lower() == ".h5":
        run = recorded_run(path, series)
        if events is not None:
            run.events = read_events(events)
        return run
    if path.suffix.lower() == ".xdf":
        run = load_xdf_run(path, stream)
        if events is not None:
            run.events = read_events(events)
        return run
    if _is_4d_nifti(path):
        run = load_nifti_run(path, events)
        if options.tr_s is not None:
            run.tr_s = options.tr_s
        return run
    recorded = read_series(path, options, series)
    return recorded.to_run(read_events(events) if events is not None else None)
