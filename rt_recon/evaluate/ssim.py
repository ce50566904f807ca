"""Structural similarity (SSIM; Wang, Bovik, Sheikh & Simoncelli 2004).

Computed as in the paper on grayscale images in [0, 1]: local means,
variances and covariance under an 11x11 Gaussian window of sigma 1.5 (here
``scipy.ndimage.gaussian_filter`` truncated at 3.5 sigma, i.e. radius 5),
constants ``C1 = (0.01 L)^2`` and ``C2 = (0.03 L)^2`` with ``L = 1``; the
SSIM of an image pair is the mean of the SSIM map. Grayscale is ITU-R
BT.601 luma, as MindEye's evaluation converts before SSIM.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from rt_recon.errors import ShapeMismatchError

_C1 = 0.01**2
_C2 = 0.03**2
_SIGMA = 1.5
_TRUNCATE = 3.5  # radius 5: the paper's 11x11 window


def to_gray(images: np.ndarray) -> np.ndarray:
    """``(..., H, W, 3)`` uint8 -> ``(..., H, W)`` float64 luma in [0, 1]."""
    rgb = images.astype(np.float64) / 255.0
    return rgb @ np.array([0.299, 0.587, 0.114])


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two ``(H, W)`` grayscale images in [0, 1]."""
    if a.shape != b.shape or a.ndim != 2:
        raise ShapeMismatchError(f"SSIM needs two equal 2-D images, found {a.shape} and {b.shape}")

    def blur(x: np.ndarray) -> np.ndarray:
        return gaussian_filter(x, _SIGMA, truncate=_TRUNCATE, mode="reflect")

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    numerator = (2 * mu_a * mu_b + _C1) * (2 * cov + _C2)
    denominator = (mu_a**2 + mu_b**2 + _C1) * (var_a + var_b + _C2)
    return float(np.mean(numerator / denominator))


def mean_ssim(recons: np.ndarray, truths: np.ndarray) -> float:
    """Mean SSIM over pairs of ``(n, H, W, 3)`` uint8 pictures (grayscale)."""
    if recons.shape != truths.shape:
        raise ShapeMismatchError(f"reconstructions {recons.shape} vs ground truths {truths.shape}")
    gray_r, gray_t = to_gray(recons), to_gray(truths)
    return float(np.mean([ssim(r, t) for r, t in zip(gray_r, gray_t, strict=True)]))
