"""The session recording: one HDF5 file, append-only, readable after a crash.

Why HDF5 (h5py): one self-describing file that every analysis language
reads (MATLAB, R, Julia, C), chunked appends without rewriting, and SWMR
mode (single writer, multiple readers): a console can read the file while
the session runs, and a writer killed with SIGKILL leaves a file that opens
with everything up to its last flush (tested in tests/record/). The
recorder flushes every time it has drained its inputs (at least once per
TR), so a crash loses at most the TR in flight. No
pickle: arrays are typed datasets, headers and events are JSON strings.

Layout (``n`` grows per TR; every dataset of a group has the same length)::

    attrs: format, version, created, config (JSON), stream (JSON), bundle (JSON),
           feedback (JSON: the condition, rt_recon.record.feedback)
    volumes/values   (n, n_channels) float32    the volume as received
    volumes/time     (n,) float64               LSL timestamp (acquisition)
    volumes/crc32    (n,) uint32                CRC-32 of the values' bytes
    markers/json     (m,) str                   one JSON event per marker
    markers/time     (m,) float64
    latents/z        (k, *z_shape) float32
    latents/c        (k, *c_shape) float32
    latents/header   (k,) str                   the message header (JSON)
    frames/image     (f, H, W, 3) uint8
    frames/header    (f,) str
    status/json      (s,) str                   heartbeats of every node

Because SWMR cannot create datasets once writing has begun, every shape
is fixed when the file is created (from the stream and the decoder bundle).
A reader takes, per group, the length of its *last written* dataset (the
``time``/``header``/``json`` one), so a half-appended entry is never read.

**A write that fails** (disk full, file size limit, I/O error) raises
:class:`~rt_recon.errors.StorageError` naming the file and the cause. The
writer then shrinks every dataset back to the last flush and writes nothing
more, so the file keeps exactly what was flushed before (HDF5 flushes the
metadata of a failed flush anyway, which would otherwise leave entries whose
data never reached the disk). Dataset handles stay open for the writer's
life: HDF5 writes cached chunks when a handle closes, and h5py swallows the
errors of writes made there.

**A truncated file** (bytes lost at its end: a full disk, a file size limit,
a crash of the machine) is shorter than the end-of-file address its HDF5
superblock records. The reader opens it with one metadata read attempt
(SWMR readers otherwise retry a bad checksum for up to an hour), keeps per
group the entries whose chunks all lie inside the file and whose headers
decode, and checks every volume against its CRC-32; a group whose index was
in the lost part is a :class:`~rt_recon.errors.DataError` naming the file.
"""

from __future__ import annotations

import ctypes
import errno as errno_codes
import json
import logging
import os
import re
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import h5py
import numpy as np

from rt_recon.errors import DataError, StorageError

log = logging.getLogger(__name__)

FORMAT = "rt_recon-recording"
VERSION = 1
_STR = h5py.string_dtype(encoding="utf-8")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: HDF5 writes the failing call's errno into its message: "errno = 28, error message = ...".
_ERRNO_IN_MESSAGE = re.compile(r"errno = (\d+)")
_WRITE_CAUSES = {
    errno_codes.ENOSPC: "the disk is full",
    errno_codes.EFBIG: "the file reached the largest size allowed (a file size limit such as "
    "ulimit -f, or the file system's maximum)",
    errno_codes.EDQUOT: "the disk quota is used up",
    errno_codes.EROFS: "the file system is read-only",
    errno_codes.EIO: "the disk reported an I/O error",
}
#: What h5py raises when HDF5 fails: OSError, or RuntimeError from flush and close.
_H5_ERRORS = (OSError, RuntimeError)
_T = TypeVar("_T")


@dataclass(frozen=True)
class RecordingShapes:
    n_channels: int
    z_shape: tuple[int, ...]
    c_shape: tuple[int, ...]
    image_shape: tuple[int, int, int]  # (H, W, 3)


# (group, dataset written last, other datasets in write order)
_GROUPS = {
    "volumes": ("time", ("values", "crc32")),
    "markers": ("time", ("json",)),
    "latents": ("header", ("z", "c")),
    "frames": ("header", ("image",)),
    "status": ("json", ()),
}


class RecordingWriter:
    """Append volumes, markers, latents, frames and heartbeats; :meth:`flush` to commit.

    Use as a context manager, or call :meth:`close`. A failed write raises
    :class:`~rt_recon.errors.StorageError`; the file is then back at its last
    flush, :attr:`error` holds the error and every later call raises it again.
    """

    def __init__(
        self,
        path: str | Path,
        shapes: RecordingShapes,
        attrs: Mapping[str, Any] | None = None,
    ):
        self.path = Path(path)
        if self.path.exists():
            raise DataError(f"{self.path} exists; a recording is never overwritten")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.error: StorageError | None = None
        self._datasets: dict[str, h5py.Dataset] = {}
        self._committed = dict.fromkeys(_GROUPS, 0)  # entries per group at the last flush
        try:
            # No raw-data chunk cache: every chunk (one entry) is written once and never
            # read back, and a cache would only hold megabytes per dataset for nothing (the
            # soak test measured the writer's RSS growing 22 MiB over 8,000 entries per group
            # with h5py's default cache, 4 MiB without).
            self._file = h5py.File(self.path, "w", libver="latest", rdcc_nbytes=0)
            f = self._file
            f.attrs.update({"format": FORMAT, "version": VERSION, "created": time.time()})
            for key, value in (attrs or {}).items():
                f.attrs[key] = json.dumps(value)
            self._make("volumes/values", (shapes.n_channels,), np.float32)
            self._make("volumes/crc32", (), np.uint32)
            self._make("volumes/time", (), np.float64)
            self._make("markers/json", (), _STR)
            self._make("markers/time", (), np.float64)
            self._make("latents/z", shapes.z_shape, np.float32)
            self._make("latents/c", shapes.c_shape, np.float32)
            self._make("latents/header", (), _STR)
            self._make("frames/image", shapes.image_shape, np.uint8)
            self._make("frames/header", (), _STR)
            self._make("status/json", (), _STR)
            f.swmr_mode = True
            f.flush()
        except _H5_ERRORS as exc:
            self._datasets.clear()
            if getattr(self, "_file", None) is not None:
                _quietly(self._file.close)
            _quietly(self.path.unlink)  # nothing was recorded; a retry must not find it
            raise write_error(self.path, exc, "cannot create the recording") from None

    def _make(self, name: str, shape: tuple[int, ...], dtype: Any) -> None:
        self._datasets[name] = self._file.create_dataset(
            name, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype, chunks=(1, *shape)
        )

    def _append(self, group: str, values: Mapping[str, Any]) -> None:
        if self.error is not None:
            raise self.error
        last, others = _GROUPS[group]
        names = (*others, last)  # the group's length is set by `last`, written last
        prepared = {name: self._prepared(group, name, values[name]) for name in names}
        before = self._datasets[f"{group}/{last}"].shape[0]
        try:  # after the checks, only the disk can fail
            for name in names:
                ds = self._datasets[f"{group}/{name}"]
                ds.resize(before + 1, axis=0)
                ds[before] = prepared[name]
        except _H5_ERRORS as exc:
            raise self._fail(exc) from None

    def _prepared(self, group: str, name: str, value: Any) -> Any:
        """``value`` as dataset ``group/name`` stores it; ValueError or TypeError before any
        write if it cannot be, so a refused entry leaves no trace."""
        ds = self._datasets[f"{group}/{name}"]
        if h5py.check_string_dtype(ds.dtype) is not None:
            if not isinstance(value, str):
                raise TypeError(f"{group}/{name}: expected a str, found {type(value).__name__}")
            return value
        array = np.asarray(value, dtype=ds.dtype)
        if array.shape != ds.shape[1:]:
            raise ValueError(f"{group}/{name}: expected shape {ds.shape[1:]}, found {array.shape}")
        return array

    def flush(self) -> None:
        """Make everything appended so far durable and visible to readers."""
        if self.error is not None:
            raise self.error
        try:
            self._file.flush()
        except _H5_ERRORS as exc:
            raise self._fail(exc) from None
        self._committed = {
            g: self._datasets[f"{g}/{last}"].shape[0] for g, (last, _) in _GROUPS.items()
        }

    @property
    def committed(self) -> dict[str, int]:
        """Entries per group that the last successful flush made durable."""
        return dict(self._committed)

    def _fail(self, exc: BaseException) -> StorageError:
        """After a failed write: back to the last flush on disk, and refuse every later call."""
        self.error = write_error(self.path, exc, "cannot write the recording", self._committed)
        for name, ds in self._datasets.items():
            kept = self._committed[name.split("/")[0]]
            if ds.shape[0] != kept:
                _quietly(lambda ds=ds, kept=kept: ds.resize(kept, axis=0))
        _quietly(self._file.flush)  # shrinks only metadata already in the file
        return self.error

    def add_volume(self, values: np.ndarray, timestamp: float) -> None:
        """One volume as received, ``(n_channels,)`` float32 or int16 (the CRC-32 is of these
        bytes; other types are stored, and checksummed, as float32); LSL timestamp in s."""
        if values.dtype not in (np.float32, np.int16):
            values = values.astype(np.float32)
        self._append(
            "volumes",
            {
                "values": values,
                "crc32": zlib.crc32(np.ascontiguousarray(values)),
                "time": timestamp,
            },
        )

    def add_marker(self, event: Mapping[str, Any], timestamp: float) -> None:
        self._append("markers", {"json": json.dumps(dict(event)), "time": timestamp})

    def add_latents(self, header: Mapping[str, Any], z: np.ndarray, c: np.ndarray) -> None:
        self._append("latents", {"z": z, "c": c, "header": json.dumps(dict(header))})

    def add_frame(self, header: Mapping[str, Any], image: np.ndarray) -> None:
        self._append("frames", {"image": image, "header": json.dumps(dict(header))})

    def add_status(self, header: Mapping[str, Any]) -> None:
        self._append("status", {"json": json.dumps(dict(header))})

    def close(self) -> None:
        """Flush and close; a failing last flush raises StorageError (the file is still closed)."""
        if not self._file.id.valid:
            return
        failed: StorageError | None = None
        if self.error is None:
            try:
                self.flush()
            except StorageError as exc:
                failed = exc
        self._datasets.clear()
        _quietly(self._file.close)  # after a failure HDF5 reports it again; it is known
        if failed is not None:
            raise failed

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_error(
    path: Path, exc: BaseException, what: str, kept: Mapping[str, int] | None = None
) -> StorageError:
    """A StorageError naming ``path``, the OS cause HDF5 reported, and what the file keeps."""
    text = str(exc)
    code = exc.errno if isinstance(exc, OSError) and exc.errno else None
    if code is None and (match := _ERRNO_IN_MESSAGE.search(text)):
        code = int(match.group(1))
    if code is not None:
        cause = f"{os.strerror(code)} ({errno_codes.errorcode.get(code, code)})"
        if code in _WRITE_CAUSES:
            cause += f": {_WRITE_CAUSES[code]}"
    else:
        cause = f"HDF5 reported: {text.splitlines()[0] if text else type(exc).__name__}"
    message = f"{what} {path}: {cause}"
    if kept is not None:
        message += (
            f"; the file keeps the {kept['volumes']} volumes, {kept['latents']} latents and "
            f"{kept['frames']} frames flushed before, and nothing more is recorded in it"
        )
    return StorageError(message, code)


def _quietly(call: Callable[[], object]) -> None:
    """Run a clean-up step whose own HDF5 or OS error would only repeat one already reported."""
    try:
        call()
    except _H5_ERRORS as exc:
        log.debug("ignored during clean-up: %s", exc)


class RecordingReader:
    """Read a recording, complete entries only: while it is written, after a crash or a failed
    write, and with its end cut off (see the module doc).

    :attr:`truncated` is None, or ``(size, expected)`` in bytes when the file is
    shorter than its HDF5 superblock records.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"recording not found: {self.path}")
        size = self.path.stat().st_size
        expected = _recorded_size(self.path, size)
        self._size = size
        self.truncated = (size, expected) if expected is not None and size < expected else None
        self._complete: dict[str, int] = {}  # entries per group of a truncated file
        try:
            if self.truncated is None:
                self._file = h5py.File(self.path, "r", libver="latest", swmr=True)
            else:
                self._file = _open_read_once(self.path)
        except OSError as exc:
            raise DataError(self._problem(f"not a readable HDF5 recording: {exc}")) from None
        if self.truncated is not None:
            log.warning("%s", self._problem("reading the entries that are complete"))
        attrs = self._guard("attributes", lambda: dict(self._file.attrs))
        if attrs.get("format") != FORMAT:
            raise DataError(f"{self.path}: not an rt_recon recording (format attribute missing)")
        if int(attrs.get("version", -1)) != VERSION:
            raise DataError(
                f"{self.path}: recording version {attrs.get('version')}, "
                f"this rt_recon reads version {VERSION}"
            )
        self._attrs = attrs

    def _problem(self, what: str) -> str:
        """``what`` went wrong with this file, and that it is truncated if it is."""
        if self.truncated is None:
            return f"{self.path}: {what}"
        size, expected = self.truncated
        return (
            f"{self.path}: truncated: {size} of the {expected} bytes its HDF5 superblock "
            f"records are there (cut short by a full disk, a file size limit or a crash "
            f"while writing); {what}"
        )

    def _guard(self, part: str, read: Callable[[], _T]) -> _T:
        """``read()``, with HDF5 and JSON errors turned into a DataError naming the file."""
        try:
            return read()
        except (*_H5_ERRORS, KeyError, ValueError) as exc:
            raise DataError(self._problem(f"cannot read its {part}: {exc}")) from None

    def attr(self, key: str) -> Any:
        return json.loads(self._attrs[key]) if key in self._attrs else None

    def count(self, group: str) -> int:
        """Complete entries of ``group`` (refreshing to see a live writer's appends)."""
        if group not in self._complete:
            n = self._guard(group, lambda: self._count(group))
            if self.truncated is None:
                return n
            self._complete[group] = n  # a truncated file is not being written: count once
        return self._complete[group]

    def _count(self, group: str) -> int:
        last, others = _GROUPS[group]
        datasets = [self._file[f"{group}/{n}"] for n in (last, *others)]
        for ds in datasets:
            ds.refresh()
        n = min(ds.shape[0] for ds in datasets)
        if self.truncated is None:
            return n
        for ds in datasets:  # entries whose bytes lie in the lost part are not complete
            n = _chunks_inside(ds, n, self._size)
            if h5py.check_string_dtype(ds.dtype) is not None:
                n = _decodable(ds, n)
        if group == "volumes":
            n = self._crc_checked(self._file["volumes/values"][:n], self._file["volumes/crc32"][:n])
        return n

    def _crc_checked(self, values: np.ndarray, crcs: np.ndarray) -> int:
        """Volumes from the start whose values match their CRC-32; a bad one inside is an error."""
        n = len(values)
        bad = [i for i in range(n) if not _crc_matches(values[i], int(crcs[i]))]
        if not bad:
            return n
        if bad != list(range(bad[0], n)):
            raise DataError(
                self._problem(
                    f"volume {bad[0]} does not match its CRC-32 but volume "
                    f"{next(i for i in range(bad[0], n) if i not in bad)} does: the file is "
                    "damaged inside, not only at its end"
                )
            )
        log.warning(
            "%s",
            self._problem(f"the last {n - bad[0]} volume(s) fail their CRC-32; leaving them out"),
        )
        return bad[0]

    def volumes(self) -> tuple[np.ndarray, np.ndarray]:
        """``(values (n, n_channels), timestamps (n,))`` of every complete volume."""

        def read() -> tuple[np.ndarray, np.ndarray]:
            n = self.count("volumes")
            values, times = self._file["volumes/values"][:n], self._file["volumes/time"][:n]
            k = self._crc_checked(values, self._file["volumes/crc32"][:n])
            return values[:k], times[:k]

        return self._guard("volumes", read)

    def markers(self) -> list[tuple[dict, float]]:
        def read() -> list[tuple[dict, float]]:
            n = self.count("markers")
            texts, times = self._file["markers/json"][:n], self._file["markers/time"][:n]
            return [(json.loads(t), float(s)) for t, s in zip(texts, times, strict=True)]

        return self._guard("markers", read)

    def latents(self) -> tuple[list[dict], np.ndarray, np.ndarray]:
        def read() -> tuple[list[dict], np.ndarray, np.ndarray]:
            n = self.count("latents")
            headers = [json.loads(h) for h in self._file["latents/header"][:n]]
            return headers, self._file["latents/z"][:n], self._file["latents/c"][:n]

        return self._guard("latents", read)

    def latents_headers(self) -> list[dict]:
        """The latents' headers alone (the z and c arrays left on disk)."""

        def read() -> list[dict]:
            n = self.count("latents")
            return [json.loads(h) for h in self._file["latents/header"][:n]]

        return self._guard("latents", read)

    def frames(self) -> tuple[list[dict], np.ndarray]:
        def read() -> tuple[list[dict], np.ndarray]:
            n = self.count("frames")
            headers = [json.loads(h) for h in self._file["frames/header"][:n]]
            return headers, self._file["frames/image"][:n]

        return self._guard("frames", read)

    def status(self) -> list[dict]:
        def read() -> list[dict]:
            n = self.count("status")
            return [json.loads(s) for s in self._file["status/json"][:n]]

        return self._guard("status", read)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RecordingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _recorded_size(path: Path, size: int) -> int | None:
    """The file's size in bytes as its HDF5 superblock records it (versions 2 and 3, which
    this writer makes); None for older superblocks, left to HDF5's own checks."""
    if size == 0:
        raise DataError(f"{path}: not a readable HDF5 recording: the file is empty (0 bytes)")
    with path.open("rb") as fh:
        head = fh.read(64)
    cut = f"{path}: not a readable HDF5 recording: cut short inside its superblock ({size} bytes)"
    if not head.startswith(_HDF5_SIGNATURE):
        if _HDF5_SIGNATURE.startswith(head):
            raise DataError(cut)
        raise DataError(f"{path}: not a readable HDF5 recording: no HDF5 signature at its start")
    if len(head) < 10:
        raise DataError(cut)
    version, width = head[8], head[9]
    if version not in (2, 3):
        return None
    if len(head) < 12 + 4 * width + 4:
        raise DataError(cut)
    base = int.from_bytes(head[12 : 12 + width], "little")
    end = int.from_bytes(head[12 + 2 * width : 12 + 3 * width], "little")
    return base + end


@cache
def _read_attempts_setter() -> Callable[[int, int], int] | None:
    """HDF5's ``H5Pset_metadata_read_attempts``, which h5py does not wrap (None if not found)."""
    try:  # h5py's extension modules link libhdf5: its symbols resolve through them
        setter = ctypes.CDLL(h5py.h5p.__file__).H5Pset_metadata_read_attempts
    except (OSError, AttributeError):
        return None
    setter.argtypes = [ctypes.c_int64, ctypes.c_uint]  # hid_t is 64-bit since HDF5 1.10
    setter.restype = ctypes.c_int
    return setter


def _open_read_once(path: Path) -> h5py.File:
    """Open read-only without SWMR's retries of bad checksums (up to an hour per block)."""
    setter = _read_attempts_setter()
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    if setter is None or setter(fapl.id, 1) < 0:
        raise OSError("this h5py cannot limit HDF5's metadata read attempts, so it cannot open it")
    flags = h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ  # SWMR: no end-of-file check
    return h5py.File(h5py.h5f.open(os.fsencode(path), flags, fapl=fapl))


def _chunks_inside(ds: h5py.Dataset, n: int, size: int) -> int:
    """Entries from the start whose chunk (one per entry) lies inside the first ``size`` bytes."""
    for i in range(n):
        info = ds.id.get_chunk_info_by_coord((i,) + (0,) * (ds.ndim - 1))
        if info.byte_offset is None or info.byte_offset + info.size > size:
            return i
    return n


def _decodable(ds: h5py.Dataset, n: int) -> int:
    """Entries from the start of a JSON string dataset that read and decode."""

    def readable(k: int) -> bool:
        try:
            for text in ds[:k]:
                json.loads(text)
        except (*_H5_ERRORS, ValueError):
            return False
        return True

    if readable(n):
        return n
    low, high = 0, n - 1  # readable(low), not readable(high + 1)
    while low < high:
        middle = (low + high + 1) // 2
        if readable(middle):
            low = middle
        else:
            high = middle - 1
    return low


def _crc_matches(values: np.ndarray, crc: int) -> bool:
    """Whether a stored volume (float32) is the one whose CRC-32 was taken as received:
    float32, or int16 for an int16 stream (exact in float32)."""
    if zlib.crc32(np.ascontiguousarray(values)) == crc:
        return True
    as_int16 = values.astype(np.int16)
    return bool(np.array_equal(as_int16, values)) and zlib.crc32(as_int16) == crc
