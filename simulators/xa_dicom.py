"""One volume as one enhanced MR DICOM file, as a Siemens XA scanner's real-time export writes it.

XA (syngo MR XA) exports each volume of a running series as one enhanced
(multi-frame) MR image: one frame per slice, the geometry in the functional
groups (PS3.3 C.7.6.16): ``PlaneOrientationSequence``, ``PixelMeasuresSequence``,
``MRTimingAndRelatedParametersSequence`` and ``PixelValueTransformationSequence``
shared by all frames; ``PlanePositionSequence`` and ``FrameContentSequence``
(``FrameAcquisitionDateTime``, ``TemporalPositionIndex``, in-stack position) per
frame. ``InstanceNumber`` is the volume's acquisition number in its series
(1-based), ``SeriesNumber`` the series (a run). DICOM positions are LPS+
millimetres; rt_recon's affines are RAS+.

The file is built in memory and then written as an export does
(:func:`~rt_recon.simulators.scanner_export.write_export_file`): in chunks through one
open handle and closed, or under a hidden temporary name renamed when complete. The
bridge reads it back with :mod:`rt_recon.acquire.enhanced`. Built from the standard with
pydicom.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

#: SOP class of an Enhanced MR Image.
ENHANCED_MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
#: RAS+ <-> LPS+ (DICOM patient coordinates): flip x and y.
_RAS_TO_LPS = np.array([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class SeriesInfo:
    """What every file of one series shares (UIDs are made once per series)."""

    series_number: int
    tr_s: float
    description: str = "rt_recon simulated EPI"
    series_uid: str = ""
    study_uid: str = ""
    frame_of_reference_uid: str = ""

    @classmethod
    def new(cls, series_number: int, tr_s: float, description: str | None = None) -> SeriesInfo:
        return cls(
            series_number=series_number,
            tr_s=tr_s,
            description=description or cls.description,
            series_uid=generate_uid(),
            study_uid=generate_uid(),
            frame_of_reference_uid=generate_uid(),
        )


def export_name(series_number: int, instance: int, session: int = 1) -> str:
    """The file name a Siemens real-time export gives a volume: ``001_000011_000001.dcm``."""
    return f"{session:03d}_{series_number:06d}_{instance:06d}.dcm"


def _dicom_datetime(when: dt.datetime) -> str:
    return when.strftime("%Y%m%d%H%M%S.%f")


def _item(**attributes: object) -> Dataset:
    item = Dataset()
    for key, value in attributes.items():
        setattr(item, key, value)
    return item


def enhanced_volume(
    data: np.ndarray,
    affine: np.ndarray,
    series: SeriesInfo,
    instance: int,
    acquired: dt.datetime,
) -> Dataset:
    """One ``(x, y, z)`` int16 volume as an enhanced MR dataset.

    Args:
        data: voxel values, ``(x, y, z)``; frame ``k`` is slice ``data[:, :, k]``
            (rows along y, columns along x).
        affine: ``(4, 4)`` voxel -> RAS+ mm.
        series: the series it belongs to.
        instance: the volume's acquisition number in the series, 1-based.
        acquired: when the volume's acquisition began (naive local time, as the
            scanner's clock); slices follow in ascending order across the TR.
    """
    if data.ndim != 3 or data.dtype != np.int16:
        raise ValueError(f"expected an (x, y, z) int16 volume, found {data.shape} {data.dtype}")
    nx, ny, nz = data.shape
    zooms = np.linalg.norm(affine[:3, :3], axis=0)
    row_dir = affine[:3, 0] / zooms[0] * _RAS_TO_LPS  # along a row: increasing x
    col_dir = affine[:3, 1] / zooms[1] * _RAS_TO_LPS  # down a column: increasing y
    slice_s = series.tr_s / nz
    per_frame = []
    for k in range(nz):
        position = (affine @ np.array([0.0, 0.0, k, 1.0]))[:3] * _RAS_TO_LPS
        content = _item(
            FrameAcquisitionDateTime=_dicom_datetime(acquired + dt.timedelta(seconds=k * slice_s)),
            FrameAcquisitionNumber=instance,
            TemporalPositionIndex=1,
            InStackPositionNumber=k + 1,
            StackID="1",
        )
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
                    SpacingBetweenSlices=f"{zooms[2]:.6f}",
                )
            ]
        ),
        PlaneOrientationSequence=Sequence(
            [_item(ImageOrientationPatient=[f"{v:.8f}" for v in np.r_[row_dir, col_dir]])]
        ),
        MRTimingAndRelatedParametersSequence=Sequence(
            [_item(RepetitionTime=f"{series.tr_s * 1000.0:.3f}")]
        ),
        PixelValueTransformationSequence=Sequence(
            [_item(RescaleSlope="1", RescaleIntercept="0", RescaleType="US")]
        ),
    )
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENHANCED_MR_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    ds.SOPClassUID = ENHANCED_MR_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.Manufacturer = "SIEMENS"
    ds.ManufacturerModelName = "rt_recon simulated participant"
    ds.SoftwareVersions = "syngo MR XA (simulated)"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.StudyInstanceUID = series.study_uid
    ds.SeriesInstanceUID = series.series_uid
    ds.FrameOfReferenceUID = series.frame_of_reference_uid
    ds.SeriesNumber = series.series_number
    ds.SeriesDescription = series.description
    ds.ProtocolName = series.description
    ds.InstanceNumber = instance
    ds.AcquisitionNumber = instance
    ds.AcquisitionDateTime = _dicom_datetime(acquired)
    ds.ContentDate = acquired.strftime("%Y%m%d")
    ds.ContentTime = acquired.strftime("%H%M%S.%f")
    ds.Rows, ds.Columns = ny, nx
    ds.NumberOfFrames = nz
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1  # signed
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    frames = np.ascontiguousarray(np.transpose(data, (2, 1, 0)))  # (z, y, x): rows are y
    ds.PixelData = frames.astype("<i2").tobytes()
    return ds


def encode(ds: Dataset) -> bytes:
    """The dataset as the bytes of a DICOM file (preamble, file meta, explicit VR LE)."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
