"""Voxel selection by cross-validated encoding performance inside an ROI.

An atlas ROI holds voxels that do not respond (outside the true region,
white matter, vessels). Each ROI voxel's trial estimates are predicted from
the head's targets (their first principal components, so the encoding model
stays small at NSD scale) by ridge with leave-one-run-out cross-validation
(:func:`rt_recon.decode.ridge.ridge_cv`); voxels are ranked by that CV R^2
and the best fraction kept. With ``"auto"`` the fraction is the one of
:data:`~rt_recon.decode.recipe.AUTO_FRACTIONS` whose decoder has the best
mean CV R^2 on the training runs (an optimistic figure: the ranking saw every
training run; the validation runs judge the choice).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from rt_recon.decode.ridge import ridge_cv_r2
from rt_recon.errors import DataError

log = logging.getLogger(__name__)

#: Target principal components the encoding model reads.
ENCODING_COMPONENTS = 64


def encoding_r2(
    features: np.ndarray, targets: np.ndarray, groups: np.ndarray, alphas: np.ndarray
) -> np.ndarray:
    """``(n_voxels,)`` leave-one-run-out CV R^2 of each voxel's ``features (n, n_voxels)``
    predicted from ``targets (n, n_targets)`` (their first principal components)."""
    return ridge_cv_r2(target_scores(targets), features, groups, alphas)


def target_scores(targets: np.ndarray, k: int = ENCODING_COMPONENTS) -> np.ndarray:
    """``(n, min(k, ...))`` scores of ``targets (n, n_targets)`` on their first ``k``
    principal components."""
    y = np.asarray(targets, dtype=np.float64)
    y = y - y.mean(axis=0)
    _, _, vt = np.linalg.svd(y, full_matrices=False)
    return y @ vt[: min(k, vt.shape[0])].T


def top_fraction(r2: np.ndarray, fraction: float) -> np.ndarray:
    """Sorted positions of the ``ceil(fraction * n)`` voxels of highest ``r2`` (at least 1)."""
    if not 0 < fraction <= 1:
        raise DataError(f"a voxel fraction must be in (0, 1], found {fraction}")
    n = max(1, int(np.ceil(fraction * len(r2))))
    return np.sort(np.argsort(-r2, kind="stable")[:n])


def select_voxels(
    r2: np.ndarray,
    fraction: float | str,
    score: Callable[[np.ndarray], float],
    fractions: Sequence[float],
) -> tuple[np.ndarray, dict]:
    """Positions of the voxels to keep, and a report.

    Args:
        r2: ``(n_voxels,)`` encoding CV R^2 (:func:`encoding_r2`).
        fraction: a fraction in (0, 1], or ``"auto"``.
        score: positions kept -> the decoder's CV score on them (``"auto"`` only).
        fractions: the fractions ``"auto"`` tries.
    """
    report: dict = {
        "encoding_r2_median": float(np.median(r2)),
        "positive_fraction": float(np.mean(r2 > 0)),
    }
    if fraction != "auto":
        keep = top_fraction(r2, float(fraction))
        report.update(fraction=float(fraction), kept=len(keep))
        return keep, report
    tried = {}
    for f in fractions:
        tried[f"{f:g}"] = score(top_fraction(r2, f))
        log.info("voxel fraction %g: decoder CV R2 %.4f", f, tried[f"{f:g}"])
    best = max(fractions, key=lambda f: tried[f"{f:g}"])
    keep = top_fraction(r2, best)
    report.update(fraction=float(best), kept=len(keep), cv_r2_by_fraction=tried)
    return keep, report
