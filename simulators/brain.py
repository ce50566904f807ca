"""A synthetic brain that sees the synthetic world: the ground truth the decoders must recover.

Geometry: an ellipsoidal brain in a ``grid`` of isotropic voxels, with two
regions of interest:

* **EV** (early visual, posterior pole): each voxel has a population
  receptive field (pRF, Dumoulin & Wandell 2008) -- a 2-D Gaussian over the
  picture whose centre follows the voxel's place in the region (a
  retinotopic map: left hemisphere sees the right half of the picture) and
  whose size grows with eccentricity. Its response is the pRF-weighted sum
  of the picture's contrast against the grey blank, in a luminance and two
  colour-opponent channels.
* **HV** (higher visual, ventral): each voxel is tuned to the picture's
  content -- a weighted sum of the one-hot attribute code of the caption
  (shape, colour, texture, size, position, background) -- plus a general
  visual response to any picture.

Responses are amplitudes relative to the blank screen; the BOLD time course
is their sum of HRF-convolved stimulus boxes (``rt_recon.hrf``), plus AR(1)
noise with some spatial smoothness, thermal noise, slow drift and occasional
spikes, expressed as percent signal change over a baseline intensity map;
finally each volume is moved by the head's rigid motion at that TR (a slow
random walk with occasional jerks) and resampled, as a scanner would see it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import affine_transform, gaussian_filter

from rt_recon import hrf
from rt_recon.simulators.world import BLANK_ID, StimulusWorld

_PRF_RESOLUTION = 32  # pRFs are evaluated on a 32x32 grid over the picture
_REFERENCE_STIMULI = 400  # stimuli used to normalise each voxel's response


@dataclass(frozen=True)
class NoiseModel:
    """Noise, drift and artefacts of the simulated acquisition.

    ``snr`` is the ratio of the stimulus-driven BOLD standard deviation (the
    noise-free time course of an ROI voxel, median over voxels) to the
    standard deviation of its noise. The noise is part physiological (AR(1)
    in time, spatially smooth) and part thermal (white), ``thermal_fraction``
    of its variance being thermal.
    """

    snr: float = 1.0
    ar1: float = 0.4  # lag-1 autocorrelation of the physiological noise
    smooth_voxels: float = 0.8  # spatial Gaussian sigma of the physiological noise, in voxels
    thermal_fraction: float = 0.5
    drift_psc: float = 0.3  # amplitude of slow drift, percent signal change
    spike_rate: float = 0.003  # chance per TR of a spike volume
    spike_psc: float = 4.0  # spike amplitude, percent signal change
    unit_psc: float = 1.0  # percent signal change per unit of neural response
    motion_drift_mm: float = 0.03  # random-walk step of each translation per TR, mm
    motion_drift_rad: float = 0.0003  # random-walk step of each rotation per TR, radians
    motion_jerk_rate: float = 0.01  # chance per TR of a sudden head movement
    motion_jerk_mm: float = 0.4  # size of a sudden movement (translation), mm

    @classmethod
    def from_simulation(cls, snr: float, motion: float) -> NoiseModel:
        """The default noise at ``snr``, with every motion amplitude scaled by ``motion``."""
        base = cls(snr=snr)
        return cls(
            snr=snr,
            motion_drift_mm=base.motion_drift_mm * motion,
            motion_drift_rad=base.motion_drift_rad * motion,
            motion_jerk_rate=base.motion_jerk_rate if motion > 0 else 0.0,
            motion_jerk_mm=base.motion_jerk_mm * motion,
        )


class SyntheticBrain:
    """Geometry, receptive fields and tuning of one synthetic subject."""

    def __init__(
        self,
        world: StimulusWorld,
        grid: tuple[int, int, int] = (32, 38, 24),
        voxel_size_mm: float = 3.0,
        seed: int = 0,
    ):
        self.world = world
        self.grid = tuple(int(g) for g in grid)
        self.voxel_size_mm = float(voxel_size_mm)
        rng = np.random.default_rng([seed, 1])
        self.affine = self._make_affine()
        self.brain_mask, self.roi_masks = self._make_masks()
        self.baseline = self._make_baseline(rng)
        self.ev_index = _flat_indices(self.roi_masks["ev"])
        ev_coords = np.column_stack(np.unravel_index(self.ev_index, self.grid, order="F"))
        self.hv_index = _flat_indices(self.roi_masks["hv"])
        self.prf_centres, self.prf_sizes, self.prf_channel_weights = self._make_prfs(ev_coords, rng)
        n_features = world.semantic_features([BLANK_ID]).shape[1]
        self.hv_tuning = rng.normal(0.0, 1.0, size=(n_features, self.hv_index.size))
        self.hv_tuning *= rng.random(size=self.hv_tuning.shape) < 0.35  # sparse selectivity
        self.hv_general = np.abs(rng.normal(0.6, 0.2, size=self.hv_index.size))
        self._ev_norm, self._hv_norm = self._normalisers(rng)

    # ----------------------------------------------------------------- geometry

    def _make_affine(self) -> np.ndarray:
        """RAS+ affine with the grid centred on the origin."""
        affine = np.diag([self.voxel_size_mm] * 3 + [1.0])
        affine[:3, 3] = -self.voxel_size_mm * (np.array(self.grid) - 1) / 2.0
        return affine

    def _make_masks(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return roi_geometry(self.grid)

    def _make_baseline(self, rng: np.random.Generator) -> np.ndarray:
        tissue = gaussian_filter(rng.normal(0, 1, self.grid), 2.0)
        tissue = 800.0 + 150.0 * tissue / (tissue.std() + 1e-9)
        # Partial volume: a 3 mm voxel at the edge holds part brain, part air.
        return gaussian_filter(np.where(self.brain_mask, tissue, 30.0), 1.0).astype(np.float64)

    def _make_prfs(
        self, coords: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """pRF centres ``(n_ev, 2)`` in picture coordinates [0, 1], sizes, channel weights."""
        nx = self.grid[0]
        lo, hi = coords.min(axis=0), coords.max(axis=0)
        span = np.maximum(hi - lo, 1)
        # x: right hemisphere (large x) sees the left of the picture; z: up is top.
        hemi_right = coords[:, 0] >= nx / 2
        half_x = np.where(
            hemi_right,
            (coords[:, 0] - nx / 2) / max(hi[0] - nx / 2, 1),
            (nx / 2 - 1 - coords[:, 0]) / max(nx / 2 - 1 - lo[0], 1),
        )
        px = np.where(hemi_right, 0.5 - 0.5 * half_x, 0.5 + 0.5 * half_x)
        py = 1.0 - (coords[:, 2] - lo[2]) / span[2]
        # depth along y shifts eccentricity a little so neighbouring slices differ
        depth = (coords[:, 1] - lo[1]) / span[1]
        centres = np.stack([px, py], axis=1) + rng.normal(0, 0.04, size=(len(coords), 2))
        centres = np.clip(centres + 0.05 * (depth[:, None] - 0.5), 0.02, 0.98)
        eccentricity = np.linalg.norm(centres - 0.5, axis=1)
        sizes = 0.035 + 0.12 * eccentricity + rng.uniform(0, 0.02, size=len(coords))
        weights = np.column_stack(
            [np.ones(len(coords)), rng.normal(0, 0.6, len(coords)), rng.normal(0, 0.6, len(coords))]
        )
        return centres, sizes, weights

    # ------------------------------------------------------------------ responses

    def _prf_matrix(self, size_scale: float = 1.0) -> np.ndarray:
        """``(P*P, n_ev)`` pRF weights over the downsampled picture (columns sum to 1);
        ``size_scale`` widens every pRF (imagery pools more broadly)."""
        grid = (np.arange(_PRF_RESOLUTION) + 0.5) / _PRF_RESOLUTION
        gx, gy = np.meshgrid(grid, grid, indexing="xy")  # image rows are y, columns x
        d2 = (gx.reshape(-1, 1) - self.prf_centres[:, 0]) ** 2 + (
            gy.reshape(-1, 1) - self.prf_centres[:, 1]
        ) ** 2
        g = np.exp(-d2 / (2 * (self.prf_sizes * size_scale) ** 2))
        return g / g.sum(axis=0, keepdims=True)

    def _raw_ev(self, images: np.ndarray) -> np.ndarray:
        """Unnormalised EV responses, ``(n, n_ev)``, to ``(n, H, W, 3)`` uint8 pictures."""
        from PIL import Image

        small = (
            np.stack(
                [
                    np.asarray(
                        Image.fromarray(im).resize(
                            (_PRF_RESOLUTION, _PRF_RESOLUTION), Image.Resampling.BOX
                        ),
                        dtype=np.float64,
                    )
                    for im in images
                ]
            )
            / 255.0
            - 0.5
        )
        r, g, b = small[..., 0], small[..., 1], small[..., 2]
        channels = [(r + g + b) / 3, r - g, b - (r + g) / 2]
        prf = self._prf_matrix()
        n = len(images)
        out = np.zeros((n, prf.shape[1]))
        for c, channel in enumerate(channels):
            out += (channel.reshape(n, -1) @ prf) * self.prf_channel_weights[:, c]
        return out

    def _raw_hv(self, stimulus_ids: np.ndarray) -> np.ndarray:
        features = self.world.semantic_features(stimulus_ids).astype(np.float64)
        is_picture = (np.asarray(stimulus_ids) != BLANK_ID)[:, None]
        return features @ self.hv_tuning + is_picture * self.hv_general * 2.0

    def _normalisers(self, rng: np.random.Generator) -> tuple[tuple, tuple]:
        ref = rng.choice(self.world.n_stimuli, size=_REFERENCE_STIMULI, replace=False)
        blank = np.array([BLANK_ID])
        ev_blank = self._raw_ev(self.world.images(blank))[0]
        hv_blank = self._raw_hv(blank)[0]
        ev_std = (self._raw_ev(self.world.images(ref)) - ev_blank).std(axis=0) + 1e-9
        hv_std = (self._raw_hv(ref) - hv_blank).std(axis=0) + 1e-9
        return (ev_blank, ev_std), (hv_blank, hv_std)

    def responses(self, stimulus_ids: np.ndarray) -> dict[str, np.ndarray]:
        """Neural amplitudes relative to the blank, ``{"ev": (n, n_ev), "hv": (n, n_hv)}``.

        Each voxel's responses have unit standard deviation over the world.
        """
        ids = np.asarray(stimulus_ids)
        ev_blank, ev_std = self._ev_norm
        hv_blank, hv_std = self._hv_norm
        return {
            "ev": (self._raw_ev(self.world.images(ids)) - ev_blank) / ev_std,
            "hv": (self._raw_hv(ids) - hv_blank) / hv_std,
        }

    # ------------------------------------------------------------------- time series

    def simulate_run(
        self,
        stimulus_ids: np.ndarray,
        onsets: np.ndarray,
        durations: np.ndarray,
        tr_s: float,
        n_trs: int,
        noise: NoiseModel,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One run of BOLD volumes, ``(x, y, z, n_trs)`` int16, and its ground truth.

        Returns:
            ``(bold, truth)``; ``truth`` holds the noise-free signal of each ROI
            (``signal_ev``, ``signal_hv``: ``(n_trs, n_roi)``, units of neural
            response), the noise std used, and the TRs that got a spike.
        """
        design = hrf.regressors(onsets, durations, tr_s, n_trs)  # (n_trs, n_events)
        amplitudes = self.responses(stimulus_ids)
        n_brain_flat = int(np.prod(self.grid))
        signal = np.zeros((n_trs, n_brain_flat))
        truth: dict[str, np.ndarray] = {}
        for roi, index in (("ev", self.ev_index), ("hv", self.hv_index)):
            roi_signal = design @ amplitudes[roi]
            signal[:, index] = roi_signal
            truth[f"signal_{roi}"] = roi_signal.astype(np.float32)
        roi_index = np.concatenate([self.ev_index, self.hv_index])
        signal_std = float(np.median(signal[:, roi_index].std(axis=0)))
        noise_std = signal_std / noise.snr
        f = noise.thermal_fraction
        noise_series = noise_std * (
            np.sqrt(1 - f) * self._ar1_noise(n_trs, noise, rng)
            + np.sqrt(f) * rng.normal(0, 1, size=(n_trs, n_brain_flat))
        )
        drift = self._drift(n_trs, rng) * (noise.drift_psc / noise.unit_psc)
        spikes = np.flatnonzero(rng.random(n_trs) < noise.spike_rate)
        psc = noise.unit_psc * (signal + noise_series + drift)
        psc[spikes] += noise.spike_psc * rng.choice([-1.0, 1.0], size=(len(spikes), 1))
        baseline = np.ravel(self.baseline, order="F")
        inside = np.ravel(self.brain_mask, order="F")
        volumes = np.where(
            inside,
            baseline * (1.0 + psc / 100.0),
            baseline + rng.normal(0, 5.0, size=(n_trs, n_brain_flat)),  # air: small noise
        )
        volumes = volumes.T.reshape(*self.grid, n_trs, order="F")
        motion = self._motion_trace(n_trs, noise, rng)
        moved = self._apply_motion(volumes, motion)
        bold = np.clip(np.rint(moved), -32768, 32767).astype(np.int16)
        truth["noise_std"] = np.array([noise_std], dtype=np.float32)
        truth["spike_trs"] = spikes.astype(np.int32)
        truth["motion"] = motion.astype(np.float32)
        return bold, truth

    @staticmethod
    def _motion_trace(n_trs: int, noise: NoiseModel, rng: np.random.Generator) -> np.ndarray:
        """``(n_trs, 6)`` head pose per TR: x, y, z (mm), rotations about x, y, z (rad)."""
        steps = np.zeros((n_trs, 6))
        steps[1:, :3] = rng.normal(0, noise.motion_drift_mm, size=(n_trs - 1, 3))
        steps[1:, 3:] = rng.normal(0, noise.motion_drift_rad, size=(n_trs - 1, 3))
        jerks = np.flatnonzero(rng.random(n_trs) < noise.motion_jerk_rate)
        steps[jerks, :3] += rng.normal(0, noise.motion_jerk_mm, size=(len(jerks), 3))
        steps[jerks, 3:] += rng.normal(0, noise.motion_jerk_mm / 50.0, size=(len(jerks), 3))
        return np.cumsum(steps, axis=0)

    def _apply_motion(self, volumes: np.ndarray, motion: np.ndarray) -> np.ndarray:
        """Resample each ``(x, y, z)`` volume of ``(x, y, z, t)`` as seen after the head moved.

        The head point ``p`` moves to ``M p``, so the scanner sees at world
        position ``q`` the value the still head had at ``M^-1 q``.
        """
        out = np.empty_like(volumes)
        to_world, to_voxel = self.affine, np.linalg.inv(self.affine)
        for t in range(volumes.shape[3]):
            sample = to_voxel @ np.linalg.inv(rigid_matrix(motion[t])) @ to_world
            out[..., t] = affine_transform(
                volumes[..., t], sample[:3, :3], offset=sample[:3, 3], order=1, mode="nearest"
            )
        return out

    def _ar1_noise(self, n_trs: int, noise: NoiseModel, rng: np.random.Generator) -> np.ndarray:
        """``(n_trs, n_voxels)`` unit-variance AR(1) noise, spatially smoothed."""
        flat = int(np.prod(self.grid))
        innovations = rng.normal(0, 1, size=(n_trs, *self.grid))
        if noise.smooth_voxels > 0:
            innovations = gaussian_filter(innovations, sigma=(0, *(noise.smooth_voxels,) * 3))
        # (t, x, y, z) -> (t, z, y, x) flattened in C order = Fortran order over (x, y, z)
        innovations = innovations.transpose(0, 3, 2, 1).reshape(n_trs, -1)
        innovations /= innovations.std() + 1e-12
        out = np.empty((n_trs, flat))
        out[0] = innovations[0]
        scale = np.sqrt(1 - noise.ar1**2)
        for t in range(1, n_trs):
            out[t] = noise.ar1 * out[t - 1] + scale * innovations[t]
        return out

    def _drift(self, n_trs: int, rng: np.random.Generator) -> np.ndarray:
        """``(n_trs, n_voxels)`` slow drift: a linear trend and two slow cosines per voxel."""
        t = np.linspace(0, 1, n_trs)[:, None]
        basis = np.hstack([t - 0.5, np.cos(np.pi * t), np.cos(2 * np.pi * t)])
        coefs = rng.normal(0, 1, size=(3, int(np.prod(self.grid))))
        return basis @ coefs / np.sqrt(3)


def roi_geometry(grid: tuple[int, int, int]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The ``(x, y, z)`` boolean brain mask and the oracle ROIs ``{"ev", "hv"}`` on ``grid``."""
    nx, ny, nz = grid
    x, y, z = np.meshgrid(
        np.linspace(-1, 1, nx), np.linspace(-1, 1, ny), np.linspace(-1, 1, nz), indexing="ij"
    )
    brain = (x / 0.9) ** 2 + (y / 0.95) ** 2 + (z / 0.9) ** 2 <= 1.0
    # y is the anterior axis: the occipital pole is at small y.
    ev = brain & (y < -0.55) & (z < 0.45) & (z > -0.75)
    hv = brain & (y >= -0.55) & (y < -0.05) & (z < -0.15) & (np.abs(x) > 0.2)
    return brain, {"ev": ev, "hv": hv}


def rigid_matrix(params: np.ndarray) -> np.ndarray:
    """4x4 world transform for ``(tx, ty, tz, rx, ry, rz)`` (mm, rad): ``T @ Rx @ Ry @ Rz``."""
    tx, ty, tz, rx, ry, rz = params
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    rot_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rot_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rot_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    out = np.eye(4)
    out[:3, :3] = rot_x @ rot_y @ rot_z
    out[:3, 3] = (tx, ty, tz)
    return out


def _flat_indices(mask: np.ndarray) -> np.ndarray:
    """Indices of a mask's voxels in the Fortran-order flattened volume (the stream order)."""
    return np.flatnonzero(np.ravel(mask, order="F"))
