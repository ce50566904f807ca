"""Online detrending by a recursive high-pass filter.

``y_t = x_t - m_t`` with ``m_t = m_{t-1} + a_t (x_t - m_{t-1})``: the running
mean ``m`` is a first-order low-pass (exponential moving average) with time
constant ``tau = cutoff / (2 pi)`` TRs, so drifts slower than the cutoff
period are removed and trial-length responses pass (a 20 s fluctuation
keeps 99% of its amplitude at the default cutoff, 128 s, SPM's high-pass
default). ``a_t = max(1 / (t + 1), a)``: the cumulative mean until ``tau``
volumes have been seen, so the start of a run is not measured against one
noisy first volume (with ``m_0 = x_0`` that error decays over ~3 tau, a
quarter of a typical run, and cost 15 points of identification here).
Unlike a polynomial GLM refitted each TR, the newest TRs, the ones a
decoder's HRF window sums, are not pulled towards the fit. Cost per TR: O(n).
"""

from __future__ import annotations

import math

import numpy as np

from rt_recon.preprocess._checks import check_volume


class RecursiveHighPass:
    """``update(x) -> x - running low-pass``, per feature.

    Args:
        n_features: values per sample.
        cutoff_trs: cutoff period in TRs (e.g. 128 s / TR).
    """

    #: Takes no confounds (it fills the chain's detrending slot like OnlineDetrend).
    n_confounds = 0

    def __init__(self, n_features: int, cutoff_trs: float):
        if cutoff_trs <= 1:
            raise ValueError(f"cutoff_trs must exceed 1 TR, found {cutoff_trs}")
        self.n_features = int(n_features)
        tau = cutoff_trs / (2 * math.pi)
        self.alpha = 1.0 - math.exp(-1.0 / tau)
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self._mean = np.zeros(self.n_features, dtype=np.float64)

    @property
    def warming_up(self) -> bool:
        return self.count == 0

    def update(self, values: np.ndarray, confounds: np.ndarray | None = None) -> np.ndarray:
        """``(n_features,)`` -> ``(n_features,)`` float32 with slow drifts removed."""
        values = check_volume(
            np.asarray(values, dtype=np.float64), (self.n_features,), "RecursiveHighPass"
        )
        self.count += 1
        self._mean += max(self.alpha, 1.0 / self.count) * (values - self._mean)
        return (values - self._mean).astype(np.float32)
