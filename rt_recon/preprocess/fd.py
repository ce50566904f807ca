"""Framewise displacement (FD) of the head between consecutive TRs, for quality control.

Power et al., 2012, "Spurious but systematic correlations in functional
connectivity MRI networks arise from subject motion", NeuroImage 59:2142-2154:
``FD_t = |dtx| + |dty| + |dtz| + r (|dpitch| + |droll| + |dyaw|)``, the
differences taken between TR ``t`` and ``t - 1`` of the six realignment
parameters, rotations turned into arc length on a sphere of radius
``r = 50`` mm. ``FD_0 = 0``.
"""

from __future__ import annotations

import numpy as np

from rt_recon.preprocess._checks import check_volume


def framewise_displacement(params: np.ndarray, radius_mm: float = 50.0) -> np.ndarray:
    """``(n_trs, 6)`` parameters (mm, mm, mm, rad, rad, rad) -> ``(n_trs,)`` FD in mm."""
    params = np.asarray(params, dtype=np.float64)
    if params.ndim != 2 or params.shape[1] != 6:
        raise ValueError(f"expected (n_trs, 6) motion parameters, found shape {params.shape}")
    diff = np.abs(np.diff(params, axis=0))
    fd = diff[:, :3].sum(axis=1) + radius_mm * diff[:, 3:].sum(axis=1)
    return np.concatenate([[0.0], fd])


class FramewiseDisplacement:
    """FD one TR at a time: ``update(params (6,)) -> float`` mm.

    TRs whose FD exceeds ``threshold_mm`` are listed in :attr:`flagged_trs`
    (0-based update indices; Power et al. censor at 0.5 mm).

    Args:
        radius_mm: radius of the sphere turning rotations into mm.
        threshold_mm: FD above which a TR is flagged.
    """

    def __init__(self, radius_mm: float = 50.0, threshold_mm: float = 0.5):
        self.radius_mm = float(radius_mm)
        self.threshold_mm = float(threshold_mm)
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.value = 0.0
        self.flagged_trs: list[int] = []
        self._previous: np.ndarray | None = None

    def update(self, params: np.ndarray) -> float:
        """``(6,)`` parameters of this TR -> FD in mm against the previous TR (0 for the first)."""
        params = check_volume(
            np.asarray(params, dtype=np.float64), (6,), "FramewiseDisplacement", "motion parameters"
        )
        if self._previous is None:
            self.value = 0.0
        else:
            diff = np.abs(params - self._previous)
            self.value = float(diff[:3].sum() + self.radius_mm * diff[3:].sum())
        if self.value > self.threshold_mm:
            self.flagged_trs.append(self.count)
        self._previous = params.copy()
        self.count += 1
        return self.value
