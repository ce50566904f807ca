"""Split-half reliability of single-trial voxel responses in the synthetic brain.

Two runs show the same pictures in two different orders. A voxel's
single-trial response is estimated exactly as the decoders see it: the
decoder's preprocessing (realignment, despiking, detrending, running
z-score), then the HRF-window sum at the TR ``lag`` TRs after onset
(:func:`rt_recon.decode.fit.feature_series`). A voxel's split-half
reliability is the Pearson correlation, across pictures, between its
responses in the two runs. Real single-trial fMRI is noisy: NSD's
single-trial betas have a median reliability well below 0.5 even in early
visual cortex, and rt_recon's default noise is set so the median over ROI
voxels is at most 0.3.
"""

from __future__ import annotations

import numpy as np

from rt_recon.config import FitSection, SimulationSection
from rt_recon.decode.fit import feature_series
from rt_recon.hrf import matched_window
from rt_recon.preprocess import PreprocessSpec
from rt_recon.protocol import trial_samples
from rt_recon.simulators.brain import NoiseModel, SyntheticBrain
from rt_recon.simulators.session import run_schedule
from rt_recon.simulators.world import StimulusWorld


def split_half_reliability(
    sim: SimulationSection, fit: FitSection | None = None, n_pictures: int = 36, seed: int = 99
) -> dict[str, np.ndarray]:
    """Per-voxel reliability ``{"ev": (n_ev,), "hv": (n_hv,)}`` at ``sim.snr``."""
    fit = fit or FitSection()
    world = StimulusWorld(seed=sim.seed, image_size=sim.image_size)
    brain = SyntheticBrain(world, grid=sim.grid, voxel_size_mm=sim.voxel_size_mm, seed=sim.seed)
    rng = np.random.default_rng(seed)
    pictures = rng.choice(world.n_stimuli, size=n_pictures, replace=False)
    weights, lag = matched_window(sim.tr_s, sim.stimulus_trs * sim.tr_s, fit.hrf_window_trs)
    voxels = np.concatenate([brain.ev_index, brain.hv_index])
    halves = []
    reference = None
    spec = PreprocessSpec.from_fit(fit, brain.affine if fit.motion_correction else None, sim.tr_s)
    for _ in range(2):
        order = rng.permutation(pictures)
        onsets, durations, n_trs = run_schedule(sim, n_pictures)
        bold, _ = brain.simulate_run(
            order,
            onsets,
            durations,
            sim.tr_s,
            n_trs,
            NoiseModel.from_simulation(sim.snr, sim.motion),
            rng,
        )
        volumes = bold.transpose(3, 2, 1, 0).reshape(n_trs, -1).astype(np.float32)
        if reference is None and fit.motion_correction:
            reference = volumes[:5].mean(axis=0).reshape(brain.grid, order="F")
        features = feature_series(
            volumes, voxels, spec, weights, brain.grid, brain.affine, reference
        )
        events = [{"onset": o, "stimulus_id": int(s)} for o, s in zip(onsets, order, strict=True)]
        response = {sid: features[t] for t, sid in trial_samples(events, n_trs, sim.tr_s, lag)}
        halves.append(np.stack([response[int(p)] for p in pictures]))
    a, b = (h - h.mean(axis=0) for h in halves)
    r = (a * b).sum(axis=0) / np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    n_ev = len(brain.ev_index)
    return {"ev": r[:n_ev], "hv": r[n_ev:]}
