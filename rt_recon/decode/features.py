"""The decoder's per-TR preprocessing chain, shared by the offline fit and the online decoder.

``update(volume) -> features``: realign the volume to the bundle's reference
(rigid, SPM-style; only the decoded voxels are resliced), select those
voxels, clip spikes, detrend (polynomial drift and the motion parameters,
refitted every TR), z-score against the run so far
(:class:`rt_recon.preprocess.chain.PreprocessChain`; each stage optional, as
the bundle's ``preprocess`` spec says). Fitting runs this very object over
the training runs, so the decoders never see features computed differently
from the ones they get live. Registering every volume to the bundle's
reference also aligns a new session to the session the decoders were
fitted on (cross-session alignment), whatever the head position.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from rt_recon.errors import BundleError, DataError, ShapeMismatchError
from rt_recon.preprocess.chain import PreprocessChain, TrQuality
from rt_recon.preprocess.despike import SpikeDetector
from rt_recon.preprocess.detrend import OnlineDetrend
from rt_recon.preprocess.fd import FramewiseDisplacement
from rt_recon.preprocess.highpass import RecursiveHighPass
from rt_recon.preprocess.mask import VoxelSelection
from rt_recon.preprocess.motion import MotionCorrection
from rt_recon.preprocess.zscore import RunningZScore


def _detrender(spec: Mapping[str, Any] | None, n: int, has_motion: bool):
    """The detrending stage a spec names: ``highpass`` (recursive) or ``glm`` (polynomial)."""
    if not spec:
        return None
    if spec.get("method", "glm") == "highpass":
        return RecursiveHighPass(n, cutoff_trs=float(spec["cutoff_trs"]))
    confounds = 6 if (spec.get("motion") and has_motion) else 0
    return OnlineDetrend(n, degree=int(spec["degree"]), n_confounds=confounds)


class FeatureExtractor:
    """``(n_channels,)`` volume -> ``(n_selected,)`` float32 features, one TR at a time.

    Args:
        spec: the bundle's ``preprocess`` entry.
        voxels: ``(n_selected,)`` sorted channel indices to keep (reference grid).
        shape: ``(x, y, z)`` of the incoming volumes; ``affine``: their RAS+ affine.
        reference: ``(x, y, z)`` motion-correction reference (the bundle's), needed
            when ``spec["motion"]`` is set; its affine is ``spec["motion"]["reference_affine"]``.
    """

    def __init__(
        self,
        spec: Mapping[str, Any],
        voxels: np.ndarray,
        shape: tuple[int, int, int],
        affine: np.ndarray,
        reference: np.ndarray | None = None,
    ):
        self.voxels = np.asarray(voxels, dtype=np.int64)
        self.shape = tuple(int(s) for s in shape)
        self.n_channels = int(np.prod(self.shape))
        n = len(self.voxels)
        motion = None
        motion_spec = spec.get("motion")
        grid = self.shape
        if motion_spec:
            if reference is None:
                raise BundleError(
                    "the bundle's preprocessing realigns volumes but has no reference"
                )
            motion = MotionCorrection(
                reference,
                np.asarray(motion_spec["reference_affine"], dtype=np.float64).reshape(4, 4),
                volume_affine=np.asarray(affine, dtype=np.float64).reshape(4, 4),
                volume_shape=self.shape,
                fwhm=float(motion_spec.get("fwhm", 5.0)),
                sep=float(motion_spec.get("sep", 4.0)),
                quality=float(motion_spec.get("quality", 0.9)),
            )
            grid = motion.reference_shape
        detrend_spec = spec.get("detrend")
        self.chain = PreprocessChain(
            motion=motion,
            select=VoxelSelection(self.voxels, grid),
            despike=SpikeDetector(n) if spec.get("despike") else None,
            detrend=_detrender(detrend_spec, n, motion is not None),
            zscore=RunningZScore(n, warmup=int(spec["zscore_warmup_trs"])),
            fd=FramewiseDisplacement() if motion is not None else None,
        )

    @property
    def warming_up(self) -> bool:
        return bool(self.chain.quality.warming_up) or self.chain.count == 0

    @property
    def quality(self) -> TrQuality:
        """What the last :meth:`update` measured: motion parameters, FD, spike flag."""
        return self.chain.quality

    def update(self, values: np.ndarray) -> np.ndarray:
        if values.shape != (self.n_channels,):
            raise ShapeMismatchError(
                f"volume has {values.shape} values, the decoder bundle expects ({self.n_channels},)"
            )
        checked = values if self.chain.motion is not None else values[self.voxels]
        bad = ~np.isfinite(checked)
        if bad.any():
            raise DataError(f"volume has {int(bad.sum())} NaN/Inf values")
        return self.chain.update(values.astype(np.float32, copy=False))
