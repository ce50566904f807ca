"""The decoder's per-TR preprocessing chain, shared by the offline fit and the online decoder.

``update(volume) -> features``: select the voxels the decoders read, then
z-score them against the run so far. Fitting runs this very object over the
training runs, so the decoders never see features computed differently
from the ones they get live.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from rt_recon.errors import DataError, ShapeMismatchError
from rt_recon.preprocess.zscore import RunningZScore


class FeatureExtractor:
    """``(n_channels,)`` volume -> ``(n_selected,)`` float32 features, one TR at a time.

    Args:
        spec: the bundle's ``preprocess`` entry (``zscore_warmup_trs``).
        voxels: ``(n_selected,)`` sorted channel indices to keep.
        n_channels: values per volume on the stream.
    """

    def __init__(self, spec: Mapping[str, Any], voxels: np.ndarray, n_channels: int):
        self.voxels = np.asarray(voxels, dtype=np.int64)
        self.n_channels = int(n_channels)
        self.zscore = RunningZScore(len(self.voxels), warmup=int(spec["zscore_warmup_trs"]))

    @property
    def warming_up(self) -> bool:
        return self.zscore.warming_up

    def update(self, values: np.ndarray) -> np.ndarray:
        if values.shape != (self.n_channels,):
            raise ShapeMismatchError(
                f"volume has {values.shape} values, the decoder bundle expects ({self.n_channels},)"
            )
        selected = values[self.voxels].astype(np.float64)
        bad = ~np.isfinite(selected)
        if bad.any():
            raise DataError(f"volume has {int(bad.sum())} NaN/Inf values in decoded voxels")
        return self.zscore.update(selected)
