"""Apply a decoder bundle one volume at a time.

Per TR: preprocess the volume into features of the voxels the decoder reads
(:class:`~rt_recon.decode.features.FeatureExtractor`: the heads' voxels and,
for a recipe that denoises, the noise pool), remove the noise components
(:class:`~rt_recon.decode.denoise.Denoiser`) and keep the result for the
window. The estimate of a trial whose onset was TR ``o`` is then, per voxel,
the weighted sum of its features at TRs ``o + lag - m`` (``m < n_window``)
received so far (:class:`~rt_recon.decode.trial_estimate.TrialEstimator`:
a matched filter divided by the weights the TRs present carry, or least
squares on the window), projected through each head (``k`` numbers for a
low-rank head), plus the intercept. So:

* **trial mode** (onsets from the marker stream): every TR updates the
  current trial's estimate; it is complete at TR ``o + lag``;
* **continuous mode** (no markers, e.g. imagery): every TR's estimate is of
  a trial assumed to have begun ``lag`` TRs earlier: a sliding window.

Every step is linear, so combining features over the window and projecting
once costs what projecting every TR and combining projections did (one
projection per TR), and lets each voxel have its own weights (HRF groups,
least squares). A complete window's estimate is exactly the feature the
decoders were fitted on (:mod:`rt_recon.decode.fit` calls the same
:class:`TrialEstimator`).

**The first volume** of the run (one object decodes one run) is first aligned
to the bundle's motion-correction reference with no earlier estimate
(:meth:`~rt_recon.preprocess.motion.MotionCorrection.align`: the fit from the
identity, its convergence and residual reported), so a head that moved since
the bundle's session is found before its masks and weights apply; the run's
per-TR fits start from that transform, and :attr:`OnlineDecoder.alignment`
keeps it.

**Data quality.** Between realignment and the temporal stages each TR's voxels also go
through a :class:`~rt_recon.preprocess.quality.QualityMonitor` (tSNR of each head's voxels
over a sliding window, the global signal, DVARS and volume outliers):
:attr:`OnlineDecoder.measures` holds the last TR's. It reads the values and changes nothing
the decoders see.

**Confidence.** Each :meth:`OnlineDecoder.decode` also sets :attr:`OnlineDecoder.confidence`:
where the TR's latents fall in the bundle's null of the decoder's output on noise
(:mod:`rt_recon.decode.confidence`; None for a bundle without one).

**Snapping.** A bundle whose recipe snaps ``c`` replaces the decoded ``c`` by the nearest
caption of its bank (:mod:`rt_recon.decode.caption_bank`) after the confidence is taken
(the confidence reads the linear prediction, as its null was made of).

Offline decoding of a recorded run is this same object fed the run's volumes
in order, so online and offline latents are identical by construction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rt_recon.decode.bundle import DecoderBundle, DecoderHead
from rt_recon.decode.denoise import Denoiser
from rt_recon.decode.features import FeatureExtractor
from rt_recon.decode.trial_estimate import TrialEstimator
from rt_recon.preprocess.motion import Alignment
from rt_recon.preprocess.quality import QualityMeasures, QualityMonitor
from rt_recon.protocol import TrialWindow, VolumeStreamMeta


def selected_voxels(bundle: DecoderBundle) -> np.ndarray:
    """Sorted union of the channels any head reads."""
    return np.unique(np.concatenate([h.voxels for h in bundle.heads.values()]))


def extracted_voxels(bundle: DecoderBundle) -> np.ndarray:
    """Sorted channels the decoder preprocesses: the heads' and the noise pool's."""
    decoded = selected_voxels(bundle)
    return decoded if bundle.noise is None else np.union1d(decoded, bundle.noise.pool)


class OnlineDecoder:
    """``preprocess(volume) -> features``, then ``decode(features, tr) -> {head: latent}``."""

    def __init__(
        self,
        bundle: DecoderBundle,
        stream: VolumeStreamMeta | None = None,
        *,
        quality_window: int = 30,
        outlier_z: float = 8.0,
    ):
        """``stream``: the live stream's geometry (default: the one the bundle was fitted on);
        ``quality_window`` (TRs) and ``outlier_z``: the :class:`QualityMonitor`'s window and
        outlier rule (the session's ``quality.window_trs`` and ``max_dvars_z``)."""
        self.bundle = bundle
        self.decoded = selected_voxels(bundle)
        self.voxels = extracted_voxels(bundle)
        if stream is not None:
            shape, affine = stream.shape, stream.affine
        else:
            fitted = bundle.stream
            shape, affine = fitted.shape, fitted.affine if fitted.affine is not None else np.eye(4)
        self.features = FeatureExtractor(
            bundle.preprocess, self.voxels, shape, affine, bundle.reference
        )
        self.denoiser = Denoiser(bundle.noise, self.voxels, self.decoded)
        temporal = bundle.temporal_model
        self.estimator = TrialEstimator(temporal, len(self.decoded))
        self.weights = np.asarray(bundle.window.hrf_weights, dtype=np.float32)
        self.lag = bundle.window.lag_trs
        self.window = TrialWindow(self.lag, temporal.n_window)
        self._heads: list[tuple[str, DecoderHead, np.ndarray]] = [
            (name, head, np.searchsorted(self.decoded, head.voxels))
            for name, head in bundle.heads.items()
        ]
        # TR index -> denoised features; kept for the longest window reach.
        self._features: dict[int, np.ndarray] = {}
        self._next_tr = 0
        #: The run's first volume aligned to the bundle's reference (None before it, and
        #: for a bundle that does not realign).
        self.alignment: Alignment | None = None
        #: Data quality of each head's voxels (its ROI) and of all of them, per TR.
        rois = {name: np.searchsorted(self.voxels, h.voxels) for name, h in bundle.heads.items()}
        self.monitor = QualityMonitor(
            len(self.voxels),
            rois,
            window=quality_window,
            min_trs=min(10, quality_window),
            outlier_z=outlier_z,
        )
        #: The last TR's data quality (None before the first).
        self.measures: QualityMeasures | None = None
        #: The last decoded TR's confidence in ``[0, 1]`` (:mod:`rt_recon.decode.confidence`);
        #: None before the first and for a bundle fitted without it.
        self.confidence: float | None = None

    @property
    def warming_up(self) -> bool:
        return self.features.warming_up

    def preprocess(self, values: np.ndarray) -> np.ndarray:
        """``(n_channels,)`` volume -> ``(len(self.voxels),)`` float32 features; the run's
        first volume is aligned to the bundle's reference first (:attr:`alignment`)."""
        motion = self.features.chain.motion
        if (
            motion is not None
            and self.alignment is None
            and values.shape == (self.features.n_channels,)  # else update() says what is wrong
        ):
            self.alignment = motion.align(values)
        realigned, quality = self.features.realign(values)
        self.measures = self.monitor.update(realigned)
        return self.features.update_realigned(realigned, quality)

    def window_trs(self, onset: int) -> list[int]:
        """The TRs whose features make the estimate of a trial with onset TR ``onset``
        (the trial rule's window, :class:`~rt_recon.protocol.TrialWindow`)."""
        return self.window.trs(onset)

    def decode(
        self,
        features: np.ndarray,
        tr: int | None = None,
        trial_onset: int | None = None,
        onsets: Sequence[int] | None = None,
    ) -> dict[str, np.ndarray]:
        """Features of TR ``tr`` -> ``{head name: array of the head's target shape}`` (float32).

        Args:
            features: this TR's preprocessed features (:meth:`preprocess`).
            tr: its TR index (default: one more than the last); TRs never
                given (missed on the wire) are left out of every window.
            trial_onset: onset TR of the trial to estimate (trial mode); None
                for continuous mode (onset ``tr - lag``).
            onsets: every trial onset TR known, for a least-squares recipe (the
                other trials it separates); None assumes the fitted schedule.
        """
        estimate = self.estimate(features, tr, trial_onset, onsets)
        out = {
            name: head.predict(estimate[local]).reshape(head.target_shape)
            for name, head, local in self._heads
        }
        model = self.bundle.confidence
        self.confidence = None if model is None else model.confidence(out)
        bank = self.bundle.caption_bank
        if bank is not None and self.bundle.recipe.snap_c and "c" in out:
            out["c"] = bank.snap(out["c"])
        return out

    def estimate(
        self,
        features: np.ndarray,
        tr: int | None = None,
        trial_onset: int | None = None,
        onsets: Sequence[int] | None = None,
    ) -> np.ndarray:
        """Take TR ``tr``'s features; the trial's ``(n_decoded,)`` per-voxel estimate (what the
        heads project; at the trial's scored TR, what the fit fitted on). Arguments as
        :meth:`decode`."""
        tr = self._next_tr if tr is None else tr
        self._next_tr = tr + 1
        self._features[tr] = self.denoiser.apply(features)
        oldest = tr - self.lag - self.window.n_window
        for stale in [t for t in self._features if t < oldest]:
            del self._features[stale]
        onset = tr - self.lag if trial_onset is None else trial_onset
        return self.estimator.estimate(self._features.get, tr, onset, onsets)

    def update(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """Continuous mode, one call per TR: ``decode(preprocess(values))``."""
        return self.decode(self.preprocess(values))
