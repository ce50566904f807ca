"""Enhanced (multi-frame) MR DICOM, as Siemens XA-series scanners export it.

One file holds many frames (2D slices). Each frame's geometry and timing is
in the functional groups (PS3.3 C.7.6.16): ``PlanePositionSequence``,
``PlaneOrientationSequence``, ``PixelMeasuresSequence`` and
``PixelValueTransformationSequence`` per frame or shared by all, and
``FrameContentSequence`` (``TemporalPositionIndex``,
``FrameAcquisitionDateTime``) per frame. Frames are grouped into volumes by
``TemporalPositionIndex`` (or, where it is absent, by how often a slice
position has already been seen), then each volume is stacked along the slice
normal exactly as single-slice files are (:func:`rt_recon.acquire.slices.stack_slices`).

A file with one volume (XA's real-time export writes one per TR) gets the
file's InstanceNumber as its volume index; a file with many volumes gives
each its temporal position.

No real XA export is in the shared test data: this reader is tested on
enhanced files built with pydicom from the standard (tests/acquire/test_enhanced.py).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
from pydicom.sequence import Sequence

from rt_recon.acquire.dicom import (
    apply_rescale,
    parse_datetime,
    repetition_time_s,
    series_identity,
)
from rt_recon.acquire.slices import SliceImage, stack_slices
from rt_recon.acquire.volume import Volume
from rt_recon.errors import DataError


def _group_item(frame: pydicom.Dataset, shared: pydicom.Dataset | None, name: str, path: Path):
    """First item of functional group ``name``: per-frame first, then shared."""
    for source in (frame, shared):
        if source is not None and name in source:
            sequence: Sequence = source[name].value
            if len(sequence):
                return sequence[0]
    return None


def _required(item, attribute: str, group: str, path: Path, frame_no: int):
    if item is None or attribute not in item:
        raise DataError(
            f"{path.name}: frame {frame_no + 1} has no {group}/{attribute} "
            "(per-frame or shared); cannot place it in space"
        )
    return item.get(attribute)


def read_volumes(ds: pydicom.Dataset, path: Path) -> list[Volume]:
    """Every volume in one enhanced MR file (``ds`` read in full, pixel data complete)."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if not per_frame:
        raise DataError(f"{path.name}: an enhanced DICOM without PerFrameFunctionalGroupsSequence")
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else None
    n_frames = int(ds.get("NumberOfFrames", len(per_frame)) or len(per_frame))
    if len(per_frame) != n_frames:
        raise DataError(
            f"{path.name}: NumberOfFrames is {n_frames} but there are "
            f"{len(per_frame)} per-frame functional groups"
        )
    try:
        pixels = np.asarray(ds.pixel_array)
    except Exception as exc:
        raise DataError(f"{path.name}: cannot decode the pixel data: {exc}") from None
    if pixels.ndim == 2:
        pixels = pixels[np.newaxis]
    series, label = series_identity(ds, path)
    tr_s = repetition_time_s(ds)

    frames: list[tuple[int | None, str | None, float | None, np.ndarray, tuple]] = []
    for i, frame in enumerate(per_frame):
        position = _required(
            _group_item(frame, shared, "PlanePositionSequence", path),
            "ImagePositionPatient",
            "PlanePositionSequence",
            path,
            i,
        )
        orientation = _required(
            _group_item(frame, shared, "PlaneOrientationSequence", path),
            "ImageOrientationPatient",
            "PlaneOrientationSequence",
            path,
            i,
        )
        spacing = _required(
            _group_item(frame, shared, "PixelMeasuresSequence", path),
            "PixelSpacing",
            "PixelMeasuresSequence",
            path,
            i,
        )
        transform = _group_item(frame, shared, "PixelValueTransformationSequence", path)
        content = _group_item(frame, None, "FrameContentSequence", path)
        temporal = content.get("TemporalPositionIndex") if content is not None else None
        date, seconds = (
            parse_datetime(content.get("FrameAcquisitionDateTime"))
            if content is not None
            else (None, None)
        )
        values = apply_rescale(
            pixels[i],
            transform.get("RescaleSlope") if transform is not None else None,
            transform.get("RescaleIntercept") if transform is not None else None,
        )
        geometry = (
            np.asarray([float(v) for v in position]),
            np.asarray([float(v) for v in orientation]),
            [float(v) for v in spacing],
        )
        frames.append(
            (None if temporal in (None, "") else int(temporal), date, seconds, values, geometry)
        )

    groups: dict[int, list[int]] = defaultdict(list)
    if all(f[0] is not None for f in frames):
        for i, f in enumerate(frames):
            groups[int(f[0])].append(i)  # type: ignore[arg-type]
    else:  # no temporal index: the k-th frame seen at a position belongs to volume k
        seen: dict[float, int] = defaultdict(int)
        for i, f in enumerate(frames):
            orientation = f[4][1]
            normal = np.cross(orientation[:3], orientation[3:])
            key = round(float(f[4][0] @ normal), 3)
            seen[key] += 1
            groups[seen[key]].append(i)
    sizes = {len(v) for v in groups.values()}
    if len(sizes) != 1:
        raise DataError(
            f"{path.name}: volumes in this file have different numbers of slices "
            f"({sorted(sizes)}); expected the same number in every temporal position"
        )
    single = len(groups) == 1
    file_index = ds.get("InstanceNumber") or ds.get("AcquisitionNumber") or 1

    volumes = []
    for temporal_index in sorted(groups):
        members = groups[temporal_index]
        index = int(file_index) if single else int(temporal_index)
        images = []
        for i in members:
            _, date, seconds, values, (position, orientation, spacing) = frames[i]
            images.append(
                SliceImage(
                    pixels=np.asarray(values).T,
                    position=position,
                    row_dir=orientation[:3],
                    col_dir=orientation[3:],
                    spacing=(spacing[1], spacing[0]),
                    volume_index=index,
                    n_slices=len(members),
                    series=series,
                    series_label=label,
                    scanner_time=seconds,
                    date=date,
                    tr_s=tr_s,
                    source=path,
                )
            )
        volume = stack_slices(images)
        volumes.append(
            Volume(
                data=volume.data,
                affine=volume.affine,
                index=volume.index,
                series=volume.series,
                series_label=volume.series_label,
                scanner_time=volume.scanner_time,
                date=next((img.date for img in images if img.date), None),
                tr_s=tr_s,
                sources=(path,),
            )
        )
    return volumes
