"""ROI masks as a decoder would get them: an atlas registered to the subject, with its errors.

The oracle ROI (the voxels the simulator drives) is smoothed, moved by a
registration error, given an uneven boundary by a smooth random field, and
thresholded at one half inside the brain. The oracle is kept for evaluating
the simulator only (``groundtruth/``); the decoder fits on these masks.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter, shift

from rt_recon.simulators.participant import AtlasMasks


def atlas_like(
    oracle: np.ndarray, brain: np.ndarray, params: AtlasMasks, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """An atlas-like ``(x, y, z)`` boolean mask for the ``oracle`` ROI.

    Returns:
        ``(mask, offset)``: the mask, and the registration error applied
        (``(3,)`` voxels, length ``params.shift_voxels``).
    """
    if oracle.shape != brain.shape:
        raise ValueError(
            f"oracle and brain masks must share a shape, found {oracle.shape} and {brain.shape}"
        )
    direction = rng.normal(0.0, 1.0, 3)
    offset = params.shift_voxels * direction / (np.linalg.norm(direction) + 1e-12)
    soft = gaussian_filter(oracle.astype(np.float64), params.smooth_voxels)
    soft = shift(soft, offset, order=1, mode="constant", cval=0.0)
    field = gaussian_filter(rng.normal(0.0, 1.0, oracle.shape), params.noise_sigma_voxels)
    field /= field.std() + 1e-12
    mask = (soft + params.boundary_noise * field > 0.5) & brain
    if not mask.any():
        raise ValueError("the atlas-like mask came out empty: the ROI is too small for the grid")
    return mask, offset


def mask_disagreement(mask: np.ndarray, oracle: np.ndarray) -> dict[str, float]:
    """How a mask differs from the oracle ROI.

    Returns:
        ``outside``: fraction of the mask's voxels not in the oracle;
        ``missed``: fraction of the oracle's voxels not in the mask;
        ``dice``: the Dice coefficient.
    """
    both = float(np.sum(mask & oracle))
    n_mask, n_oracle = float(mask.sum()), float(oracle.sum())
    return {
        "outside": 1.0 - both / max(n_mask, 1.0),
        "missed": 1.0 - both / max(n_oracle, 1.0),
        "dice": 2.0 * both / max(n_mask + n_oracle, 1.0),
    }
