"""Local contrast energy of pictures: what drives the realistic participant's early visual cortex.

A picture is split into a luminance and two colour-opponent channels (against
the grey blank); each channel is band-pass filtered (a difference of
Gaussians, ``G(s) - G(2 s)``, at a few scales) and squared. The sum, with the
colour channels weighted down, is the local contrast energy: zero wherever
the picture is uniform, whatever its colour, and large at edges and in
textures (in the spirit of Kay et al. 2013, PLoS Comput Biol 9:e1003079,
whose first stage is squared band-pass filter outputs). The maps are
box-averaged to ``resolution x resolution`` for the pRFs.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

#: Picture width (pixels) that filter scales are given for; other sizes scale with it.
REFERENCE_SIZE_PX = 64


def opponent_channels(images: np.ndarray) -> np.ndarray:
    """``(n, H, W, 3)`` uint8 RGB -> ``(3, n, H, W)`` luminance, red-green, blue-yellow.

    Values are relative to the grey blank (0 on grey), luminance in [-0.5, 0.5].
    """
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected (n, H, W, 3) RGB pictures, found shape {images.shape}")
    x = images.astype(np.float64) / 255.0 - 0.5
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    return np.stack([(r + g + b) / 3, r - g, b - (r + g) / 2])


def _box_resize(maps: np.ndarray, resolution: int) -> np.ndarray:
    """``(n, H, W)`` -> ``(n, resolution * resolution)``, box-averaged, rows are y."""
    return np.stack(
        [
            np.asarray(
                Image.fromarray(m.astype(np.float32)).resize(
                    (resolution, resolution), Image.Resampling.BOX
                ),
                dtype=np.float64,
            ).reshape(-1)
            for m in maps
        ]
    )


def contrast_energy(
    images: np.ndarray,
    resolution: int,
    scales_px: tuple[float, ...],
    colour_weight: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Contrast energy and luminance maps of ``(n, H, W, 3)`` uint8 pictures.

    Args:
        images: RGB pictures.
        resolution: side of the output maps (the pRF grid).
        scales_px: band-pass scales, Gaussian sigma in pixels of a 64-pixel picture.
        colour_weight: weight of the two colour-opponent channels' energy.

    Returns:
        ``(energy, luminance)``, each ``(n, resolution * resolution)``; ``energy`` >= 0
        and 0 for a uniform picture, ``luminance`` the mean luminance against grey.
    """
    if not scales_px:
        raise ValueError("contrast_energy needs at least one band-pass scale, found none")
    channels = opponent_channels(images)
    size = images.shape[1]
    energy = np.zeros(images.shape[:3])
    for scale in scales_px:
        sigma = float(scale) * size / REFERENCE_SIZE_PX
        for c, channel in enumerate(channels):
            weight = 1.0 if c == 0 else colour_weight
            if weight == 0:
                continue
            fine = gaussian_filter(channel, sigma=(0, sigma, sigma), mode="nearest")
            coarse = gaussian_filter(channel, sigma=(0, 2 * sigma, 2 * sigma), mode="nearest")
            energy += weight * (fine - coarse) ** 2
    return _box_resize(energy, resolution), _box_resize(channels[0], resolution)
