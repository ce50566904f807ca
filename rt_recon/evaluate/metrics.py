"""Reconstruction quality: two-way identification and pixel correlation.

Two-way identification follows MindEye (Scotti et al. 2023): for each
reconstruction ``i``, the fraction of other stimuli ``j`` whose ground truth
correlates with reconstruction ``i`` *less* than its own ground truth does,
averaged over ``i``. Chance is 0.5. The feature space must be stated with
every number; :func:`pixel_features` is the one used by default here
(RGB pixels downsampled to 32x32, a low-level space like MindEye's PixCorr).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from rt_recon.errors import ShapeMismatchError

PIXEL_SPACE = "RGB pixels at 32x32"


def pixel_features(images: np.ndarray, size: int = 32) -> np.ndarray:
    """``(n, H, W, 3)`` uint8 -> ``(n, size*size*3)`` float32 in [0, 1] (box downsampling)."""
    out = np.stack(
        [
            np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BOX))
            for im in images
        ]
    )
    return out.reshape(len(images), -1).astype(np.float32) / 255.0


def _standardise(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def correlation_matrix(recons: np.ndarray, truths: np.ndarray) -> np.ndarray:
    """``(n, n)`` Pearson correlation of reconstruction ``i`` with truth ``j``."""
    if recons.shape != truths.shape:
        raise ShapeMismatchError(
            f"reconstructions have shape {recons.shape}, ground truths {truths.shape}"
        )
    return _standardise(recons.astype(np.float64)) @ _standardise(truths.astype(np.float64)).T


def two_way_identification(recons: np.ndarray, truths: np.ndarray) -> float:
    """MindEye two-way identification accuracy of ``(n, d)`` features (n >= 2)."""
    corr = correlation_matrix(recons, truths)
    n = len(corr)
    if n < 2:
        raise ShapeMismatchError(f"identification needs at least 2 stimuli, found {n}")
    own = np.diag(corr)
    wins = (corr < own[:, None]).sum(axis=1)  # the diagonal never counts: not < itself
    return float(np.mean(wins / (n - 1)))


def pixcorr(recons: np.ndarray, truths: np.ndarray) -> float:
    """Mean Pearson correlation between each reconstruction and its own ground truth."""
    return float(np.mean(np.diag(correlation_matrix(recons, truths))))
