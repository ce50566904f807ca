"""GE, Philips and Siemens real-time exports: shapes, slice order and affines from their headers.

Each check goes back to the file's own header, not to the reader's code:
every pixel of every GE slice file must land, through the streamed affine,
on a whole voxel holding that pixel's value (DICOM's ImagePositionPatient,
ImageOrientationPatient and PixelSpacing); every Siemens mosaic tile must
land on the slice centre Siemens' protocol (ASCCONV ``sSliceArray``) gives;
every Philips slice centre must match the PAR's per-image off-centre.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pydicom
import pytest
from nibabel import parrec
from nibabel.nicom import csareader

from rt_recon.acquire.formats import ReadOptions
from rt_recon.acquire.series import read_series
from tests.acquire._shared import shared_path

pytestmark = pytest.mark.shared_data

LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])


def _voxels_of(affine: np.ndarray, world_ras: np.ndarray) -> np.ndarray:
    """World points ``(n, 3)`` RAS mm -> voxel coordinates ``(n, 3)`` of the stream."""
    inverse = np.linalg.inv(affine)
    return world_ras @ inverse[:3, :3].T + inverse[:3, 3]


def _assert_slice_lands_on_voxels(pixels, origin_lps, row_dir, col_dir, spacing, series, t):
    """Every pixel (r, c) at origin + c*dc*row_dir + r*dr*col_dir holds the same value."""
    rows, cols = pixels.shape
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    world_lps = (
        origin_lps + c[..., None] * spacing[1] * row_dir + r[..., None] * spacing[0] * col_dir
    ).reshape(-1, 3)
    vox = _voxels_of(series.affine, world_lps * LPS_TO_RAS)
    assert np.abs(vox - np.round(vox)).max() < 1e-3, "a pixel falls between voxels"
    ijk = np.round(vox).astype(int)
    assert ijk.min() >= 0 and np.all(ijk < np.array(series.shape))
    got = series.data()[ijk[:, 0], ijk[:, 1], ijk[:, 2], t]
    np.testing.assert_array_equal(got, pixels.reshape(-1))
    return ijk[:, 2]


def test_ge_slices_stack_into_volumes_matching_their_headers():
    folder = shared_path("pyneal_vendor_samples", "GE_env", "funcData", "s1925")
    series = read_series(folder)
    assert series.shape == (64, 64, 18)
    assert series.indices == [1, 2, 3]
    assert series.tr_s == pytest.approx(1.0)
    assert series.missing == [] and series.unreadable == []
    slices_seen: dict[int, list[int]] = {}
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path)
        t = (int(ds.InstanceNumber) - 1) // 18  # GE numbers slices through the run
        z = _assert_slice_lands_on_voxels(
            ds.pixel_array,
            np.array(ds.ImagePositionPatient, float),
            np.array(ds.ImageOrientationPatient[:3], float),
            np.array(ds.ImageOrientationPatient[3:], float),
            [float(v) for v in ds.PixelSpacing],
            series,
            t,
        )
        assert len(set(z)) == 1, "one slice file must fill one voxel plane"
        slices_seen.setdefault(t, []).append(int(z[0]))
    for t, planes in slices_seen.items():
        assert sorted(planes) == list(range(18)), f"volume {t + 1} does not fill every plane once"
    # slice order: the header's slice locations climb with the stacked plane index
    locations = {}
    for path in folder.iterdir():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if int(ds.InstanceNumber) <= 18:
            world = np.array(ds.ImagePositionPatient, float) * LPS_TO_RAS
            locations[float(ds.SliceLocation)] = _voxels_of(series.affine, world[None])[0, 2]
    planes = [locations[k] for k in sorted(locations)]
    assert np.all(np.diff(planes) > 0) or np.all(np.diff(planes) < 0)


def _ascconv_slice_centres(ds: pydicom.Dataset) -> np.ndarray:
    tags = csareader.get_csa_header(ds, "series")["tags"]
    text = tags["MrPhoenixProtocol"]["items"][0]
    block = text[text.index("### ASCCONV BEGIN") : text.index("### ASCCONV END")]
    centres: dict[int, dict[str, float]] = {}
    for m in re.finditer(
        r"sSliceArray\.asSlice\[(\d+)\]\.sPosition\.d(Sag|Cor|Tra)\s*=\s*([-\d.eE+]+)", block
    ):
        centres.setdefault(int(m.group(1)), {})[m.group(2)] = float(m.group(3))
    return np.array(
        [[centres[k].get(a, 0.0) for a in ("Sag", "Cor", "Tra")] for k in sorted(centres)]
    )


def test_siemens_mosaic_tiles_land_on_their_protocol_slice_centres():
    folder = shared_path("pyneal_vendor_samples", "Siemens_env", "funcData")
    series = read_series(folder)
    assert series.shape == (64, 64, 18)
    assert series.indices == [1, 2, 3]
    for t, path in enumerate(sorted(folder.glob("*.dcm"))):
        ds = pydicom.dcmread(path)
        centres = _ascconv_slice_centres(ds)  # LPS mm, in the mosaic's tile order
        assert len(centres) == 18
        tiles_per_row = math.ceil(math.sqrt(len(centres)))
        n = ds.Rows // tiles_per_row
        row_dir = np.array(ds.ImageOrientationPatient[:3], float)
        col_dir = np.array(ds.ImageOrientationPatient[3:], float)
        spacing = [float(v) for v in ds.PixelSpacing]
        mosaic = ds.pixel_array
        planes = []
        for k, centre in enumerate(centres):
            tile = mosaic[
                (k // tiles_per_row) * n : (k // tiles_per_row + 1) * n,
                (k % tiles_per_row) * n : (k % tiles_per_row + 1) * n,
            ]
            # Siemens' slice centre is the centre of the field of view: pixel (n/2, n/2)
            origin = centre - (n / 2) * spacing[1] * row_dir - (n / 2) * spacing[0] * col_dir
            z = _assert_slice_lands_on_voxels(tile, origin, row_dir, col_dir, spacing, series, t)
            planes.append(int(z[0]))
        assert sorted(planes) == list(range(18))
        assert planes == sorted(planes) or planes == sorted(planes, reverse=True)


def test_philips_parrec_slices_match_their_par_offcentres():
    folder = shared_path("pyneal_vendor_samples", "Philips_env", "funcData", "0001")
    series = read_series(folder, ReadOptions(tr_s=1.0))  # the XTC dump's header says TR 1 ms
    assert series.shape == (80, 80, 15)
    assert series.indices == [1, 2, 3, 4]
    assert series.volumes[0].data.dtype == np.float32
    for t, par in enumerate(sorted(folder.glob("*.par"))):
        with par.open() as fh:
            _, defs = parrec.parse_PAR_header(fh)
        magnitude = defs[defs["rescale intercept"] == 0]  # phase carries -pi*1000
        assert len(magnitude) == 15
        raw = np.fromfile(par.with_suffix(".rec"), dtype="<u2").reshape(-1, 80 * 80)
        for image in magnitude:
            ap, fh_, rl = image["image offcentre"]
            centre_ras = np.array([-rl, -ap, fh_])
            vox = _voxels_of(series.affine, centre_ras[None])[0]
            # centre of the slice: (n - 1) / 2 in-plane, a whole plane through-slice
            assert abs(vox[2] - round(vox[2])) < 0.05
            plane = round(vox[2])
            assert np.abs(vox[:2] - 39.5).max() < 0.05  # PAR rounds off-centres to 0.1 mm
            stored = raw[image["index in REC file"]].astype(np.float64)
            display = stored * image["rescale slope"] + image["rescale intercept"]
            got = series.data()[:, :, plane, t].astype(np.float64)
            np.testing.assert_allclose(np.sort(got.ravel()), np.sort(display), rtol=1e-6)
            assert plane == image["slice number"] - 1 or plane == 15 - image["slice number"]


def test_philips_without_a_tr_says_what_to_do():
    from rt_recon.errors import DataError

    folder = shared_path("pyneal_vendor_samples", "Philips_env", "funcData", "0001")
    with pytest.raises(DataError, match="--tr"):
        read_series(folder)
