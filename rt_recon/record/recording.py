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

    attrs: format, version, created, config (JSON), stream (JSON), bundle (JSON)
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
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from rt_recon.errors import DataError

FORMAT = "rt_recon-recording"
VERSION = 1
_STR = h5py.string_dtype(encoding="utf-8")


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

    Use as a context manager, or call :meth:`close`.
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
        self._file = h5py.File(self.path, "w", libver="latest")
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

    def _make(self, name: str, shape: tuple[int, ...], dtype: Any) -> None:
        self._file.create_dataset(
            name, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype, chunks=(1, *shape)
        )

    def _append(self, group: str, values: Mapping[str, Any]) -> None:
        last, others = _GROUPS[group]
        for name in (*others, last):  # the group's length is set by `last`, written last
            ds = self._file[f"{group}/{name}"]
            n = ds.shape[0]
            ds.resize(n + 1, axis=0)
            ds[n] = values[name]

    def flush(self) -> None:
        """Make everything appended so far durable and visible to readers."""
        self._file.flush()

    def add_volume(self, values: np.ndarray, timestamp: float) -> None:
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
        if self._file.id.valid:
            self._file.flush()
            self._file.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RecordingReader:
    """Read a recording, complete entries only, also while it is being written or after a crash."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"recording not found: {self.path}")
        try:
            self._file = h5py.File(self.path, "r", libver="latest", swmr=True)
        except OSError as exc:
            raise DataError(f"{self.path}: not a readable HDF5 recording: {exc}") from None
        if self._file.attrs.get("format") != FORMAT:
            raise DataError(f"{self.path}: not an rt_recon recording (format attribute missing)")
        if int(self._file.attrs.get("version", -1)) != VERSION:
            raise DataError(
                f"{self.path}: recording version {self._file.attrs.get('version')}, "
                f"this rt_recon reads version {VERSION}"
            )

    def attr(self, key: str) -> Any:
        return json.loads(self._file.attrs[key]) if key in self._file.attrs else None

    def count(self, group: str) -> int:
        """Complete entries of ``group`` (refreshing to see a live writer's appends)."""
        last, others = _GROUPS[group]
        datasets = [self._file[f"{group}/{n}"] for n in (last, *others)]
        for ds in datasets:
            ds.refresh()
        return min(ds.shape[0] for ds in datasets)

    def volumes(self) -> tuple[np.ndarray, np.ndarray]:
        """``(values (n, n_channels), timestamps (n,))`` of every complete volume."""
        n = self.count("volumes")
        return self._file["volumes/values"][:n], self._file["volumes/time"][:n]

    def markers(self) -> list[tuple[dict, float]]:
        n = self.count("markers")
        texts, times = self._file["markers/json"][:n], self._file["markers/time"][:n]
        return [(json.loads(t), float(s)) for t, s in zip(texts, times, strict=True)]

    def latents(self) -> tuple[list[dict], np.ndarray, np.ndarray]:
        n = self.count("latents")
        headers = [json.loads(h) for h in self._file["latents/header"][:n]]
        return headers, self._file["latents/z"][:n], self._file["latents/c"][:n]

    def frames(self) -> tuple[list[dict], np.ndarray]:
        n = self.count("frames")
        return [json.loads(h) for h in self._file["frames/header"][:n]], self._file["frames/image"][
            :n
        ]

    def status(self) -> list[dict]:
        n = self.count("status")
        return [json.loads(s) for s in self._file["status/json"][:n]]

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RecordingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
