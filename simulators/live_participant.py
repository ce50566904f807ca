"""The synthetic participant in the scanner, one volume at a time: pictures in, volumes out.

:func:`~rt_recon.simulators.session.generate_session` writes whole runs whose
design it knows in advance. At a rehearsal the design is whatever the presenter
actually showed, learnt picture by picture from its markers while the run goes
on; :class:`LiveParticipant` is that run's brain, with no I/O:

* :meth:`LiveParticipant.show` tells it a picture was put on screen
  (``onset_s`` seconds after the acquisition start of volume 0);
* :meth:`LiveParticipant.volume` gives volume ``t`` (acquired at
  ``t * tr_s``), ``(x, y, z)`` int16 as the scanner would export it.

The brain is the session's own (:func:`~rt_recon.simulators.session.build_brain`:
the ``easy`` :class:`~rt_recon.simulators.brain.SyntheticBrain` or the
``realistic`` :class:`~rt_recon.simulators.realistic_brain.RealisticBrain`),
with its responses, voxel-wise HRFs, trial gains, noise, drift, spikes and
head motion; only the order of the random draws differs from the offline
generator's (so a live run is not a copy of an offline one).

Causal: a picture changes a volume only through the HRF, which is zero before
the picture's onset, so volume ``t`` depends only on pictures shown before
``t * tr_s`` (a picture reported after volume ``t`` was made still shapes the
volumes after it). Reproducible: the noise, drift, spikes and motion of the
whole run are drawn when the run begins, from ``(seed, run)`` only; each
picture's trial gain (realistic) is drawn in the order the pictures are
shown; so the same seed, run and pictures at the same times give the same
volumes, bit for bit.

The noise level is fixed before the run begins (the pictures to come are not
known): ``simulation.snr`` is the signal-to-noise a run of the session's own
schedule (``stimulus_trs``, ``trials_per_run``, lead-in and lead-out) would
have offline, so a live run has the noise std the offline sessions of the same
config have, whatever design the presenter plays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from rt_recon import hrf
from rt_recon.config import SimulationSection
from rt_recon.errors import DataError
from rt_recon.simulators.brain import NoiseModel, SyntheticBrain
from rt_recon.simulators.hrf_variation import voxelwise_signal
from rt_recon.simulators.realistic_brain import ROIS, RealisticBrain, ScanDay

log = logging.getLogger(__name__)

#: The random streams of a live run: ``default_rng([seed, _LIVE, run, k])``.
_LIVE = 11


@dataclass(frozen=True)
class ShownPicture:
    """One picture the participant saw: ``onset_s`` seconds after volume 0's acquisition
    start, on screen for ``duration_s`` seconds; ``imagined``: cued and imagined for that
    long instead (an ``imagery`` trial), never on screen."""

    stimulus_id: int
    onset_s: float
    duration_s: float
    imagined: bool = False


def _roi_index(brain: SyntheticBrain) -> dict[str, np.ndarray]:
    return {"ev": brain.ev_index, "hv": brain.hv_index}


def _event_signal(
    brain: SyntheticBrain,
    picture: ShownPicture,
    tr_s: float,
    n_trs: int,
    gains: dict[str, np.ndarray] | None,
) -> dict[str, np.ndarray]:
    """``{roi: (n_trs, n_roi)}`` noise-free response to one picture, sampled at ``t * tr_s``.

    The brain's own amplitudes (:meth:`~SyntheticBrain.responses`; an imagined picture:
    :meth:`~RealisticBrain.imagery_responses`); the canonical HRF for the easy brain, each
    voxel's own HRF and the trial's ``gains`` for the realistic one.
    """
    ids = np.array([picture.stimulus_id])
    if picture.imagined:
        if not isinstance(brain, RealisticBrain):
            raise DataError(
                f"an imagery trial (stimulus {picture.stimulus_id}) for the easy participant, "
                "which cannot imagine: simulate the realistic participant "
                "(simulation.participant: realistic) for imagery runs"
            )
        amplitudes = brain.imagery_responses(ids)
    else:
        amplitudes = brain.responses(ids)
    onsets, durations = np.array([picture.onset_s]), np.array([picture.duration_s])
    if not isinstance(brain, RealisticBrain):
        design = hrf.regressors(onsets, durations, tr_s, n_trs)  # (n_trs, 1)
        return {roi: design @ amplitudes[roi] for roi in ROIS}
    assert gains is not None
    return {
        roi: voxelwise_signal(
            onsets,
            durations,
            tr_s,
            n_trs,
            amplitudes[roi] * gains[roi],
            brain.hrf_shifts[roi],
            brain.params.hrf.bin_s,
        )
        for roi in ROIS
    }


def reference_noise_std(brain: SyntheticBrain, sim: SimulationSection) -> float:
    """The noise std (units of neural response) at ``sim.snr`` for a run of ``sim``'s schedule.

    As the offline generator measures it on its run: the median over ROI voxels
    (realistic: responsive ones) of the noise-free signal's std, over ``sim.snr``; the
    pictures are drawn from the world's training pictures with a generator of ``sim.seed``.
    """
    from rt_recon.simulators.session import run_schedule

    rng = np.random.default_rng([sim.seed, _LIVE, 0])
    ids = rng.choice(brain.world.training_ids(), size=sim.trials_per_run, replace=False)
    onsets, durations, n_trs = run_schedule(sim, len(ids))
    realistic = isinstance(brain, RealisticBrain)
    index = _roi_index(brain)
    signal = {roi: np.zeros((n_trs, index[roi].size)) for roi in ROIS}
    for sid, onset, duration in zip(ids, onsets, durations, strict=True):
        gains = brain.trial_gains(1, rng) if realistic else None
        picture = ShownPicture(int(sid), float(onset), float(duration))
        for roi, course in _event_signal(brain, picture, sim.tr_s, n_trs, gains).items():
            signal[roi] += course
    stds = []
    for roi in ROIS:
        std = signal[roi].std(axis=0)
        stds.append(std[brain.responsive[roi]] if realistic else std)
    return float(np.median(np.concatenate(stds))) / sim.snr


class LiveParticipant:
    """One run of a synthetic participant, made volume by volume as pictures are shown.

    Args:
        brain: the participant (:func:`~rt_recon.simulators.session.build_brain`).
        noise: noise, drift, spikes and motion (:meth:`NoiseModel.from_simulation`).
        noise_std: noise std in units of neural response (:func:`reference_noise_std`).
        tr_s: repetition time, seconds.
        n_trs: volumes in the run (the noise is drawn for all of them at the start).
        seed: the participant's seed; ``run``: which run of the visit (the series
            number): each run has its own noise.
        day: the realistic participant's scanning session (default: session 1).
    """

    def __init__(
        self,
        brain: SyntheticBrain,
        noise: NoiseModel,
        noise_std: float,
        *,
        tr_s: float,
        n_trs: int,
        seed: int,
        run: int = 1,
        day: ScanDay | None = None,
    ):
        if n_trs < 1 or tr_s <= 0:
            raise ValueError(f"expected n_trs >= 1 and tr_s > 0, found {n_trs} and {tr_s}")
        self.brain = brain
        self.tr_s = float(tr_s)
        self.n_trs = int(n_trs)
        self.realistic = isinstance(brain, RealisticBrain)
        if self.realistic:
            assert isinstance(brain, RealisticBrain)
            day = day or brain.scan_day(1)
            noise_std *= day.noise_scale
        elif day is not None:
            raise ValueError("only the realistic participant has scanning days")
        self.day = day
        self.noise_std = float(noise_std)
        self.noise = noise
        self.shown: list[ShownPicture] = []
        self._index = _roi_index(brain)
        self._signal = {roi: np.zeros((self.n_trs, i.size)) for roi, i in self._index.items()}
        self._gain_rng = np.random.default_rng([seed, _LIVE, run, 1])
        self._draw_noise(np.random.default_rng([seed, _LIVE, run, 0]))

    def _draw_noise(self, rng: np.random.Generator) -> None:
        """Every random draw of the run that does not depend on the pictures, at once."""
        brain, noise, n_trs = self.brain, self.noise, self.n_trs
        n_flat = int(np.prod(brain.grid))
        f = noise.thermal_fraction
        independent = np.sqrt(1 - f) * brain._ar1_noise(n_trs, noise, rng) + np.sqrt(
            f
        ) * rng.normal(0, 1, size=(n_trs, n_flat))
        if self.realistic:
            assert isinstance(brain, RealisticBrain)
            shared_params = brain.params.shared_noise
            shared = brain.shared.series(n_trs, self.tr_s, shared_params.slow_cutoff_hz, rng)
            g = shared_params.fraction
            independent = np.sqrt(1 - g) * independent + np.sqrt(g) * shared
        drift = brain._drift(n_trs, rng) * (noise.drift_psc / noise.unit_psc)
        psc = noise.unit_psc * (self.noise_std * independent + drift)
        self.spike_trs = np.flatnonzero(rng.random(n_trs) < noise.spike_rate)
        psc[self.spike_trs] += noise.spike_psc * rng.choice(
            [-1.0, 1.0], size=(len(self.spike_trs), 1)
        )
        self._noise_psc = psc.astype(np.float32)
        self._air = rng.normal(0, 5.0, size=(n_trs, n_flat)).astype(np.float32)
        self.motion = brain._motion_trace(n_trs, noise, rng)
        baseline = np.ravel(brain.baseline, order="F")
        self._baseline = baseline * self.day.bias if self.day is not None else baseline
        self._inside = np.ravel(brain.brain_mask, order="F")

    def show(
        self, stimulus_id: int, onset_s: float, duration_s: float, *, imagined: bool = False
    ) -> ShownPicture:
        """The participant sees picture ``stimulus_id`` from ``onset_s`` (seconds after volume
        0's acquisition start) for ``duration_s`` seconds; ``imagined``: imagines it, cued,
        for that long instead (the realistic participant's imagery responses).

        Raises:
            DataError: the picture is not one of the synthetic world's, or an imagined
                picture for the easy participant.
        """
        n = self.brain.world.n_stimuli
        if not 0 <= int(stimulus_id) < n:
            raise DataError(
                f"stimulus_id {stimulus_id} is no picture of the synthetic world (ids 0 to "
                f"{n - 1}): present a stimulus set of the session's world (the stimuli/ "
                "folder of `rt-recon simulate session` with the same config)"
            )
        if duration_s < 0:
            raise DataError(f"stimulus {stimulus_id}: expected a duration >= 0, found {duration_s}")
        picture = ShownPicture(int(stimulus_id), float(onset_s), float(duration_s), imagined)
        gains = self.brain.trial_gains(1, self._gain_rng) if self.realistic else None
        for roi, course in _event_signal(self.brain, picture, self.tr_s, self.n_trs, gains).items():
            self._signal[roi] += course
        self.shown.append(picture)
        return picture

    def signal(self, t: int) -> dict[str, np.ndarray]:
        """``{roi: (n_roi,)}`` noise-free response at volume ``t`` (units of neural response)."""
        return {roi: s[t].copy() for roi, s in self._signal.items()}

    def volume(self, t: int) -> np.ndarray:
        """Volume ``t`` (acquired at ``t * tr_s``), ``(x, y, z)`` int16, as the scanner sees it."""
        if not 0 <= t < self.n_trs:
            raise IndexError(f"volume {t} is outside the run's {self.n_trs} volumes")
        brain = self.brain
        signal = np.zeros(self._baseline.size)
        for roi, index in self._index.items():
            signal[index] = self._signal[roi][t]
        psc = self.noise.unit_psc * signal + self._noise_psc[t]
        flat = np.where(
            self._inside,
            self._baseline * (1.0 + psc / 100.0),
            self._baseline + self._air[t],
        )
        volume = flat.reshape(*brain.grid, 1, order="F")
        if self.day is not None:
            assert isinstance(brain, RealisticBrain)
            moved = brain._apply_pose(volume, self.motion[t : t + 1], self.day.head_offset)
        else:
            moved = brain._apply_motion(volume, self.motion[t : t + 1])
        return np.clip(np.rint(moved[..., 0]), -32768, 32767).astype(np.int16)
