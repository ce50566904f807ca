"""Which reader a file needs, and one call that reads any scanner file.

A file in an export folder is one of:

* DICOM (``.dcm``/``.ima`` or the ``DICM`` marker): Siemens mosaic, enhanced
  multi-frame, or one slice (:mod:`rt_recon.acquire.dicom`);
* Philips PAR/REC (``.par`` + ``.rec``, read as a pair);
* NIfTI (``.nii``, ``.nii.gz``), 3D (one volume) or 4D.

Everything else (sidecars, logs, temporary files of a writer that renames
when done) is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib

from rt_recon.acquire import enhanced, mosaic, parrec, slices
from rt_recon.acquire._incomplete import IncompleteFileError
from rt_recon.acquire.dicom import (
    header_identity,
    is_enhanced,
    is_mosaic,
    looks_like_dicom,
    read_dataset,
)
from rt_recon.acquire.nifti import nifti_series, read_nifti_volumes
from rt_recon.acquire.slices import SliceImage
from rt_recon.acquire.volume import Volume

#: Name endings of files that a writer has not finished (it renames them when done).
_TEMPORARY_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp", "~", ".lock")
#: Extensions that are never image data.
_NOT_IMAGES = (".json", ".txt", ".ini", ".log", ".tsv", ".csv", ".md", ".xml", ".yaml", ".mat")


@dataclass(frozen=True)
class ReadOptions:
    """Choices a header cannot always make.

    Attributes:
        slices_per_volume: slices in one volume, for single-slice DICOM whose
            header does not say (None: from the header).
        philips_image_type: PAR/REC ``image_type_mr`` to stream (None: magnitude).
        tr_s: repetition time in seconds, overriding the header's (None: header).
    """

    slices_per_volume: int | None = None
    philips_image_type: int | None = None
    tr_s: float | None = None


#: Every choice left to the headers.
DEFAULT_READ = ReadOptions()


def classify(path: Path) -> str | None:
    """``"dicom"``, ``"parrec"``, ``"nifti"``, or None for a file to ignore."""
    name = path.name.lower()
    if name.startswith(".") or name.endswith(_TEMPORARY_SUFFIXES):
        return None
    if name.endswith((".par", ".rec")):
        return "parrec"
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith(_NOT_IMAGES):
        return None
    return "dicom" if looks_like_dicom(path) else None


def unit_key(path: Path) -> Path:
    """Files read together share a key: a PAR/REC pair is one unit, every other file its own."""
    if path.name.lower().endswith((".par", ".rec")):
        return path.with_suffix("")
    return path


def read_file(path: Path, options: ReadOptions = DEFAULT_READ) -> list[Volume | SliceImage]:
    """The volumes (or the one slice) in one scanner file.

    Raises:
        IncompleteFileError: the file (or its PAR/REC partner) is not all there yet
            (or empty, or a PAR without its REC...: its ``what`` says what it
            is if it stays so).
        DataError: the file is not usable; the message names it and says why.
    """
    try:
        empty = path.stat().st_size == 0
    except OSError:
        empty = False  # gone or unreadable: the reader says which
    if empty:
        raise IncompleteFileError(
            f"{path.name}: empty (0 bytes; still being written?)",
            kind="empty",
            what=f"{path.name}: empty file (0 bytes)",
        )
    kind = classify(path)
    if kind == "parrec":
        return list(parrec.read_volumes(path, options.philips_image_type))
    if kind == "nifti":
        return list(read_nifti_volumes(path, options.tr_s))
    ds = read_dataset(path)
    if is_enhanced(ds):
        return list(enhanced.read_volumes(ds, path))
    if is_mosaic(ds):
        return [mosaic.read_volume(ds, path)]
    return [slices.read_slice(ds, path, options.slices_per_volume)]


@dataclass(frozen=True)
class FileIdentity:
    """Which series a scanner file belongs to, read from its header only.

    ``series`` and ``label`` are those the volumes read from the file carry
    (:class:`~rt_recon.acquire.volume.Volume`); ``kind`` names the vendor and
    format (``"GE MEDICAL SYSTEMS slice DICOM"``, ``"Philips PAR/REC"``, ...).
    """

    series: str
    label: str
    kind: str

    def __str__(self) -> str:
        return f"{self.kind} of series {self.label}"


def identify(path: Path) -> FileIdentity | None:
    """The series and kind of a scanner file without reading its pixels; None if unreadable."""
    kind = classify(path)
    if kind == "parrec":
        par, _ = parrec.companion(path)
        return FileIdentity(str(par.parent), par.parent.name, "Philips PAR/REC")
    if kind == "nifti":
        try:
            ndim = len(nib.load(path).header.get_data_shape())
        except Exception:  # nibabel raises many types on a damaged or partial header
            return None
        key, label = nifti_series(path, ndim)
        return FileIdentity(key, label, "NIfTI")
    found = header_identity(path) if kind == "dicom" else None
    return FileIdentity(*found) if found is not None else None
