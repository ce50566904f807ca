"""Real scanner series for the run tests: copies renumbered as new series, a decoder bundle on
their grid, an export that holds a series' first volume until its consumers are on its stream,
and a collector of the decoder's latents and heartbeats.

The series are real Siemens mosaic files (``../shared/data``), copied; a second series of the
same acquisition is made by rewriting the copies' SeriesNumber, SeriesInstanceUID, acquisition
and instance numbers and SOP instance UIDs with pydicom (pixel data untouched), as a scanner
numbers the next run.
"""

from __future__ import annotations

import dataclasses
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from rt_recon.acquire.series import natural_key, read_series
from rt_recon.decode.bundle import DecoderBundle, StreamSpec


@dataclass(frozen=True)
class ScannerSeries:
    """One series on disk, its files in acquisition order, and what a reader makes of them.

    Attributes:
        label: the series number (the stream's ``run`` and ``series``).
        files: one file per volume, acquisition number 1, 2, ...
        flats: ``(n, n_voxels)`` float32, each volume as the stream carries it.
        shape: ``(x, y, z)`` of its volumes.
    """

    label: str
    files: tuple[Path, ...]
    flats: np.ndarray
    shape: tuple[int, int, int]

    @property
    def crcs(self) -> list[int]:
        """CRC-32 of each volume as sent (what the decoder's latents carry)."""
        return [zlib.crc32(flat) for flat in self.flats]

    def __len__(self) -> int:
        return len(self.files)


def copy_series(source: Path, dest: Path, n: int) -> ScannerSeries:
    """The first ``n`` files of the series in folder ``source``, copied into ``dest``."""
    dest.mkdir(parents=True)
    for path in sorted(source.glob("*.dcm"), key=natural_key)[:n]:
        shutil.copyfile(path, dest / path.name)
    return _read(dest)


def renumbered_series(
    source: Path, dest: Path, series_number: int, first: int, n: int
) -> ScannerSeries:
    """Files ``first .. first + n - 1`` (1-based, in acquisition order) of the series in
    ``source`` as a new series ``series_number``: acquisition numbers 1..n, a new series UID,
    Siemens real-time export names (``001_<series>_<volume>.dcm``)."""
    dest.mkdir(parents=True)
    files = sorted(source.glob("*.dcm"), key=natural_key)[first - 1 : first - 1 + n]
    series_uid = generate_uid()
    for number, path in enumerate(files, start=1):
        ds = pydicom.dcmread(path)
        ds.SeriesNumber = series_number
        ds.SeriesInstanceUID = series_uid
        ds.AcquisitionNumber = number
        ds.InstanceNumber = number
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(dest / f"001_{series_number:06d}_{number:06d}.dcm")
    return _read(dest)


def _read(folder: Path) -> ScannerSeries:
    series = read_series(folder)
    assert series.indices == list(range(1, len(series.volumes) + 1)), series.indices
    assert not series.unreadable and not series.duplicates, folder
    files = tuple(v.sources[0] for v in series.volumes)
    flats = np.stack([v.flat() for v in series.volumes])
    return ScannerSeries(series.label, files, flats, series.shape)


def bundle_on_grid(small_bundle: Path, series: Path, dest: Path) -> Path:
    """The small test bundle re-aimed at the grid of the series in folder ``series``: its
    stream spec (shape, channels, affine) is that grid's, each head reads the grid's brightest
    voxels (so every voxel it reads varies), no motion correction (its reference is another
    grid's). The latents mean nothing; the bundle loads and decodes that grid without error."""
    volumes = read_series(series).volumes
    first = volumes[0]
    bundle = DecoderBundle.load(small_bundle)
    brightest = np.argsort(first.flat(), kind="stable")[::-1]
    for head in bundle.heads.values():
        head.voxels = np.sort(brightest[: head.voxels.size]).astype(np.int64)
    bundle.stream = StreamSpec(first.shape, first.flat().size, "full", first.affine)
    bundle.preprocess = dataclasses.replace(bundle.preprocess, motion=None)
    bundle.reference = None
    return bundle.save(dest)
