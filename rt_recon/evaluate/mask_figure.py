"""Masks drawn over slices of the mean EPI, for the fit report: which voxels each head reads.

:func:`draw_masks` writes a PNG (matplotlib's Agg backend, no display): a row
of axial slices (``z`` the third voxel axis, inferior to superior, RAS+ stream
order) of the mean EPI in grey, each mask's outline and a light fill in its
own colour, a legend with each mask's voxel count. :func:`bundle_masks` turns
a decoder bundle's heads (and its noise pool) into such masks.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from rt_recon.decode.bundle import DecoderBundle
from rt_recon.errors import ShapeMismatchError

#: Colours of successive masks (matplotlib's tab10).
_COLOURS = ("tab:red", "tab:cyan", "tab:olive", "tab:purple", "tab:orange", "tab:green")


def _slices(masks: Mapping[str, np.ndarray], depth: int, n: int) -> list[int]:
    """``n`` axial slices evenly over the extent the masks cover (the whole depth if none)."""
    covered = np.flatnonzero(np.any([m.any(axis=(0, 1)) for m in masks.values()], axis=0))
    lo, hi = (covered[0], covered[-1]) if covered.size else (0, depth - 1)
    return sorted({round(float(v)) for v in np.linspace(lo, hi, min(n, hi - lo + 1))})


def draw_masks(
    mean_epi: np.ndarray,
    masks: Mapping[str, np.ndarray],
    path: str | Path,
    n_slices: int = 8,
    title: str | None = None,
) -> Path:
    """Write ``masks`` (name -> ``(x, y, z)`` bool) over axial slices of ``mean_epi``
    ``(x, y, z)`` as a PNG at ``path``; return the path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    mean_epi = np.asarray(mean_epi, dtype=np.float32)
    if mean_epi.ndim != 3:
        raise ShapeMismatchError(f"mean EPI must be (x, y, z), found shape {mean_epi.shape}")
    for name, mask in masks.items():
        if np.shape(mask) != mean_epi.shape:
            raise ShapeMismatchError(
                f"mask {name!r} has shape {np.shape(mask)}, the mean EPI {mean_epi.shape}"
            )
    bools = {name: np.asarray(m, dtype=bool) for name, m in masks.items()}
    slices = _slices(bools, mean_epi.shape[2], n_slices)
    lo, hi = np.percentile(mean_epi, [1, 99.5])
    fig = Figure(figsize=(2.0 * len(slices), 2.6), dpi=100)
    axes = fig.subplots(1, len(slices), squeeze=False)[0]
    for ax, k in zip(axes, slices, strict=True):
        # x right, y anterior up: transpose so rows are y, origin at the bottom
        ax.imshow(mean_epi[:, :, k].T, cmap="gray", vmin=lo, vmax=hi, origin="lower")
        for (_, mask), colour in zip(bools.items(), _COLOURS, strict=False):
            plane = mask[:, :, k].T.astype(float)
            if plane.any():
                rgba = np.zeros((*plane.shape, 4))
                rgba[..., :3] = matplotlib.colors.to_rgb(colour)
                rgba[..., 3] = 0.35 * plane
                ax.imshow(rgba, origin="lower")
                ax.contour(plane, levels=[0.5], colors=[colour], linewidths=0.8)
        ax.set_title(f"z = {k}", fontsize=8)
        ax.set_axis_off()
    handles = [
        Patch(color=colour, label=f"{name} ({int(mask.sum())} voxels)")
        for (name, mask), colour in zip(bools.items(), _COLOURS, strict=False)
    ]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.85, bottom=0.15, wspace=0.05)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def channels_to_mask(channels: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """``(n,)`` channel indices (stream voxel order, x fastest) -> ``(x, y, z)`` bool."""
    flat = np.zeros(int(np.prod(shape)), dtype=bool)
    flat[np.asarray(channels, dtype=np.int64)] = True
    return flat.reshape(shape, order="F")


def bundle_masks(bundle: DecoderBundle) -> dict[str, np.ndarray]:
    """Each head's voxels (``"z voxels"``, ...) and the noise pool, as ``(x, y, z)`` bool
    masks on the bundle's stream grid."""
    shape = bundle.stream.shape
    masks = {
        f"{name} voxels": channels_to_mask(h.voxels, shape) for name, h in bundle.heads.items()
    }
    if bundle.noise is not None:
        masks["noise pool"] = channels_to_mask(bundle.noise.pool, shape)
    return masks


def draw_bundle_masks(bundle: DecoderBundle, mean_epi: np.ndarray, path: str | Path) -> Path:
    """:func:`draw_masks` of :func:`bundle_masks`, titled with how the voxels were chosen."""
    how = bundle.report.get("voxels", {}).get("heads", {})
    title = ", ".join(f"{h}: {entry.get('method', 'given')}" for h, entry in how.items())
    return draw_masks(mean_epi, bundle_masks(bundle), path, title=title or "ROI masks")
