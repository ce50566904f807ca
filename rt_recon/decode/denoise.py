"""Noise regressors from voxels outside the ROIs, removed per TR.

After GLMdenoise (Kay et al. 2013, Front. Neurosci. 7:247): voxels whose
time courses the task explains least form a noise pool; the pool's principal
components are noise regressors. Here they are applied online: at every TR,
``n(t) = components^T x_pool(t)`` (``k`` numbers) and each decoded voxel's
feature becomes ``x(t) - weights^T n(t)``, linear per TR like the rest of
the decoder. Fitted on the training runs' preprocessed features:

1. **pool**: among the candidate voxels (brain outside the ROIs), the
   ``pool_size`` with the least variance explained by the task (one
   regressor, every trial's expected response, and a constant, per run);
2. **components**: the first ``k`` right singular vectors of the pool's
   features over every training TR after the warm-up;
3. **weights**: each decoded voxel's least-squares coefficients on the
   components, fitted together with one regressor per trial and a constant
   per run, so that what the trials explain is not taken for noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rt_recon.decode.hrf_library import trial_design
from rt_recon.errors import BundleError, DataError


@dataclass
class NoiseModel:
    """Pool voxels, their components and each decoded voxel's weights on them.

    Attributes:
        pool: ``(n_pool,)`` channel indices of the noise pool (ascending).
        components: ``(n_pool, k)`` float32.
        weights: ``(k, n_voxels)`` float32, one column per decoded voxel (ascending order).
    """

    pool: np.ndarray
    components: np.ndarray
    weights: np.ndarray

    def __post_init__(self) -> None:
        self.pool = np.asarray(self.pool, dtype=np.int64)
        self.components = np.asarray(self.components, dtype=np.float32)
        self.weights = np.asarray(self.weights, dtype=np.float32)
        k = self.components.shape[1] if self.components.ndim == 2 else -1
        if self.components.shape != (len(self.pool), k) or self.weights.shape[0] != k:
            raise BundleError(
                f"noise model: components {self.components.shape} must be "
                f"({len(self.pool)}, k) and weights {self.weights.shape} (k, n_voxels)"
            )

    @property
    def n_components(self) -> int:
        return int(self.components.shape[1])

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "denoise.pool": self.pool,
            "denoise.components": self.components,
            "denoise.weights": self.weights,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> NoiseModel | None:
        names = ("denoise.pool", "denoise.components", "denoise.weights")
        present = [n for n in names if n in arrays]
        if not present:
            return None
        if len(present) < len(names):
            raise BundleError(f"bundle noise model lacks {sorted(set(names) - set(present))}")
        return cls(*(arrays[n] for n in names))


class Denoiser:
    """``apply(features) -> decoded voxels' features`` with the noise components removed.

    Args:
        model: the bundle's noise model, or None (no denoising).
        extracted: ``(n_extracted,)`` the channels the feature extractor outputs (ascending).
        decoded: ``(n_voxels,)`` the channels the heads read (ascending, within ``extracted``).
    """

    def __init__(self, model: NoiseModel | None, extracted: np.ndarray, decoded: np.ndarray):
        self.model = model
        self.decoded_local = np.searchsorted(extracted, decoded)
        self.identity = len(extracted) == len(decoded)
        if model is not None:
            if model.weights.shape[1] != len(decoded):
                raise BundleError(
                    f"noise model weights cover {model.weights.shape[1]} voxels, "
                    f"the heads read {len(decoded)}"
                )
            self.pool_local = np.searchsorted(extracted, model.pool)

    def apply(self, features: np.ndarray) -> np.ndarray:
        """``(..., n_extracted)`` features (one TR, or TRs by rows) -> ``(..., n_voxels)``."""
        x = features if self.identity else features[..., self.decoded_local]
        if self.model is None:
            return x
        noise = features[..., self.pool_local] @ self.model.components  # (..., k)
        return x - noise @ self.model.weights


def task_r2(series: np.ndarray, response: np.ndarray, onsets: Sequence[int], first_tr: int = 0):
    """Per voxel, the variance of ``series (n_trs, n_voxels)`` explained by every trial's
    expected response summed into one regressor (and a constant), from ``first_tr`` on."""
    n_trs = len(series)
    task = trial_design(response, onsets, n_trs).sum(axis=1)
    design = np.column_stack([task, np.ones(n_trs)])[first_tr:]
    y = series[first_tr:].astype(np.float64)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    ss_res = ((y - design @ coef) ** 2).sum(axis=0)
    ss_tot = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    return np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), 0.0)


def fit_noise_model(
    runs: Sequence[tuple[np.ndarray, np.ndarray, Sequence[int]]],
    candidates: np.ndarray,
    response: np.ndarray,
    n_components: int,
    pool_size: int,
    first_tr: int = 0,
) -> tuple[NoiseModel, dict]:
    """Fit the noise model on training runs.

    Args:
        runs: per run, ``(candidate features (n_trs, n_candidates), decoded voxels'
            features (n_trs, n_voxels), trial onset TRs)``.
        candidates: ``(n_candidates,)`` channel indices of the pool candidates.
        response: ``(n_response,)`` a trial's expected response (canonical HRF).
        n_components: ``k``; ``pool_size``: voxels kept in the pool.
        first_tr: TRs before it (the warm-up) are left out.

    Returns:
        ``(model, report)``.
    """
    if n_components < 1:
        raise DataError(f"a noise model needs at least 1 component, found {n_components}")
    if len(candidates) < n_components:
        raise DataError(
            f"the noise pool has {len(candidates)} candidate voxels, fewer than the "
            f"{n_components} components asked for"
        )
    r2 = np.mean([task_r2(c, response, onsets, first_tr) for c, _, onsets in runs], axis=0)
    keep = np.sort(np.argsort(r2, kind="stable")[: min(pool_size, len(candidates))])
    pool_series = np.concatenate([c[first_tr:, keep] for c, _, _ in runs]).astype(np.float64)
    _, s, vt = np.linalg.svd(pool_series, full_matrices=False)
    components = vt[:n_components].T  # (n_pool, k)
    # weights: regress each decoded voxel on the components with the trials partialled out
    noise_res, voxel_res = [], []
    for c, x, onsets in runs:
        n_trs = len(x)
        design = np.column_stack([trial_design(response, onsets, n_trs), np.ones(n_trs)])
        design = design[first_tr:]
        proj = np.linalg.pinv(design)
        noise = c[first_tr:, keep].astype(np.float64) @ components
        xx = x[first_tr:].astype(np.float64)
        noise_res.append(noise - design @ (proj @ noise))
        voxel_res.append(xx - design @ (proj @ xx))
    weights, *_ = np.linalg.lstsq(np.concatenate(noise_res), np.concatenate(voxel_res), rcond=None)
    explained = (s[:n_components] ** 2).sum() / (s**2).sum()
    report = {
        "n_components": n_components,
        "pool_voxels": len(keep),
        "pool_task_r2_max": float(r2[keep].max()),
        "pool_variance_explained": float(explained),
    }
    return NoiseModel(candidates[keep], components, weights), report
