"""A library of HRFs and the choice of one per voxel on the training runs.

GLMsingle (Prince et al. 2022, eLife 11:e77599) estimates single-trial
responses with an HRF chosen per voxel from a library. Ours is a family of
double gammas whose response peak moves in steps of 0.25 s from 3 s to
7.75 s: ``h_a(t) = g(t; a) - g(t; a + 10) / 6`` with ``g(t; k)`` the gamma
density of shape ``k`` and unit scale, whose peak is at ``a - 1`` s; ``a = 6``
is the canonical HRF of :mod:`rt_recon.hrf`. Only the peak's place changes
with ``a``; the width follows the gamma's shape (a time stretch would widen
the response with its delay; this library does not assume so).

A voxel's HRF is the library member under which an encoding model of its
time series predicts held-out runs best: the trials' targets (their first
principal components), each placed at its onset and convolved with the
member's response, fitted by ridge and cross-validated over runs
(:func:`encoding_design`, scored in :mod:`rt_recon.decode.fit`). The
targets pin each trial's amplitude, so only the timing is left to fit; a
single-trial model (a free amplitude per trial, as a GLM fitted run by run
has) barely tells members apart when trials come every few TRs, each free
amplitude absorbing the misfit, and in-sample it favours broad members that
fit slow noise. The gains over the canonical HRF are averaged over the
voxel's neighbourhood (the decoded voxels in a 3x3x3 box around it) before
the choice: neighbouring voxels share their vasculature and so their
timing, and one voxel's gains are noisy. A voxel whose neighbourhood gains
nothing keeps the canonical HRF. Everything downstream sees an HRF
only as its *response*: the expected BOLD, sampled every TR after a trial's
onset, to a stimulus lasting the trials' (median) duration.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import uniform_filter
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


def encoding_design(
    response: np.ndarray, onsets: Sequence[int], scores: np.ndarray, n_trs: int
) -> np.ndarray:
    """``(n_trs, n_scores)``: each trial's target ``scores (n_trials, n_scores)`` placed at
    its onset and convolved with ``response`` (the encoding model's regressors)."""
    return trial_design(response, onsets, n_trs) @ scores


def choose(
    scores: np.ndarray,
    coords: np.ndarray | None = None,
    neighbourhood: int = 3,
    reference: int | None = None,
) -> np.ndarray:
    """The library member of each voxel: the highest score, after pooling.

    Args:
        scores: ``(K, n_voxels)``, higher is better (e.g. cross-validated encoding R^2).
        coords: ``(n_voxels, 3)`` integer voxel coordinates; given, each voxel's gains
            over member ``reference`` are averaged over the voxels within a
            ``neighbourhood``-wide box around it first.
        reference: the member gains are taken against (default: the canonical HRF).

    Returns:
        ``(n_voxels,)`` member index per voxel.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or len(scores) == 0:
        raise DataError(f"scores must be (K, n_voxels) with K >= 1, found {scores.shape}")
    if coords is None:
        return np.argmax(scores, axis=0)
    if reference is None:
        reference = int(np.argmin(np.abs(np.asarray(LIBRARY_PEAKS_S) - CANONICAL_PEAK_S)))
    gains = scores - scores[reference]
    return np.argmax(pool_neighbours(gains, coords, neighbourhood), axis=0)


def pool_neighbours(values: np.ndarray, coords: np.ndarray, size: int) -> np.ndarray:
    """``(K, n_voxels)`` values averaged, per voxel, over the voxels of ``coords`` within a
    ``size``-wide box centred on it (the voxel itself included)."""
    coords = np.asarray(coords, dtype=np.int64)
    if coords.shape != (values.shape[1], 3):
        raise DataError(f"coords must be ({values.shape[1]}, 3), found {coords.shape}")
    lo = coords.min(axis=0)
    local = coords - lo
    shape = tuple(int(s) for s in local.max(axis=0) + 1)
    where = (local[:, 0], local[:, 1], local[:, 2])
    grid = np.zeros((len(values), *shape))
    grid[(slice(None), *where)] = values
    count = np.zeros(shape)
    count[where] = 1.0
    summed = uniform_filter(grid, size=(1, size, size, size), mode="constant")
    counted = uniform_filter(count, size=size, mode="constant")
    return summed[(slice(None), *where)] / counted[where]
