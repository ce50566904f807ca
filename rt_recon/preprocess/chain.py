"""The per-TR preprocessing chain: motion -> voxel selection -> despike -> detrend -> z-score.

A fixed order, not a generic graph: each stage is optional and the data flow
reads top to bottom in :meth:`PreprocessChain.update`. The motion stage's
parameters also feed framewise displacement and, when the detrender expects
six confounds, its regressors. With both a motion stage and a voxel selection,
only the selected voxels are resliced (same values, cost proportional to the
mask).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rt_recon.errors import ShapeMismatchError
from rt_recon.preprocess.despike import SpikeDetector
from rt_recon.preprocess.detrend import OnlineDetrend
from rt_recon.preprocess.fd import FramewiseDisplacement
from rt_recon.preprocess.mask import VoxelSelection
from rt_recon.preprocess.motion import MotionCorrection
from rt_recon.preprocess.zscore import RunningZScore


@dataclass
class TrQuality:
    """What the chain measured on one TR (``None`` where the stage is absent)."""

    index: int
    params: np.ndarray | None = None  # (6,) mm, mm, mm, rad, rad, rad vs the reference
    fd_mm: float | None = None
    iterations: int = 0
    spike: bool = False
    spike_fraction: float = 0.0
    warming_up: list[str] = field(default_factory=list)  # stages still in their warm-up


class PreprocessChain:
    """``update(volume) -> (n_features,)`` float32, one TR at a time; :attr:`quality` per TR.

    ``volume`` is ``(x, y, z)`` or ``(n_voxels,)`` in x-fastest (Fortran) order.
    With a :class:`VoxelSelection`, the output holds its voxels in its order;
    without one, every voxel of the (resliced) volume in x-fastest order.
    """

    def __init__(
        self,
        *,
        motion: MotionCorrection | None = None,
        select: VoxelSelection | None = None,
        despike: SpikeDetector | None = None,
        detrend: OnlineDetrend | None = None,
        zscore: RunningZScore | None = None,
        fd: FramewiseDisplacement | None = None,
    ):
        if detrend is not None and detrend.n_confounds not in (0, 6):
            raise ShapeMismatchError(
                f"the chain feeds 6 motion parameters or none to OnlineDetrend, "
                f"found n_confounds={detrend.n_confounds}"
            )
        if detrend is not None and detrend.n_confounds == 6 and motion is None:
            raise ShapeMismatchError("OnlineDetrend expects 6 motion confounds but no motion stage")
        if fd is not None and motion is None:
            raise ShapeMismatchError("FramewiseDisplacement needs a motion stage")
        if motion is not None and select is not None and select.shape != motion.reference_shape:
            raise ShapeMismatchError(
                f"VoxelSelection is for {select.shape} volumes, the motion reference "
                f"is {motion.reference_shape}"
            )
        self.motion, self.select, self.despike = motion, select, despike
        self.detrend, self.zscore, self.fd = detrend, zscore, fd
        self.count = 0
        self.quality = TrQuality(index=-1)

    def reset(self) -> None:
        for stage in self._stages():
            stage.reset()
        self.count = 0
        self.quality = TrQuality(index=-1)

    def update(self, volume: np.ndarray) -> np.ndarray:
        """One TR: realign and select (:meth:`realign`), then the temporal stages."""
        return self.update_realigned(*self.realign(volume))

    def realign(self, volume: np.ndarray) -> tuple[np.ndarray, TrQuality]:
        """The volume realigned and reduced to the selected voxels (``(n_features,)``, the
        values the temporal stages start from) and the TR's quality so far (motion, FD).

        Every value is one voxel's own (resliced by its own interpolation): the columns of a
        wider selection's values are those of a narrower one's.
        """
        quality = TrQuality(index=self.count)
        values = np.asarray(volume)
        if self.motion is not None and self.select is not None:
            # Reslice only the selected voxels: the cost follows the mask, not the volume.
            self.motion.estimate(values)
            values = self.motion.reslice(values, self.select.indices)
        elif self.motion is not None:
            values = self.motion.update(values)
        if self.motion is not None:
            quality.params = self.motion.params.copy()
            quality.iterations = self.motion.iterations
            if self.fd is not None:
                quality.fd_mm = self.fd.update(quality.params)
        if self.select is not None and self.motion is None:
            values = self.select.update(values)
        elif values.ndim == 3:
            values = np.ravel(values, order="F")
        return values, quality

    def update_realigned(self, values: np.ndarray, quality: TrQuality) -> np.ndarray:
        """The temporal stages (despike, detrend with ``quality.params`` as confounds where it
        takes them, z-score) on one TR's realigned values; the TR is counted.

        ``values`` are :meth:`realign`'s, or the same voxels' columns of a wider selection's
        (a fit preprocesses a wide set once and narrows it: :func:`~rt_recon.decode.fit.
        narrow_runs`), with that TR's ``quality``.
        """
        if self.despike is not None:
            values = self.despike.update(values)
            quality.spike = self.despike.flagged
            quality.spike_fraction = self.despike.spike_fraction
        if self.detrend is not None:
            confounds = quality.params if self.detrend.n_confounds else None
            values = self.detrend.update(values, confounds)
        if self.zscore is not None:
            values = self.zscore.update(values)
        quality.warming_up = [
            type(s).__name__ for s in self._stages() if getattr(s, "warming_up", False)
        ]
        self.quality = quality
        self.count += 1
        return np.asarray(values, dtype=np.float32)

    def _stages(self) -> list:
        stages = (self.motion, self.despike, self.detrend, self.zscore, self.fd)
        return [s for s in stages if s is not None]
