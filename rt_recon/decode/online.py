"""Apply a decoder bundle one volume at a time.

Per TR: preprocess the volume into features of the voxels any head reads
(:class:`~rt_recon.decode.features.FeatureExtractor`) and project them once
through each head (``k`` numbers for a low-rank head). The estimate of a
trial whose onset was TR ``o`` is the HRF-weighted sum of the projections of
TRs ``o + lag - m`` (``m < len(weights)``), over the ones received so far,
divided by the weights they carry; plus the intercept. So:

* **trial mode** (onsets from the marker stream): every TR updates the
  current trial's estimate; it is complete at TR ``o + lag``;
* **continuous mode** (no markers, e.g. imagery): every TR's estimate is of
  a trial assumed to have begun ``lag`` TRs earlier: a sliding window.

A complete window's estimate is exactly the feature the decoders were
fitted on (:func:`rt_recon.decode.fit.feature_series`). Offline decoding of
a recorded run is this same object fed the run's volumes in order, so online
and offline latents are identical by construction.
"""

from __future__ import annotations

import numpy as np

from rt_recon.decode.bundle import DecoderBundle, DecoderHead
from rt_recon.decode.features import FeatureExtractor
from rt_recon.protocol import TrialWindow, VolumeStreamMeta


def selected_voxels(bundle: DecoderBundle) -> np.ndarray:
    """Sorted union of the channels any head reads."""
    return np.unique(np.concatenate([h.voxels for h in bundle.heads.values()]))


class OnlineDecoder:
    """``preprocess(volume) -> features``, then ``decode(features, tr) -> {head: latent}``."""

    def __init__(self, bundle: DecoderBundle, stream: VolumeStreamMeta | None = None):
        """``stream``: the live stream's geometry (default: the one the bundle was fitted on)."""
        self.bundle = bundle
        self.voxels = selected_voxels(bundle)
        if stream is not None:
            shape, affine = stream.shape, stream.affine
        else:
            fitted = bundle.stream
            shape, affine = fitted.shape, fitted.affine if fitted.affine is not None else np.eye(4)
        self.features = FeatureExtractor(
            bundle.preprocess, self.voxels, shape, affine, bundle.reference
        )
        self.weights = np.asarray(bundle.window.hrf_weights, dtype=np.float32)
        self.lag = bundle.window.lag_trs
        self.window = TrialWindow(self.lag, len(self.weights))
        self._heads: list[tuple[str, DecoderHead, np.ndarray]] = [
            (name, head, np.searchsorted(self.voxels, head.voxels))
            for name, head in bundle.heads.items()
        ]
        # TR index -> one projection per head; kept for the longest window reach.
        self._projections: dict[int, list[np.ndarray]] = {}
        self._next_tr = 0

    @property
    def warming_up(self) -> bool:
        return self.features.warming_up

    def preprocess(self, values: np.ndarray) -> np.ndarray:
        """``(n_channels,)`` volume -> ``(n_selected,)`` float32 features."""
        return self.features.update(values)

    def window_trs(self, onset: int) -> list[int]:
        """The TRs whose projections make the estimate of a trial with onset TR ``onset``
        (the trial rule's window, :class:`~rt_recon.protocol.TrialWindow`)."""
        return self.window.trs(onset)

    def decode(
        self, features: np.ndarray, tr: int | None = None, trial_onset: int | None = None
    ) -> dict[str, np.ndarray]:
        """Features of TR ``tr`` -> ``{head name: array of the head's target shape}`` (float32).

        Args:
            features: this TR's preprocessed features.
            tr: its TR index (default: one more than the last); TRs never
                given (missed on the wire) are left out of every window.
            trial_onset: onset TR of the trial to estimate (trial mode); None
                for continuous mode (onset ``tr - lag``).
        """
        tr = self._next_tr if tr is None else tr
        self._next_tr = tr + 1
        self._projections[tr] = [features[local] @ head.weights for _, head, local in self._heads]
        oldest = tr - self.lag - len(self.weights)
        for stale in [t for t in self._projections if t < oldest]:
            del self._projections[stale]
        onset = tr - self.lag if trial_onset is None else trial_onset
        terms = [(w, j) for w, j in zip(self.weights, self.window_trs(onset), strict=True)
                 if j <= tr and j in self._projections]  # fmt: skip
        total = float(sum(w for w, _ in terms))
        out = {}
        for index, (name, head, _) in enumerate(self._heads):
            estimate = np.zeros(head.weights.shape[1], dtype=np.float32)
            for w, j in terms:
                estimate += w * self._projections[j][index]
            if total > 0:
                estimate /= total
            if head.components is not None:
                estimate = estimate @ head.components
            out[name] = (estimate + head.intercept).reshape(head.target_shape)
        return out

    def update(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """Continuous mode, one call per TR: ``decode(preprocess(values))``."""
        return self.decode(self.preprocess(values))
