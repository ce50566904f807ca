"""Low-rank noise shared across voxels: a global signal and slow physiological-like components.

Each component is a time course times a spatial loading map. Time courses are
white noise low-pass filtered (Gaussian, ``sigma = 1 / (2 pi cutoff)``) and
scaled to unit variance; the global signal's loading is positive everywhere in
the brain (0.6-1.0, smooth), the slow components' loadings are smooth signed
maps. Loadings are scaled so that the shared noise has unit variance on
average over brain voxels (none outside the brain: air has no physiology).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter, gaussian_filter1d

from rt_recon.simulators.participant import SharedNoise


@dataclass(frozen=True)
class SharedComponents:
    """``loadings (n_components, n_voxels)`` over the flattened volume (Fortran order)."""

    loadings: np.ndarray

    def series(self, n_trs: int, tr_s: float, cutoff_hz: float, rng: np.random.Generator):
        """``(n_trs, n_voxels)`` shared noise of one run, unit variance on average in the brain.

        Each run draws its own time courses; the loadings belong to the participant.
        """
        sigma_trs = 1.0 / (2 * np.pi * cutoff_hz * tr_s)
        courses = gaussian_filter1d(
            rng.normal(0.0, 1.0, (n_trs, len(self.loadings))), sigma_trs, axis=0, mode="wrap"
        )
        courses = (courses - courses.mean(axis=0)) / (courses.std(axis=0) + 1e-12)
        return courses @ self.loadings


def shared_components(
    brain_mask: np.ndarray, params: SharedNoise, rng: np.random.Generator
) -> SharedComponents:
    """Draw the participant's shared-noise loadings over the ``(x, y, z)`` ``brain_mask``."""
    inside = np.ravel(brain_mask, order="F")
    n_brain = int(inside.sum())
    if n_brain == 0:
        raise ValueError("shared_components needs a brain mask with at least one voxel")

    def smooth_field() -> np.ndarray:
        field = gaussian_filter(rng.normal(0.0, 1.0, brain_mask.shape), params.loading_sigma_voxels)
        values = np.ravel(field, order="F")
        return (values - values[inside].mean()) / (values[inside].std() + 1e-12)

    global_field = smooth_field()
    span = global_field[inside].max() - global_field[inside].min() + 1e-12
    global_loading = 0.6 + 0.4 * (global_field - global_field[inside].min()) / span
    maps = [global_loading] + [smooth_field() for _ in range(params.n_slow)]
    shares = [params.global_share] + [
        (1.0 - params.global_share) / max(params.n_slow, 1)
    ] * params.n_slow
    loadings = np.zeros((len(maps), inside.size))
    for k, (m, share) in enumerate(zip(maps, shares, strict=True)):
        rms = np.sqrt(np.mean(m[inside] ** 2))
        loadings[k, inside] = np.sqrt(share) * m[inside] / rms
    return SharedComponents(loadings=loadings)
