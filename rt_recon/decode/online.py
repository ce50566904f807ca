"""Apply a decoder bundle one volume at a time.

Per TR: preprocess the volume into features of the voxels any head reads
(:class:`~rt_recon.decode.features.FeatureExtractor`), project them once
through each head and add the projection to that head's HRF window
(``decode``). Offline decoding of a
recorded run is the same object fed the run's volumes in order, so online
and offline latents are identical by construction.
"""

from __future__ import annotations

import numpy as np

from rt_recon.decode.bundle import DecoderBundle
from rt_recon.decode.features import FeatureExtractor
from rt_recon.decode.window import HrfWindow


def selected_voxels(bundle: DecoderBundle) -> np.ndarray:
    """Sorted union of the channels any head reads."""
    return np.unique(np.concatenate([h.voxels for h in bundle.heads.values()]))


class OnlineDecoder:
    """``preprocess(volume) -> features``, then ``decode(features) -> {head: latent}``."""

    def __init__(self, bundle: DecoderBundle):
        self.bundle = bundle
        self.voxels = selected_voxels(bundle)
        spec = bundle.preprocess
        self.features = FeatureExtractor(spec, self.voxels, int(bundle.stream["n_channels"]))
        weights = np.asarray(spec["hrf_weights"], dtype=np.float32)
        self._heads = []
        for name, head in bundle.heads.items():
            local = np.searchsorted(self.voxels, head.voxels)
            # The window runs on the projections (k of them for a low-rank head),
            # before any expansion to the full target: linear, so the same result.
            window = HrfWindow(weights, dim=head.weights.shape[1])
            self._heads.append((name, head, local, window))

    @property
    def warming_up(self) -> bool:
        return self.features.warming_up

    def preprocess(self, values: np.ndarray) -> np.ndarray:
        """``(n_channels,)`` volume -> ``(n_selected,)`` float32 features."""
        return self.features.update(values)

    def decode(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Features -> ``{head name: array of the head's target shape}`` (float32)."""
        out = {}
        for name, head, local, window in self._heads:
            estimate = window.update(features[local] @ head.weights)
            if head.components is not None:
                estimate = estimate @ head.components
            out[name] = (estimate + head.intercept).reshape(head.target_shape)
        return out

    def update(self, values: np.ndarray) -> dict[str, np.ndarray]:
        return self.decode(self.preprocess(values))
