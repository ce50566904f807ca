"""The realistic synthetic participant: the easy brain without the shortcuts that suit the decoder.

Same geometry, pRF layout and higher-visual tuning as
:class:`~rt_recon.simulators.brain.SyntheticBrain`; what changes
(parameters and sources in :mod:`rt_recon.simulators.participant`):

* early visual voxels respond to the local contrast energy under their pRF,
  compressed (``(pRF . E) ** n``, CSS), and only weakly to uniform luminance;
* each ROI voxel has its own HRF timing (:mod:`~rt_recon.simulators.hrf_variation`);
* voxel gains are lognormal, a fraction of ROI voxels does not respond, and
  every trial's response is scaled by a trial gain (partly shared by the ROI);
* noise has a low-rank shared part (:mod:`~rt_recon.simulators.shared_noise`)
  on top of AR(1) and thermal noise;
* a :class:`ScanDay` says which session a run belongs to: the second has the
  head repositioned, a changed coil sensitivity and its own noise level;
* the decoder's ROI masks are atlas-like (:mod:`~rt_recon.simulators.atlas_masks`);
  ``roi_masks`` stay the oracle, for evaluating the simulator only;
* a trial can be imagined instead of seen (``simulate_run(..., imagery=)``,
  :class:`~rt_recon.simulators.participant.Imagery`): early visual responses
  weaker, pooled more broadly and from a low-passed picture; higher visual
  ones nearer vision's.

Every extra draw comes from its own generator seeded by ``(seed, 2, k)``, so
the geometry, pRFs and tuning equal the easy brain's of the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.ndimage import affine_transform, gaussian_filter

from rt_recon.errors import DataError
from rt_recon.simulators.atlas_masks import atlas_like
from rt_recon.simulators.brain import (
    _PRF_RESOLUTION,
    _REFERENCE_STIMULI,
    NoiseModel,
    SyntheticBrain,
    _flat_indices,
    rigid_matrix,
)
from rt_recon.simulators.contrast_energy import REFERENCE_SIZE_PX, contrast_energy
from rt_recon.simulators.hrf_variation import peak_shifts, voxelwise_signal
from rt_recon.simulators.participant import RealisticParticipant
from rt_recon.simulators.shared_noise import shared_components
from rt_recon.simulators.world import BLANK_ID, StimulusWorld

ROIS = ("ev", "hv")


@dataclass(frozen=True)
class ScanDay:
    """The acquisition state of one scanning session.

    ``head_offset`` ``(6,)``: the head's rigid position relative to session 1,
    ``(tx, ty, tz)`` mm and rotations about x, y, z in radians (as
    :func:`~rt_recon.simulators.brain.rigid_matrix`), applied to every volume
    before the within-run motion. ``bias`` ``(n_voxels,)``: the coil
    sensitivity multiplying the baseline image (Fortran order). ``noise_scale``:
    this day's noise relative to session 1's.
    """

    session: str
    head_offset: np.ndarray
    bias: np.ndarray
    noise_scale: float = 1.0


class RealisticBrain(SyntheticBrain):
    """One realistic synthetic subject (see the module docstring)."""

    def __init__(
        self,
        world: StimulusWorld,
        grid: tuple[int, int, int] = (32, 38, 24),
        voxel_size_mm: float = 3.0,
        seed: int = 0,
        params: RealisticParticipant | None = None,
    ):
        self.params = params or RealisticParticipant()
        self.seed = int(seed)
        # SyntheticBrain.__init__ builds the geometry, pRFs and tuning, then calls
        # _normalisers, which here needs the CSS exponents: drawn there from stream 0.
        super().__init__(world, grid=grid, voxel_size_mm=voxel_size_mm, seed=seed)
        indices = {"ev": self.ev_index, "hv": self.hv_index}
        hrf_rng, gain_rng = self._stream(1), self._stream(2)
        self.hrf_shifts = {
            roi: peak_shifts(self.roi_masks[roi], self.params.hrf, hrf_rng) for roi in ROIS
        }
        gains = self.params.gains
        self.voxel_gains, self.responsive = {}, {}
        for roi in ROIS:
            n = indices[roi].size
            self.responsive[roi] = gain_rng.random(n) >= gains.non_responsive_fraction
            lognormal = np.exp(gain_rng.normal(0.0, gains.voxel_sigma, n))
            self.voxel_gains[roi] = np.where(self.responsive[roi], lognormal, 0.0)
        self.shared = shared_components(self.brain_mask, self.params.shared_noise, self._stream(3))
        atlas_rng = self._stream(4)
        self.decoder_masks, self.mask_offsets = {}, {}
        for roi in ROIS:
            mask, offset = atlas_like(
                self.roi_masks[roi], self.brain_mask, self.params.atlas, atlas_rng
            )
            self.decoder_masks[roi], self.mask_offsets[roi] = mask, offset
        self.decoder_index = {roi: _flat_indices(self.decoder_masks[roi]) for roi in ROIS}

    def _stream(self, k: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, 2, k])

    # ------------------------------------------------------------------ days

    def scan_day(self, session: int) -> ScanDay:
        """Session ``1`` (the training day) or a later one, with the head repositioned."""
        n_flat = int(np.prod(self.grid))
        if session == 1:
            return ScanDay("01", np.zeros(6), np.ones(n_flat))
        if session < 1:
            raise ValueError(f"sessions are numbered from 1, found {session}")
        day = self.params.second_session
        rng = np.random.default_rng([self.seed, 2, 5, session])
        direction, axis = rng.normal(0.0, 1.0, 3), rng.normal(0.0, 1.0, 3)
        offset = np.concatenate(
            [
                day.offset_mm * direction / np.linalg.norm(direction),
                np.deg2rad(day.offset_deg) * axis / np.linalg.norm(axis),
            ]
        )
        field = np.ravel(gaussian_filter(rng.normal(0.0, 1.0, self.grid), 4.0), order="F")
        inside = np.ravel(self.brain_mask, order="F")
        field = (field - field[inside].mean()) / (field[inside].std() + 1e-12)
        bias = 1.0 + day.bias_change * field
        return ScanDay(f"{session:02d}", offset, bias, day.noise_scale)

    # ------------------------------------------------------------------ responses

    def _ev_terms(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Compressed contrast energy and luminance under each pRF, ``(n, n_ev)`` each."""
        contrast = self.params.contrast
        energy, luminance = contrast_energy(
            images, _PRF_RESOLUTION, contrast.scales_px, contrast.colour_weight
        )
        prf = self._prf_matrix()
        pooled = np.maximum(energy @ prf, 0.0)
        return pooled**self.css_exponents, luminance @ prf

    def _raw_ev(self, images: np.ndarray) -> np.ndarray:
        css, luminance = self._ev_terms(images)
        css_scale, luminance_scale = self._ev_term_scales
        weight = self.params.contrast.luminance_weight
        return css / css_scale + weight * luminance / luminance_scale

    def _normalisers(self, rng: np.random.Generator) -> tuple[tuple, tuple]:
        lo, hi = self.params.contrast.exponent
        self.css_exponents = self._stream(0).uniform(lo, hi, self.ev_index.size)
        ref = rng.choice(self.world.n_stimuli, size=_REFERENCE_STIMULI, replace=False)
        images = self.world.images(ref)
        css, luminance = self._ev_terms(images)
        self._ev_term_scales = (css.std(axis=0) + 1e-9, luminance.std(axis=0) + 1e-9)
        blank = np.array([BLANK_ID])
        ev_blank = self._raw_ev(self.world.images(blank))[0]
        hv_blank = self._raw_hv(blank)[0]
        ev_std = (self._raw_ev(images) - ev_blank).std(axis=0) + 1e-9
        hv_std = (self._raw_hv(ref) - hv_blank).std(axis=0) + 1e-9
        return (ev_blank, ev_std), (hv_blank, hv_std)

    def responses(self, stimulus_ids: np.ndarray) -> dict[str, np.ndarray]:
        """Neural amplitudes relative to the blank, times each voxel's gain (0: non-responsive)."""
        base = super().responses(stimulus_ids)
        return {roi: base[roi] * self.voxel_gains[roi] for roi in ROIS}

    def image_responses(self, images: np.ndarray) -> np.ndarray:
        """EV amplitudes ``(n, n_ev)`` to arbitrary ``(n, H, W, 3)`` pictures, gains included."""
        ev_blank, ev_std = self._ev_norm
        return (self._raw_ev(images) - ev_blank) / ev_std * self.voxel_gains["ev"]

    # ------------------------------------------------------------------ imagery

    def _imagery_ev_terms(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_ev_terms` of an imagined picture: low-passed, pooled by wider pRFs."""
        imagery, contrast = self.params.imagery, self.params.contrast
        pictures = images.astype(np.float64)
        if imagery.lowpass_sigma_px > 0:
            sigma = imagery.lowpass_sigma_px * images.shape[1] / REFERENCE_SIZE_PX
            pictures = gaussian_filter(pictures, sigma=(0, sigma, sigma, 0), mode="nearest")
        energy, luminance = contrast_energy(
            pictures, _PRF_RESOLUTION, contrast.scales_px, contrast.colour_weight
        )
        prf = self._prf_matrix(imagery.prf_scale)
        pooled = np.maximum(energy @ prf, 0.0)
        return pooled**self.css_exponents, luminance @ prf

    @cached_property
    def _imagery_norm(self) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray, np.ndarray]:
        """Term scales, blank response and spread of the imagery EV response over the world,
        from reference pictures of a stream of their own (so vision's draws are unchanged)."""
        ref = self._stream(6).choice(self.world.n_stimuli, size=_REFERENCE_STIMULI, replace=False)
        css, luminance = self._imagery_ev_terms(self.world.images(ref))
        scales = (css.std(axis=0) + 1e-9, luminance.std(axis=0) + 1e-9)
        weight = self.params.contrast.luminance_weight
        raw = css / scales[0] + weight * luminance / scales[1]
        blank_css, blank_luminance = self._imagery_ev_terms(self.world.images([BLANK_ID]))
        blank = (blank_css / scales[0] + weight * blank_luminance / scales[1])[0]
        return scales, blank, (raw - blank).std(axis=0) + 1e-9

    def imagery_image_responses(self, images: np.ndarray) -> np.ndarray:
        """EV amplitudes ``(n, n_ev)`` of imagining ``(n, H, W, 3)`` pictures: unit spread over
        the world times ``imagery.ev_gain``, times each voxel's gain (as vision's)."""
        scales, blank, spread = self._imagery_norm
        css, luminance = self._imagery_ev_terms(images)
        weight = self.params.contrast.luminance_weight
        raw = css / scales[0] + weight * luminance / scales[1]
        gain = self.params.imagery.ev_gain
        return (raw - blank) / spread * gain * self.voxel_gains["ev"]

    def imagery_responses(self, stimulus_ids: np.ndarray) -> dict[str, np.ndarray]:
        """Neural amplitudes of imagining each picture, as :meth:`responses` gives seeing it."""
        ids = np.asarray(stimulus_ids)
        hv_blank, hv_std = self._hv_norm
        hv = (self._raw_hv(ids) - hv_blank) / hv_std * self.voxel_gains["hv"]
        return {
            "ev": self.imagery_image_responses(self.world.images(ids)),
            "hv": hv * self.params.imagery.hv_gain,
        }

    def _run_amplitudes(
        self, stimulus_ids: np.ndarray, imagery: np.ndarray | None
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """``(amplitudes, seen)``: each trial's amplitudes (imagined where ``imagery``) and
        those of seeing every picture, which set the run's noise level."""
        seen = self.responses(stimulus_ids)
        if imagery is None:
            return seen, seen
        imagery = np.asarray(imagery)
        if imagery.dtype != bool or imagery.shape != (len(stimulus_ids),):
            raise DataError(
                f"imagery must be one bool per trial, shape ({len(stimulus_ids)},); found "
                f"dtype {imagery.dtype}, shape {imagery.shape}"
            )
        if not imagery.any():
            return seen, seen
        imagined = self.imagery_responses(np.asarray(stimulus_ids)[imagery])
        amplitudes = {}
        for roi in ROIS:
            amplitudes[roi] = seen[roi].copy()
            amplitudes[roi][imagery] = imagined[roi]
        return amplitudes, seen

    def trial_gains(self, n_events: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``{"ev": (n_events, n_ev), "hv": ...}`` multiplicative gains of each trial, >= 0."""
        gains = self.params.gains
        shared = rng.normal(0.0, 1.0, (n_events, 1))
        out = {}
        for roi, index in (("ev", self.ev_index), ("hv", self.hv_index)):
            own = rng.normal(0.0, 1.0, (n_events, index.size))
            z = np.sqrt(gains.trial_shared) * shared + np.sqrt(1 - gains.trial_shared) * own
            out[roi] = np.maximum(1.0 + gains.trial_cv * z, 0.0)
        return out

    # ------------------------------------------------------------------ time series

    def simulate_run(
        self,
        stimulus_ids: np.ndarray,
        onsets: np.ndarray,
        durations: np.ndarray,
        tr_s: float,
        n_trs: int,
        noise: NoiseModel,
        rng: np.random.Generator,
        day: ScanDay | None = None,
        imagery: np.ndarray | None = None,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One run, ``(x, y, z, n_trs)`` int16, and its ground truth, on ``day`` (session 1).

        ``noise.snr`` is the median, over responsive ROI voxels, of the
        noise-free signal's std over the noise std on session 1. ``imagery``:
        ``(n_trials,)`` bool, the trials imagined rather than seen (None: all
        seen, the vision run as before); the noise level is then that of the
        same run seen, so imagined responses stand weaker against it.
        """
        day = day or self.scan_day(1)
        amplitudes, seen = self._run_amplitudes(stimulus_ids, imagery)
        trial_gains = self.trial_gains(len(onsets), rng)
        n_flat = int(np.prod(self.grid))
        signal = np.zeros((n_trs, n_flat))
        truth: dict[str, np.ndarray] = {}
        responsive_std = []

        def course(roi: str, per_trial: dict[str, np.ndarray]) -> np.ndarray:
            """ROI ``roi``'s noise-free time course for the trials' ``per_trial`` amplitudes."""
            amplitude = per_trial[roi] * trial_gains[roi]
            shifts, bin_s = self.hrf_shifts[roi], self.params.hrf.bin_s
            return voxelwise_signal(onsets, durations, tr_s, n_trs, amplitude, shifts, bin_s)

        for roi, index in (("ev", self.ev_index), ("hv", self.hv_index)):
            roi_signal = course(roi, amplitudes)
            signal[:, index] = roi_signal
            truth[f"signal_{roi}"] = roi_signal.astype(np.float32)
            truth[f"trial_gain_{roi}"] = trial_gains[roi].astype(np.float32)
            if seen is not amplitudes:  # the noise is set by the run as seen
                roi_signal = course(roi, seen)
            responsive_std.append(roi_signal[:, self.responsive[roi]].std(axis=0))
        noise_std = float(np.median(np.concatenate(responsive_std))) / noise.snr
        noise_std *= day.noise_scale
        f = noise.thermal_fraction
        independent = np.sqrt(1 - f) * self._ar1_noise(n_trs, noise, rng) + np.sqrt(f) * rng.normal(
            0, 1, size=(n_trs, n_flat)
        )
        shared_params = self.params.shared_noise
        shared = self.shared.series(n_trs, tr_s, shared_params.slow_cutoff_hz, rng)
        g = shared_params.fraction
        noise_series = noise_std * (np.sqrt(1 - g) * independent + np.sqrt(g) * shared)
        drift = self._drift(n_trs, rng) * (noise.drift_psc / noise.unit_psc)
        spikes = np.flatnonzero(rng.random(n_trs) < noise.spike_rate)
        psc = noise.unit_psc * (signal + noise_series + drift)
        psc[spikes] += noise.spike_psc * rng.choice([-1.0, 1.0], size=(len(spikes), 1))
        baseline = np.ravel(self.baseline, order="F") * day.bias
        inside = np.ravel(self.brain_mask, order="F")
        volumes = np.where(
            inside,
            baseline * (1.0 + psc / 100.0),
            baseline + rng.normal(0, 5.0, size=(n_trs, n_flat)),
        )
        volumes = volumes.T.reshape(*self.grid, n_trs, order="F")
        motion = self._motion_trace(n_trs, noise, rng)
        moved = self._apply_pose(volumes, motion, day.head_offset)
        bold = np.clip(np.rint(moved), -32768, 32767).astype(np.int16)
        truth["noise_std"] = np.array([noise_std], dtype=np.float32)
        truth["spike_trs"] = spikes.astype(np.int32)
        truth["motion"] = motion.astype(np.float32)
        truth["head_offset"] = day.head_offset.astype(np.float32)
        if imagery is not None:
            truth["imagery"] = np.asarray(imagery, dtype=np.uint8)
        return bold, truth

    def _apply_pose(self, volumes: np.ndarray, motion: np.ndarray, offset: np.ndarray):
        """Resample each volume as seen with the head at ``offset`` and then moved by ``motion``."""
        out = np.empty_like(volumes)
        to_world, to_voxel = self.affine, np.linalg.inv(self.affine)
        placed = rigid_matrix(offset)
        for t in range(volumes.shape[3]):
            pose = placed @ rigid_matrix(motion[t])
            sample = to_voxel @ np.linalg.inv(pose) @ to_world
            out[..., t] = affine_transform(
                volumes[..., t], sample[:3, :3], offset=sample[:3, 3], order=1, mode="nearest"
            )
        return out
