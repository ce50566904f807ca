"""Siemens mosaic DICOM: one file per volume, the slices tiled in one 2D image.

The tiling, the number of slices and the true slice positions live in
Siemens' private CSA header; nibabel's ``nibabel.nicom.dicomwrappers``
reads them (including H>>F slice numbering and CMRR multiband mosaics) and
gives the volume's affine in DICOM's LPS+ convention, which is flipped here
to RAS+ before reorienting to canonical (see :mod:`rt_recon.acquire.volume`).
Checked voxel for voxel against dcm2niix (tests/acquire/test_dcm_qa_mosaic.py).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # nibabel's "highly experimental" notice
    from nibabel.nicom import dicomwrappers

from rt_recon.acquire.dicom import acquisition_time, repetition_time_s, series_identity
from rt_recon.acquire.volume import LPS_TO_RAS, Volume
from rt_recon.errors import DataError


def read_volume(ds: pydicom.Dataset, path: Path) -> Volume:
    """The volume in one Siemens mosaic file (``ds`` read in full, pixel data complete)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # nibabel's "experimental" notice
        try:
            wrapper = dicomwrappers.wrapper_from_data(ds)
        except Exception as exc:
            raise DataError(f"{path.name}: cannot read the Siemens CSA header: {exc}") from None
        if not isinstance(wrapper, dicomwrappers.MosaicWrapper):
            raise DataError(
                f"{path.name}: ImageType says MOSAIC but the file has no Siemens CSA mosaic "
                f"header (NumberOfImagesInMosaic); found {type(wrapper).__name__}"
            )
        try:
            data = np.asarray(wrapper.get_data())
            affine_lps = np.asarray(wrapper.affine, dtype=np.float64)
        except Exception as exc:
            raise DataError(f"{path.name}: cannot unpack the mosaic: {exc}") from None
    if data.ndim != 3:
        raise DataError(f"{path.name}: expected a 3D volume in the mosaic, found {data.shape}")
    series, label = series_identity(ds, path)
    date, seconds = acquisition_time(ds)
    index = ds.get("AcquisitionNumber") or ds.get("InstanceNumber")
    if index in (None, ""):
        raise DataError(f"{path.name}: no AcquisitionNumber or InstanceNumber in the header")
    return Volume.from_native(
        data,
        LPS_TO_RAS @ affine_lps,
        index=int(index),
        series=series,
        series_label=label,
        scanner_time=seconds,
        date=date,
        tr_s=repetition_time_s(ds),
        sources=(path,),
    )
