"""The decoder's temporal model: an HRF-weighted sum over the last few TRs."""

from __future__ import annotations

import numpy as np


class HrfWindow:
    """``update(v_t) -> sum_k weights[k] * v_{t-k}`` over the last ``len(weights)`` updates.

    Samples before the first update count as zeros. Used on preprocessed
    volumes when fitting and on per-volume projections online: the decoders
    are linear, so both give the same estimates.
    """

    def __init__(self, weights: np.ndarray, dim: int):
        self.weights = np.asarray(weights, dtype=np.float32)
        self._ring = np.zeros((len(self.weights), dim), dtype=np.float32)
        self._count = 0

    def update(self, value: np.ndarray) -> np.ndarray:
        k = len(self.weights)
        self._ring[self._count % k] = value
        self._count += 1
        # ring slot of v_{t-j} is (count - 1 - j) % k
        order = (self._count - 1 - np.arange(k)) % k
        return self.weights @ self._ring[order]
