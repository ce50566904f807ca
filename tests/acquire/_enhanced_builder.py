"""Build enhanced (multi-frame) MR DICOM files with pydicom, from the standard's modules.

No XA export is in the shared data, so the tests make their own: a known
``(x, y, z, t)`` array and a known oblique RAS+ affine go in; the frames'
functional groups (PS3.3 C.7.6.16) are derived from them; the reader must
give the array back in canonical order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
LPS = np.array([-1.0, -1.0, 1.0])


def oblique_affine(zooms=(2.5, 2.5, 3.0), degrees=(12.0, -7.0, 20.0), origin=(-80.0, -95.0, -40.0)):
    """A RAS+ voxel->mm affine rotated about x, y and z."""
    ax, ay, az = np.radians(degrees)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ ry @ rx @ np.diag(zooms)
    affine[:3, 3] = origin
    return affine


def _item(**attributes) -> Dataset:
    item = Dataset()
    for key, value in attributes.items():
        setattr(item, key, value)
    return item


def write_enhanced(
    path: Path,
    data: np.ndarray,
    affine_ras: np.ndarray,
    *,
    tr_ms: float = 800.0,
    instance: int = 1,
    series_uid: str | None = None,
    series_number: int = 11,
    slope: float = 1.0,
    intercept: float = 0.0,
    frame_order: np.ndarray | None = None,
    temporal_index: bool = True,
    start: str = "20240102103000.000000",
) -> Path:
    """Write ``data`` ``(x, y, z[, t])`` as one enhanced MR file; frames in ``frame_order``."""
    if data.ndim == 3:
        data = data[..., np.newaxis]
    nx, ny, nz, nt = data.shape
    zooms = np.linalg.norm(affine_ras[:3, :3], axis=0)
    row_dir = affine_ras[:3, 0] / zooms[0] * LPS  # along a row: increasing column (x)
    col_dir = affine_ras[:3, 1] / zooms[1] * LPS  # down a column: increasing row (y)
    frames = [(t, k) for t in range(nt) for k in range(nz)]
    order = np.arange(len(frames)) if frame_order is None else np.asarray(frame_order)
    pixels = np.empty((len(frames), ny, nx), dtype=data.dtype)
    per_frame = []
    for f, src in enumerate(order):
        t, k = frames[src]
        pixels[f] = data[:, :, k, t].T  # rows are y, columns are x
        position = (affine_ras @ np.array([0.0, 0.0, k, 1.0]))[:3] * LPS
        content = _item(
            FrameAcquisitionDateTime=start[:8] + f"{103000 + t:06d}.{k * 25:06d}",
            InStackPositionNumber=k + 1,
            StackID="1",
        )
        if temporal_index:
            content.TemporalPositionIndex = t + 1
        per_frame.append(
            _item(
                FrameContentSequence=Sequence([content]),
                PlanePositionSequence=Sequence(
                    [_item(ImagePositionPatient=[f"{v:.6f}" for v in position])]
                ),
            )
        )
    shared = _item(
        PixelMeasuresSequence=Sequence(
            [
                _item(
                    PixelSpacing=[f"{zooms[1]:.6f}", f"{zooms[0]:.6f}"],
                    SliceThickness=f"{zooms[2]:.6f}",
                )
            ]
        ),
        PlaneOrientationSequence=Sequence(
            [_item(ImageOrientationPatient=[f"{v:.8f}" for v in np.r_[row_dir, col_dir]])]
        ),
        MRTimingAndRelatedParametersSequence=Sequence([_item(RepetitionTime=tr_ms)]),
        PixelValueTransformationSequence=Sequence(
            [_item(RescaleSlope=f"{slope}", RescaleIntercept=f"{intercept}", RescaleType="US")]
        ),
    )
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENHANCED_MR
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    ds.SOPClassUID = ENHANCED_MR
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.Manufacturer = "SIEMENS"
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance
    ds.Rows, ds.Columns = ny, nx
    ds.NumberOfFrames = len(frames)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if data.dtype == np.int16 else 0
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_slices(
    folder: Path,
    data: np.ndarray,
    affine_ras: np.ndarray,
    *,
    series_uid: str = "1.2.3.77",
    manufacturer: str = "GE MEDICAL SYSTEMS",
    tr_ms: float = 1000.0,
) -> list[Path]:
    """Write ``data`` ``(x, y, z, t)`` as classic one-slice MR files, numbered as GE does."""
    nx, ny, nz, nt = data.shape
    zooms = np.linalg.norm(affine_ras[:3, :3], axis=0)
    row_dir = affine_ras[:3, 0] / zooms[0] * LPS
    col_dir = affine_ras[:3, 1] / zooms[1] * LPS
    paths = []
    for t in range(nt):
        for k in range(nz):
            instance = t * nz + k + 1  # GE counts slices through the whole run
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = Dataset()
            ds.file_meta = meta
            ds.preamble = b"\0" * 128
            ds.SOPClassUID = meta.MediaStorageSOPClassUID
            ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
            ds.Modality = "MR"
            ds.Manufacturer = manufacturer
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = 5
            ds.InstanceNumber = instance
            ds.ImagesInAcquisition = nz
            ds.RepetitionTime = tr_ms
            position = (affine_ras @ np.array([0.0, 0.0, k, 1.0]))[:3] * LPS
            ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
            ds.ImageOrientationPatient = [f"{v:.8f}" for v in np.r_[row_dir, col_dir]]
            ds.PixelSpacing = [f"{zooms[1]:.6f}", f"{zooms[0]:.6f}"]
            ds.Rows, ds.Columns = ny, nx
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated = 16
            ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 1
            ds.PixelData = np.ascontiguousarray(data[:, :, k, t].T.astype(np.int16)).tobytes()
            path = folder / f"i{1000 + instance}.MRDC.{instance}"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    return paths
