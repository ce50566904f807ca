"""The haemodynamic response: SPM's canonical double-gamma HRF and the decoder's window.

The canonical HRF (Friston et al. 1998, as in SPM's ``spm_hrf``) is the
difference of two gamma densities: a response peaking near 5 s and an
undershoot peaking near 15 s with 1/6 of its amplitude,
``h(t) = g(t; 6) - g(t; 16) / 6`` with ``g(t; k)`` the gamma density of shape
``k`` and unit scale (t in seconds).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import gamma

_DT = 0.05  # seconds; resolution of the continuous-time convolution


def double_gamma(t: np.ndarray) -> np.ndarray:
    """Canonical HRF at times ``t`` (seconds after a brief event); 0 for ``t < 0``."""
    t = np.asarray(t, dtype=np.float64)
    h = gamma.pdf(t, 6.0) - gamma.pdf(t, 16.0) / 6.0
    return np.where(t >= 0, h, 0.0)


def block_response(duration: float, times: np.ndarray) -> np.ndarray:
    """Response at ``times`` (s after onset) to a stimulus lasting ``duration`` s (box * HRF)."""
    box_t = np.arange(0.0, duration, _DT)  # onset-relative times while the stimulus is on
    t = np.atleast_1d(np.asarray(times, dtype=np.float64))
    response = double_gamma(t[:, None] - box_t[None, :]).sum(axis=1) * _DT
    return response.reshape(np.shape(times))


def regressors(onsets: np.ndarray, durations: np.ndarray, tr_s: float, n_trs: int) -> np.ndarray:
    """``(n_trs, n_events)`` predicted BOLD time course of each event, sampled at TR times."""
    frame_times = np.arange(n_trs) * tr_s
    out = np.empty((n_trs, len(onsets)))
    for j, (onset, duration) in enumerate(zip(onsets, durations, strict=True)):
        out[:, j] = block_response(float(duration), frame_times - float(onset))
    return out


def matched_window(tr_s: float, stimulus_duration: float, n_trs: int) -> tuple[np.ndarray, int]:
    """Weights and lag of the decoder's HRF window.

    The estimate at TR ``t`` is ``sum_k w[k] * x[t - k]`` for ``k < n_trs``:
    a matched filter for a stimulus that began ``lag`` TRs earlier, so that
    ``w[k]`` is the expected response ``lag - k`` TRs after onset. ``lag`` is
    chosen so that the window holds the most response energy. Weights sum to 1.

    Returns:
        ``(weights (n_trs,), lag in TRs)``.
    """
    horizon = int(np.ceil(20.0 / tr_s)) + n_trs
    response = block_response(stimulus_duration, np.arange(horizon) * tr_s)
    energy = [
        float(np.sum(response[max(0, lag - n_trs + 1) : lag + 1] ** 2)) for lag in range(horizon)
    ]
    lag = int(np.argmax(energy))
    weights = np.array([response[lag - k] if lag - k >= 0 else 0.0 for k in range(n_trs)])
    weights = np.clip(weights, 0.0, None)
    return weights / weights.sum(), lag
