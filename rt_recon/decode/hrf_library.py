"""A library of HRFs and the choice of one per voxel on the training runs.

GLMsingle (Prince et al. 2022, eLife 11:e77599) estimates single-trial
responses with an HRF chosen per voxel from a library. Ours is a family of
double gammas whose response peak moves in steps of 0.25 s from 3 s to
7.75 s: ``h_a(t) = g(t; a) - g(t; a + 10) / 6`` with ``g(t; k)`` the gamma
density of shape ``k`` and unit scale, whose peak is at ``a - 1`` s; ``a = 6``
is the canonical HRF of :mod:`rt_recon.hrf`. Only the peak's place changes
with ``a``; the width follows the gamma's shape (a time stretch would widen
the response with its delay; this library does not assume so).

A voxel's HRF is the library member under which a single-trial model (one
regressor per trial and a constant, per run) leaves the least residual
variance summed over the training runs. Everything downstream sees an HRF
only as its *response*: the expected BOLD, sampled every TR after a trial's
onset, to a stimulus lasting the trials' (median) duration.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import gamma

from rt_recon.errors import DataError

#: Peak times of the library's HRFs after a brief event, seconds.
LIBRARY_PEAKS_S: tuple[float, ...] = tuple(3.0 + 0.25 * i for i in range(20))
CANONICAL_PEAK_S = 5.0
_DT = 0.05  # seconds; resolution of the convolution with the stimulus box
#: Seconds of response after an onset that a trial's regressor covers.
RESPONSE_SPAN_S = 32.0


def library_hrf(peak_s: float, t: np.ndarray) -> np.ndarray:
    """The library HRF peaking ``peak_s`` s after a brief event, at times ``t`` (0 before 0)."""
    a = peak_s + 1.0
    t = np.asarray(t, dtype=np.float64)
    h = gamma.pdf(t, a) - gamma.pdf(t, a + 10.0) / 6.0
    return np.where(t >= 0, h, 0.0)


def response_length(tr_s: float) -> int:
    """TRs of response after an onset that a regressor covers (``RESPONSE_SPAN_S``)."""
    return int(np.ceil(RESPONSE_SPAN_S / tr_s))


def responses(
    peaks_s: Sequence[float], stimulus_duration: float, tr_s: float, n_trs: int | None = None
) -> np.ndarray:
    """``(len(peaks_s), n_trs)`` expected response ``j`` TRs after the onset of a stimulus
    lasting ``stimulus_duration`` s, for the HRF peaking at each of ``peaks_s``."""
    n_trs = response_length(tr_s) if n_trs is None else n_trs
    box = np.arange(0.0, max(stimulus_duration, _DT), _DT)
    t = np.arange(n_trs) * tr_s
    out = np.empty((len(peaks_s), n_trs))
    for k, peak in enumerate(peaks_s):
        out[k] = library_hrf(peak, t[:, None] - box[None, :]).sum(axis=1) * _DT
    return out


def trial_design(response: np.ndarray, onsets: Sequence[int], n_trs: int) -> np.ndarray:
    """``(n_trs, n_trials)``: each trial's response placed at its onset TR (clipped to the run)."""
    design = np.zeros((n_trs, len(onsets)))
    for i, onset in enumerate(onsets):
        lo, hi = max(onset, 0), min(onset + len(response), n_trs)
        if hi > lo:
            design[lo:hi, i] = response[lo - onset : hi - onset]
    return design


def residual_variance(
    series: np.ndarray, response: np.ndarray, onsets: Sequence[int], first_tr: int = 0
) -> np.ndarray:
    """Per voxel, the sum of squared residuals of ``series (n_trs, n_voxels)`` from TR
    ``first_tr`` on after least squares on one regressor per trial and a constant."""
    n_trs = len(series)
    design = np.column_stack([trial_design(response, onsets, n_trs), np.ones(n_trs)])[first_tr:]
    y = series[first_tr:].astype(np.float64)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return ((y - design @ coef) ** 2).sum(axis=0)


def choose_hrfs(
    runs: Sequence[tuple[np.ndarray, Sequence[int]]], library: np.ndarray, first_tr: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The library member of each voxel: least residual variance summed over runs.

    Args:
        runs: per training run, ``(series (n_trs, n_voxels), trial onset TRs)``.
        library: ``(K, n_response)`` responses (:func:`responses`).
        first_tr: TRs before it are left out (the preprocessing's warm-up).

    Returns:
        ``(choice (n_voxels,) int, residual (K, n_voxels))``.
    """
    if not runs:
        raise DataError("choosing HRFs needs at least one run")
    n_voxels = runs[0][0].shape[1]
    residual = np.zeros((len(library), n_voxels))
    for series, onsets in runs:
        if series.shape[1] != n_voxels:
            raise DataError(
                f"runs disagree on voxels: {n_voxels} in the first, {series.shape[1]} in another"
            )
        for k, response in enumerate(library):
            residual[k] += residual_variance(series, response, onsets, first_tr)
    return np.argmin(residual, axis=0), residual
