"""The decoder's per-TR preprocessing, shared by the offline fit and the online decoder.

``update(volume) -> features``: the chain the bundle's
:class:`~rt_recon.preprocess.PreprocessSpec` describes (realign the volume to
the bundle's reference, rigid, SPM-style, reslicing only the decoded voxels;
select those voxels; clip spikes; detrend; z-score against the run so far),
after checking the volume's shape and values. Fitting runs this very object
over the training runs, so the decoders never see features computed
differently from the ones they get live. Registering every volume to the
bundle's reference also aligns a new session to the session the decoders
were fitted on (cross-session alignment), whatever the head position.
"""

from __future__ import annotations

import numpy as np

from rt_recon.errors import DataError, ShapeMismatchError
from rt_recon.preprocess import PreprocessSpec, TrQuality


class FeatureExtractor:
    """``(n_channels,)`` volume -> ``(n_selected,)`` float32 features, one TR at a time.

    Args:
        spec: the bundle's preprocessing spec.
        voxels: ``(n_selected,)`` sorted channel indices to keep (reference grid).
        shape: ``(x, y, z)`` of the incoming volumes; ``affine``: their RAS+ affine.
        reference: ``(x, y, z)`` motion-correction reference (the bundle's), needed
            when the spec realigns.
    """

    def __init__(
        self,
        spec: PreprocessSpec,
        voxels: np.ndarray,
        shape: tuple[int, int, int],
        affine: np.ndarray,
        reference: np.ndarray | None = None,
    ):
        self.voxels = np.asarray(voxels, dtype=np.int64)
        self.shape = tuple(int(s) for s in shape)
        self.n_channels = int(np.prod(self.shape))
        self.chain = spec.build(self.voxels, self.shape, affine, reference)

    @property
    def warming_up(self) -> bool:
        return bool(self.chain.quality.warming_up) or self.chain.count == 0

    @property
    def quality(self) -> TrQuality:
        """What the last :meth:`update` measured: motion parameters, FD, spike flag."""
        return self.chain.quality

    def update(self, values: np.ndarray) -> np.ndarray:
        return self.update_realigned(*self.realign(values))

    def update_realigned(self, values: np.ndarray, quality: TrQuality) -> np.ndarray:
        """The temporal stages on :meth:`realign`'s values -> ``(n_selected,)`` features
        (:meth:`~rt_recon.preprocess.chain.PreprocessChain.update_realigned`)."""
        return self.chain.update_realigned(values, quality)

    def realign(self, values: np.ndarray) -> tuple[np.ndarray, TrQuality]:
        """The checked volume realigned to the selected voxels, before the temporal stages
        (:meth:`~rt_recon.preprocess.chain.PreprocessChain.realign`)."""
        if values.shape != (self.n_channels,):
            raise ShapeMismatchError(
                f"volume has {values.shape} values, the decoder bundle expects ({self.n_channels},)"
            )
        checked = values if self.chain.motion is not None else values[self.voxels]
        bad = ~np.isfinite(checked)
        if bad.any():
            raise DataError(f"volume has {int(bad.sum())} NaN/Inf values")
        return self.chain.realign(values.astype(np.float32, copy=False))
