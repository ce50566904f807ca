"""Philips PAR/REC, as the XTC real-time export writes it: one .par/.rec pair per volume.

nibabel's ``nibabel.parrec`` parses the PAR text header and the REC pixels.
Two things differ from an offline PAR/REC export, and are handled here:

* The XTC dump leaves the "General information" geometry at zero (no
  angulation, no off-centre); the true geometry is in every image line
  (``image angulation``, ``image offcentre``, ap/fh/rl). The affine is built
  by nibabel from those per-image values (their mean is the volume centre).
* Each dump is one acquisition: its volume index is the header's
  "Acquisition nr" (1, 2, ...), else the number in its name plus one
  (``Dump-0000`` is volume 1).
* A dump may hold several image types per slice (here magnitude and phase).
  The magnitude image is streamed: ``image_type_mr`` 0 where present, else
  the single type whose rescale intercept is 0 (phase images are stored with
  an intercept of about -pi * 1000). Pass ``image_type`` to choose another.

Values are Philips "display values" (``PV * RS + RI``, float32), so that the
per-slice rescale slopes do not stripe the volume.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from nibabel import parrec

from rt_recon.acquire._incomplete import IncompleteFileError
from rt_recon.acquire.volume import Volume
from rt_recon.errors import DataError

#: A PAR header whose repetition time is below this (ms) does not hold the real TR.
_MIN_PLAUSIBLE_TR_MS = 100.0


def companion(path: Path) -> tuple[Path, Path]:
    """(.par, .rec) paths of a pair, from either of the two (case kept as found)."""
    stem = path.with_suffix("")
    candidates = {p.suffix.lower(): p for p in stem.parent.glob(stem.name + ".*")}
    par = candidates.get(".par", stem.with_suffix(".par"))
    rec = candidates.get(".rec", stem.with_suffix(".rec"))
    return par, rec


def _header(par: Path) -> parrec.PARRECHeader:
    try:
        empty = par.stat().st_size == 0
    except OSError as exc:
        raise IncompleteFileError(f"{par.name}: not there yet ({exc.strerror})") from None
    if empty:
        raise IncompleteFileError(
            f"{par.name}: empty (0 bytes; still being written?)",
            kind="empty",
            what=f"{par.name}: empty file (0 bytes)",
        )
    try:
        with par.open("rt", errors="replace") as fh:
            info, image_defs = parrec.parse_PAR_header(fh)
    except OSError as exc:
        raise IncompleteFileError(f"{par.name}: not there yet ({exc.strerror})") from None
    except Exception as exc:  # nibabel raises PARRECError and ValueError on a damaged header
        raise DataError(f"{par.name}: not a readable PAR header: {exc}") from None
    if len(image_defs) == 0:
        raise IncompleteFileError(f"{par.name}: no image lines yet (still being written?)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return parrec.PARRECHeader(info, image_defs, permit_truncated=False, strict_sort=True)


def _expected_rec_bytes(header: parrec.PARRECHeader) -> int:
    defs = header.image_defs
    sizes = defs["recon resolution"].prod(axis=1) * defs["image pixel size"] // 8
    return int(sizes.sum())


def _magnitude_type(header: parrec.PARRECHeader, par: Path, image_type: int | None) -> int:
    types = np.unique(header.image_defs["image_type_mr"])
    if image_type is not None:
        if image_type not in types:
            raise DataError(
                f"{par.name}: image_type_mr {image_type} requested, the file has {types.tolist()}"
            )
        return int(image_type)
    if len(types) == 1:
        return int(types[0])
    if 0 in types:
        return 0
    zero_intercept = [
        int(t)
        for t in types
        if np.all(
            header.image_defs["rescale intercept"][header.image_defs["image_type_mr"] == t] == 0
        )
    ]
    if len(zero_intercept) == 1:
        return zero_intercept[0]
    raise DataError(
        f"{par.name}: several image types per slice ({types.tolist()}) and no single magnitude "
        "type among them; choose one with --philips-image-type"
    )


def _trailing_number(path: Path) -> int | None:
    match = re.search(r"(\d+)$", path.with_suffix("").name)
    return int(match.group(1)) if match else None


def read_volumes(path: Path, image_type: int | None = None) -> list[Volume]:
    """The volume(s) of the PAR/REC pair that ``path`` (.par or .rec) belongs to.

    Raises:
        IncompleteFileError: the .par or .rec is missing or empty, or the .rec is short.
        DataError: not a usable PAR/REC pair.
    """
    par, rec = companion(path)
    if not par.is_file():
        raise IncompleteFileError(
            f"{rec.name}: its .par header ({par.name}) is not there yet",
            kind="rec_without_par",
            what=f"{rec.name}: REC data without its PAR header ({par.name})",
        )
    if not rec.is_file():
        raise IncompleteFileError(
            f"{par.name}: its .rec data file ({rec.name}) is not there yet",
            kind="par_without_rec",
            what=f"{par.name}: PAR header without its REC data file ({rec.name})",
        )
    header = _header(par)
    expected = _expected_rec_bytes(header)
    size = rec.stat().st_size
    if size < expected:
        raise IncompleteFileError(
            f"{rec.name}: {size} of the {expected} bytes its .par announces (still being written?)"
        )
    chosen = _magnitude_type(header, par, image_type)
    defs = header.image_defs
    selected = defs["image_type_mr"] == chosen
    # The XTC dump's general geometry is empty: take it from the image lines.
    header.general_info["angulation"] = defs["image angulation"][selected].mean(axis=0)
    header.general_info["off_center"] = defs["image offcentre"][selected].mean(axis=0)
    affine = header.get_affine(origin="scanner")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            image = parrec.load(str(par), strict_sort=True, permit_truncated=False)
            data = np.asanyarray(image.dataobj)
        except Exception as exc:
            raise DataError(f"{par.name}: cannot read its .rec pixels: {exc}") from None
    labels = image.header.get_volume_labels()
    if data.ndim == 3:
        data = data[..., np.newaxis]
    n_vols = data.shape[3]
    type_labels = labels.get("image_type_mr", np.full(n_vols, chosen))
    dynamic_labels = labels.get("dynamic scan number", np.ones(n_vols, dtype=int))
    keep = [k for k in range(n_vols) if type_labels[k] == chosen]
    tr_ms = float(header.general_info.get("repetition_time", [0])[0] or 0)
    tr_s = tr_ms / 1000.0 if tr_ms >= _MIN_PLAUSIBLE_TR_MS else None
    number = _trailing_number(par)
    acq_nr = int(header.general_info.get("acq_nr", 0) or 0)
    series = str(par.parent)  # XTC writes one folder per series
    multi = len(keep) > 1
    volumes = []
    for k in keep:
        dynamic = int(dynamic_labels[k])
        mask = selected & (defs["dynamic scan number"] == dynamic)
        begin = float(defs["dyn_scan_begin_time"][mask].min()) if mask.any() else 0.0
        if multi:
            index = dynamic
        elif acq_nr > 0:
            index = acq_nr  # XTC counts dumps 1, 2, ... in "Acquisition nr"
        elif number is not None:
            index = number + 1  # ... and names them from 0
        else:
            index = dynamic
        volumes.append(
            Volume.from_native(
                np.asarray(data[..., k], dtype=np.float32),
                affine,
                index=index,
                series=series,
                series_label=par.parent.name,
                scanner_time=begin if (multi or begin > 0) else None,
                date=None,
                tr_s=tr_s,
                sources=(par, rec),
            )
        )
    return volumes
