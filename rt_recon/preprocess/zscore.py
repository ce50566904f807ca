"""Running (causal) z-score per voxel."""

from __future__ import annotations

import numpy as np


class RunningZScore:
    """Z-score each feature against the mean and std of every sample so far (Welford).

    ``update(x)`` folds ``x`` into the running statistics, then returns
    ``(x - mean) / std``. Until ``warmup`` samples have been seen the
    estimate is unreliable (:attr:`warming_up`); before the second sample
    the output is zeros. Features with zero variance output zeros.

    Args:
        n_features: length of each sample.
        warmup: samples before :attr:`warming_up` turns False (>= 2).
    """

    def __init__(self, n_features: int, warmup: int = 4):
        self.n_features = n_features
        self.warmup = warmup
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self._mean = np.zeros(self.n_features, dtype=np.float64)
        self._m2 = np.zeros(self.n_features, dtype=np.float64)

    @property
    def warming_up(self) -> bool:
        return self.count < self.warmup

    def update(self, x: np.ndarray) -> np.ndarray:
        """``(n_features,)`` sample -> ``(n_features,)`` float32 z-scores."""
        self.count += 1
        delta = x - self._mean
        self._mean += delta / self.count
        self._m2 += delta * (x - self._mean)
        if self.count < 2:
            return np.zeros(self.n_features, dtype=np.float32)
        std = np.sqrt(self._m2 / (self.count - 1))
        out = np.divide(x - self._mean, std, out=np.zeros_like(std), where=std > 0)
        return out.astype(np.float32)
