"""DICOM files from a scanner's real-time export: read, check complete, dispatch by kind.

Three kinds of file, three readers:

* Siemens mosaic (one classic DICOM per volume, slices tiled in one image):
  :mod:`rt_recon.acquire.mosaic`.
* Enhanced multi-frame DICOM (Siemens XA: one file per volume, one frame per
  slice; or one file holding many volumes): :mod:`rt_recon.acquire.enhanced`.
* One classic DICOM per slice (GE, and classic non-mosaic exports):
  :mod:`rt_recon.acquire.slices`, stacked into volumes by
  :class:`rt_recon.acquire.slices.SliceStacker`.

A file whose pixel data is shorter than its header says is still being
written (or was cut short): :class:`IncompleteFileError`, retried later.
This module holds what the three readers share; :mod:`rt_recon.acquire.formats`
dispatches a file to its reader.
"""

from __future__ import annotations

import datetime as dt
import logging
import struct
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from rt_recon.acquire._incomplete import IncompleteFileError
from rt_recon.errors import DataError

log = logging.getLogger(__name__)

#: SOP classes of enhanced (multi-frame) MR images.
ENHANCED_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image Storage
        "1.2.840.10008.5.1.4.1.1.4.3",  # Enhanced MR Color Image Storage
        "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy Converted Enhanced MR Image Storage
    }
)

_PREAMBLE_BYTES = 132  # 128-byte preamble + b"DICM"
#: Characters of a text file shown in a message.
_SHOWN_CHARS = 40


def looks_like_dicom(path: Path) -> bool:
    """True if ``path`` has the DICOM marker at byte 128 or a DICOM file extension."""
    if path.suffix.lower() in (".dcm", ".ima", ".dicom"):
        return True
    try:
        with path.open("rb") as fh:
            head = fh.read(_PREAMBLE_BYTES)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def describe_bytes(head: bytes) -> str:
    """A few words on what ``head`` (a file's first bytes) holds, for error messages."""
    if not head.strip(b"\x00"):
        return f"{len(head)} zero bytes"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\t\r\n" for c in text):
        shown = " ".join(text.split())
        shown = shown if len(shown) <= _SHOWN_CHARS else shown[: _SHOWN_CHARS - 1] + "\u2026"
        return f"text: {shown!r}"
    return "binary data starting " + head[:8].hex(" ")


def _head(path: Path, size: int = _PREAMBLE_BYTES) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(size)
    except OSError:
        return b""


def read_dataset(path: Path) -> pydicom.Dataset:
    """Read a whole DICOM file, refusing one whose pixel data is not all there yet.

    Raises:
        IncompleteFileError: the file ends before its pixel data does (or
            before its preamble ends, or holds nothing after it); its
            ``what`` says what the file is if it stays so.
        DataError: the file is not DICOM, or has no image.
    """
    try:
        size = path.stat().st_size
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        head = _head(path)
        if size < _PREAMBLE_BYTES:
            content = describe_bytes(head)
            what = (
                f"{path.name}: a DICOM file cut short in its preamble ({size} bytes)"
                if content.endswith("zero bytes")
                else f"{path.name}: not a DICOM file ({size} bytes, {content}; "
                "no 'DICM' marker at byte 128)"
            )
            raise IncompleteFileError(
                f"{path.name}: {size} bytes, shorter than a DICOM preamble (still being written?)",
                kind="not_dicom",
                what=what,
            ) from None
        raise DataError(
            f"{path.name}: not a DICOM file (expected the 'DICM' marker at byte 128, found "
            f"{head[128:132]!r}; the file starts with {describe_bytes(head[:128])})"
        ) from None
    except (EOFError, struct.error) as exc:
        raise IncompleteFileError(f"{path.name}: the file ends inside its header ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path.name}: cannot be read: {exc}") from None
    except Exception as exc:  # pydicom raises many types on a damaged header
        raise DataError(f"{path.name}: not a readable DICOM file: {exc}") from None
    if len(ds) == 0:
        part = "preamble" if len(ds.file_meta) == 0 else "preamble and file meta information"
        raise IncompleteFileError(
            f"{path.name}: DICOM {part} only, no data elements yet (still being written?)",
            kind="preamble_only",
            what=f"{path.name}: DICOM {part} only, no data elements ({size} bytes)",
        )
    check_pixel_data_complete(ds, path)
    return ds


def expected_pixel_bytes(ds: pydicom.Dataset) -> int:
    """Bytes of uncompressed pixel data the header announces."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    return int(ds.Rows) * int(ds.Columns) * samples * frames * int(ds.BitsAllocated) // 8


def check_pixel_data_complete(ds: pydicom.Dataset, path: Path) -> None:
    """Raise :class:`IncompleteFileError` if the pixel data is missing or short."""
    for key in ("Rows", "Columns", "BitsAllocated"):
        if key not in ds:
            raise IncompleteFileError(
                f"{path.name}: no {key} in the header (still being written?)",
                what=f"{path.name}: a DICOM header without an image (no {key}{_sop_text(ds)})",
            )
    pixels = ds.get("PixelData")
    if pixels is None:
        raise IncompleteFileError(
            f"{path.name}: no pixel data yet (still being written?)",
            what=f"{path.name}: a DICOM header without pixel data{_sop_text(ds)}",
        )
    if (
        ds.file_meta.get("TransferSyntaxUID") is not None
        and ds.file_meta.TransferSyntaxUID.is_compressed
    ):
        return  # encapsulated: the decoder checks the fragments
    expected = expected_pixel_bytes(ds)
    if len(pixels) < expected:
        raise IncompleteFileError(
            f"{path.name}: pixel data has {len(pixels)} of the {expected} bytes its header "
            "announces (still being written?)"
        )


def _sop_text(ds: pydicom.Dataset) -> str:
    sop = ds.get("SOPClassUID")
    if not sop:
        return ""
    name = getattr(sop, "name", "") or str(sop)
    return f"; SOP class {name}"


def is_enhanced(ds: pydicom.Dataset) -> bool:
    return str(ds.get("SOPClassUID", "")) in ENHANCED_SOP_CLASSES or (
        "PerFrameFunctionalGroupsSequence" in ds
    )


def is_mosaic(ds: pydicom.Dataset) -> bool:
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    return "MOSAIC" in image_type


def parse_time(value: object) -> float | None:
    """DICOM TM ``HHMMSS.FFFFFF`` -> seconds since midnight (None if empty)."""
    text = str(value or "").strip()
    if not text:
        return None
    try:
        hours = int(text[0:2])
        minutes = int(text[2:4]) if len(text) >= 4 else 0
        seconds = float(text[4:]) if len(text) > 4 else 0.0
    except ValueError:
        log.warning("unparseable DICOM time %r ignored", text)
        return None
    return hours * 3600 + minutes * 60 + seconds


def parse_datetime(value: object) -> tuple[str | None, float | None]:
    """DICOM DT ``YYYYMMDDHHMMSS.FFFFFF`` -> (``YYYYMMDD``, seconds since midnight)."""
    text = str(value or "").strip()
    if len(text) < 8:
        return None, None
    text = text.split("+")[0].split("-")[0] if len(text) > 14 else text
    return text[:8], parse_time(text[8:]) if len(text) > 8 else 0.0


def repetition_time_s(ds: pydicom.Dataset) -> float | None:
    """RepetitionTime in seconds (classic header, or the enhanced shared groups)."""
    tr_ms = ds.get("RepetitionTime")
    if tr_ms is None and "SharedFunctionalGroupsSequence" in ds:
        shared = ds.SharedFunctionalGroupsSequence[0]
        timing = shared.get("MRTimingAndRelatedParametersSequence")
        if timing:
            tr_ms = timing[0].get("RepetitionTime")
    try:
        tr_s = float(tr_ms) / 1000.0 if tr_ms not in (None, "") else None
    except (TypeError, ValueError):
        return None
    return tr_s if tr_s and tr_s > 0 else None


def series_identity(ds: pydicom.Dataset, path: Path) -> tuple[str, str]:
    """(series key, series label): SeriesInstanceUID and SeriesNumber where present."""
    number = ds.get("SeriesNumber")
    label = str(number) if number not in (None, "") else path.parent.name
    key = str(ds.get("SeriesInstanceUID") or f"{path.parent}/{label}")
    return key, label


def header_identity(path: Path) -> tuple[str, str, str] | None:
    """(series key, series label, what the file is) from a DICOM header, or None if unreadable.

    Reads the header only (not the pixel data). What the file is names the
    vendor and the kind, e.g. ``"SIEMENS mosaic DICOM"``, ``"GE MEDICAL
    SYSTEMS slice DICOM"``.
    """
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # pydicom raises many types on a damaged or partial header
        return None
    if len(ds) == 0:
        return None
    kind = "enhanced" if is_enhanced(ds) else "mosaic" if is_mosaic(ds) else "slice"
    vendor = str(ds.get("Manufacturer") or "").strip() or "unknown vendor's"
    key, label = series_identity(ds, path)
    return key, label, f"{vendor} {kind} DICOM"


def pixel_array(ds: pydicom.Dataset, path: Path) -> np.ndarray:
    """Pixel data as numpy, rescaled where the header asks (RescaleSlope/Intercept)."""
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom: missing decoder, bad length, ...
        raise DataError(f"{path.name}: cannot decode the pixel data: {exc}") from None
    return apply_rescale(pixels, ds.get("RescaleSlope"), ds.get("RescaleIntercept"))


def apply_rescale(pixels: np.ndarray, slope: object, intercept: object) -> np.ndarray:
    """``pixels * slope + intercept`` as float32, or ``pixels`` unchanged for (1, 0) or none."""
    s = float(slope) if slope not in (None, "") else 1.0
    b = float(intercept) if intercept not in (None, "") else 0.0
    if s == 1.0 and b == 0.0:
        return pixels
    return (pixels.astype(np.float32) * np.float32(s) + np.float32(b)).astype(np.float32)


def acquisition_time(ds: pydicom.Dataset) -> tuple[str | None, float | None]:
    """(date, seconds since midnight) of a classic DICOM's acquisition start."""
    seconds = parse_time(ds.get("AcquisitionTime"))
    date = str(ds.get("AcquisitionDate") or ds.get("SeriesDate") or "") or None
    if seconds is None and ds.get("AcquisitionDateTime"):
        return parse_datetime(ds.AcquisitionDateTime)
    return date, seconds


def seconds_to_datetime(date: str | None, seconds: float) -> dt.datetime | None:
    """Scanner date + seconds since midnight -> a naive local datetime (None without date)."""
    if not date:
        return None
    try:
        day = dt.datetime.strptime(date, "%Y%m%d")
    except ValueError:
        return None
    return day + dt.timedelta(seconds=seconds)
