"""Voxel-wise HRF timing for the realistic participant.

Each voxel's HRF is the canonical double gamma of :mod:`rt_recon.hrf`
stretched in time, ``h_s(t) = h(t / s) / s``: its peak (5 s for a brief
event) moves to ``5 s`` seconds, its undershoot with it, and its area is
unchanged. Stretching needs no new kernel: a box of ``d`` seconds convolved
with ``h_s`` at time ``t`` equals the canonical box response to a ``d / s``
box at ``t / s``, so :func:`rt_recon.hrf.regressors` on rescaled times gives
every voxel's design exactly. Peak shifts are quantised (``bin_s``) so that
voxels sharing a shift share one design matrix.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from rt_recon import hrf
from rt_recon.simulators.participant import HrfVariation

#: Time to peak of the canonical HRF after a brief event (the mode of a gamma of shape 6), s.
CANONICAL_PEAK_S = 5.0


def peak_shifts(mask: np.ndarray, params: HrfVariation, rng: np.random.Generator) -> np.ndarray:
    """HRF peak shift (s) of each voxel of ``mask`` (Fortran order), spatially smooth.

    Args:
        mask: ``(x, y, z)`` boolean; one shift per ``True`` voxel.
        params: mean, spread and bound of the shifts.
        rng: random draws.

    Returns:
        ``(n_voxels,)`` seconds, in ``[-max_shift_s, max_shift_s]``.
    """
    noise = gaussian_filter(rng.normal(0.0, 1.0, mask.shape), params.spatial_sigma_voxels)
    values = np.ravel(noise, order="F")[np.flatnonzero(np.ravel(mask, order="F"))]
    values = (values - values.mean()) / (values.std() + 1e-12)
    shifts = params.mean_shift_s + params.sd_shift_s * values
    return np.clip(shifts, -params.max_shift_s, params.max_shift_s)


def time_scale(shift_s: float | np.ndarray) -> float | np.ndarray:
    """The HRF stretch ``s`` that moves the canonical peak by ``shift_s`` seconds."""
    return 1.0 + np.asarray(shift_s) / CANONICAL_PEAK_S


def shifted_regressors(
    onsets: np.ndarray, durations: np.ndarray, tr_s: float, n_trs: int, shift_s: float
) -> np.ndarray:
    """``(n_trs, n_events)`` design of an HRF whose peak is ``shift_s`` s off the canonical."""
    s = float(time_scale(shift_s))
    if s <= 0:
        raise ValueError(
            f"an HRF peak shift must be above -{CANONICAL_PEAK_S} s, found {shift_s} s"
        )
    return hrf.regressors(
        np.asarray(onsets, dtype=np.float64) / s,
        np.asarray(durations, dtype=np.float64) / s,
        tr_s / s,
        n_trs,
    )


def voxelwise_signal(
    onsets: np.ndarray,
    durations: np.ndarray,
    tr_s: float,
    n_trs: int,
    amplitudes: np.ndarray,
    shifts_s: np.ndarray,
    bin_s: float,
) -> np.ndarray:
    """Noise-free BOLD ``(n_trs, n_voxels)`` of ``(n_events, n_voxels)`` event amplitudes.

    Voxel ``v`` uses the HRF shifted by ``shifts_s[v]`` (rounded to ``bin_s``).
    """
    if amplitudes.shape != (len(onsets), len(shifts_s)):
        raise ValueError(
            f"amplitudes must be (n_events, n_voxels) = ({len(onsets)}, {len(shifts_s)}), "
            f"found {amplitudes.shape}"
        )
    bins = np.rint(np.asarray(shifts_s) / bin_s).astype(np.int64)
    out = np.empty((n_trs, len(shifts_s)))
    for b in np.unique(bins):
        voxels = np.flatnonzero(bins == b)
        design = shifted_regressors(onsets, durations, tr_s, n_trs, float(b * bin_s))
        out[:, voxels] = design @ amplitudes[:, voxels]
    return out
