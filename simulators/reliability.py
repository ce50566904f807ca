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

The voxels are those of the masks the decoder fits on: the oracle ROIs for the
``easy`` participant, the atlas-like masks (some voxels outside the true ROI,
some non-responsive) for the ``realistic`` one; both halves come from the
first session. :func:`summarise` gives the median and spread reported in
docs/simulation.md.
"""

from __future__ import annotations

import numpy as np

from rt_recon.config import FitSection, SimulationSection
from rt_recon.decode.fit import feature_series
from rt_recon.hrf import matched_window
from rt_recon.preprocess import PreprocessSpec
from rt_recon.protocol import trial_samples
from rt_recon.simulators.brain import NoiseModel
from rt_recon.simulators.realistic_brain import RealisticBrain
from rt_recon.simulators.session import build_brain, run_schedule


def split_half_reliability(
    sim: SimulationSection, fit: FitSection | None = None, n_pictures: int = 36, seed: int = 99
) -> dict[str, np.ndarray]:
    """Per-voxel reliability ``{"ev": (n_ev,), "hv": (n_hv,)}`` at ``sim.snr``.

    Voxels of the decoder's masks for ``sim.participant`` (see the module docstring).
    """
    fit = fit or FitSection()
    brain = build_brain(sim)
    world = brain.world
    rng = np.random.default_rng(seed)
    pictures = rng.choice(world.n_stimuli, size=n_pictures, replace=False)
    weights, lag = matched_window(sim.tr_s, sim.stimulus_trs * sim.tr_s, fit.hrf_window_trs)
    if isinstance(brain, RealisticBrain):
        ev_index, hv_index = brain.decoder_index["ev"], brain.decoder_index["hv"]
    else:
        ev_index, hv_index = brain.ev_index, brain.hv_index
    voxels = np.union1d(ev_index, hv_index)  # atlas-like masks may overlap at their edges
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
    return {
        "ev": r[np.searchsorted(voxels, ev_index)],
        "hv": r[np.searchsorted(voxels, hv_index)],
    }


def summarise(reliability: np.ndarray) -> dict[str, float]:
    """Median, quartiles, 10th/90th percentiles and count of per-voxel reliabilities."""
    values = np.asarray(reliability, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("summarise needs at least one finite reliability, found none")
    q10, q25, q50, q75, q90 = np.percentile(values, [10, 25, 50, 75, 90])
    return {
        "median": float(q50),
        "q10": float(q10),
        "q25": float(q25),
        "q75": float(q75),
        "q90": float(q90),
        "n": int(values.size),
    }
