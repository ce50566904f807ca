"""Spike detection and clipping per voxel with a robust recursive filter; flags spiky TRs.

Method: robust exponential smoothing (Gelper, Fried & Croux, 2010, "Robust
forecasting with exponential and Holt-Winters smoothing", J. Forecasting
29:285-300), applied to every voxel independently. Each voxel keeps a level
``m`` (its one-step prediction) and a scale ``sigma`` of its innovations.
For a new value ``x``::

    z      = (x - m) / sigma                  robust z of the innovation
    spike  = |z| > threshold
    x'     = m + sigma * clip(z, -threshold, threshold)     the cleaned value
    m     <- m + alpha * (x' - m)
    sigma^2 <- (1 - beta) sigma^2 + beta * sigma^2 * min(z^2, threshold^2) / c

where ``c = E[min(Z^2, threshold^2)]`` for a standard normal ``Z`` keeps
``sigma`` consistent for Gaussian noise (a Huber-type scale update). Values
within ``threshold`` robust standard deviations pass through unchanged; a
spike is clipped to the threshold and moves the level and scale only as much
as a threshold-sized innovation would. During the first ``warmup`` volumes
nothing is flagged or clipped: the level runs the same recursion from the
first volume and ``sigma`` starts as the root mean square of the warm-up
innovations, so it includes how far the level lags a drift (a median/MAD of
ten values would be too often near zero and flag noise). ``sigma``
never falls below 5 % of the median voxel's initial scale, so a voxel that
was constant during the warm-up (background, quantised values) is not frozen:
after a lasting step its scale grows by up to ``1 + beta (threshold^2 / c - 1)``
per TR until the step is absorbed.

A TR is flagged (:attr:`SpikeDetector.flagged_trs`) when more than
``volume_fraction`` of its voxels spike at once: scanner spikes and sudden
motion hit whole slices, whereas a few voxels beyond 4 sigma are expected by
chance (2 x 3.2e-5 of them for Gaussian noise).

Cost per TR: about a dozen element-wise operations on ``n_features`` float32
values, ``O(n_features)``, no history kept beyond the warm-up.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import stats

from rt_recon.preprocess._checks import check_volume

log = logging.getLogger(__name__)


#: Robust z above which a value counts as a spike (the default of every despike spec).
DEFAULT_THRESHOLD = 4.0


def clipped_second_moment(threshold: float) -> float:
    """``E[min(Z^2, k^2)]`` for a standard normal ``Z`` and ``k = threshold``."""
    k = float(threshold)
    inside = (2.0 * stats.norm.cdf(k) - 1.0) - 2.0 * k * stats.norm.pdf(k)
    return inside + 2.0 * k * k * stats.norm.sf(k)


class SpikeDetector:
    """Clip per-voxel spikes and flag spiky TRs: ``update(values) -> cleaned values``.

    ``values`` is ``(n_features,)`` (voxels in any fixed order); the output is
    float32 of the same shape. After each update, :attr:`spikes` is the
    boolean ``(n_features,)`` mask of clipped voxels, :attr:`spike_fraction`
    their fraction and :attr:`flagged` whether the TR was flagged; every
    flagged TR's 0-based update index is appended to :attr:`flagged_trs`.

    Args:
        n_features: values per volume.
        threshold: robust z beyond which a value is a spike and is clipped.
        alpha: level smoothing (0-1; larger follows drift faster).
        beta: scale smoothing (0-1).
        warmup: volumes used to initialise level and scale (>= 3).
        volume_fraction: fraction of spiking voxels above which a TR is flagged.
    """

    def __init__(
        self,
        n_features: int,
        threshold: float = DEFAULT_THRESHOLD,
        alpha: float = 0.3,
        beta: float = 0.05,
        warmup: int = 10,
        volume_fraction: float = 0.01,
    ):
        if warmup < 3:
            raise ValueError(f"warmup must be >= 3 volumes, found {warmup}")
        if not (0.0 < alpha <= 1.0 and 0.0 < beta <= 1.0 and threshold > 0.0):
            raise ValueError(
                f"need 0 < alpha, beta <= 1 and threshold > 0; found {alpha}, {beta}, {threshold}"
            )
        self.n_features = int(n_features)
        self.threshold = float(threshold)
        self.alpha, self.beta = float(alpha), float(beta)
        self.warmup = int(warmup)
        self.volume_fraction = float(volume_fraction)
        self._consistency = clipped_second_moment(self.threshold)
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.flagged_trs: list[int] = []
        self.flagged = False
        self.spike_fraction = 0.0
        self.spikes = np.zeros(self.n_features, dtype=bool)
        self._level = np.zeros(self.n_features, dtype=np.float32)
        self._var = np.zeros(self.n_features, dtype=np.float32)
        self._floor = np.float32(0.0)

    @property
    def warming_up(self) -> bool:
        return self.count < self.warmup

    def update(self, values: np.ndarray) -> np.ndarray:
        """``(n_features,)`` values of this TR -> ``(n_features,)`` float32 cleaned values."""
        x = check_volume(values, (self.n_features,), "SpikeDetector").astype(np.float32)
        index = self.count
        self.count += 1
        if index < self.warmup:
            self._warm_up(index, x)
            self.spikes[:] = False
            self.flagged, self.spike_fraction = False, 0.0
            return x
        scale = np.sqrt(self._var)
        z = (x - self._level) / scale
        self.spikes = np.abs(z) > self.threshold
        clipped = np.clip(z, -self.threshold, self.threshold)
        cleaned = np.where(self.spikes, self._level + scale * clipped, x)
        self._level += self.alpha * (cleaned - self._level)
        self._var *= 1.0 - self.beta + self.beta * clipped * clipped / self._consistency
        np.maximum(self._var, self._floor, out=self._var)
        self.spike_fraction = float(np.count_nonzero(self.spikes)) / self.n_features
        self.flagged = self.spike_fraction > self.volume_fraction
        if self.flagged:
            self.flagged_trs.append(index)
            log.info(
                "spike at TR %d: %.1f %% of voxels beyond %.1f robust SD",
                index, 100 * self.spike_fraction, self.threshold,
            )  # fmt: skip
        return cleaned

    def _warm_up(self, index: int, x: np.ndarray) -> None:
        if index == 0:
            self._level = x.copy()
            self._var = np.zeros_like(x)
            return
        innovation = x - self._level
        self._var += innovation * innovation  # sum of squares until the last warm-up volume
        self._level += self.alpha * innovation
        if index == self.warmup - 1:
            self._var /= self.warmup - 1
            positive = self._var[self._var > 0]
            floor = 0.05 * float(np.sqrt(np.median(positive))) if positive.size else 1e-6
            self._floor = np.float32(max(floor, 1e-6) ** 2)
            np.maximum(self._var, self._floor, out=self._var)
