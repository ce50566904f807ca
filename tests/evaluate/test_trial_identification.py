"""Per-trial identification (rt_recon.evaluate.semantic.trial_identification): its mean is the
aggregate figure, and a trial paired with the wrong picture scores below one paired right."""

from __future__ import annotations

import numpy as np
import pytest

from rt_recon.errors import ShapeMismatchError
from rt_recon.evaluate.semantic import score_set, trial_identification
from rt_recon.simulators.world import StimulusWorld


def test_per_trial_identification_averages_to_the_aggregate_figure():
    world = StimulusWorld(seed=0)
    ids = world.holdout_ids()[:24]
    truths = world.images(ids)
    rng = np.random.default_rng(0)
    recons = truths.copy()
    swapped = np.arange(12)  # the first half reconstructed as another trial's picture
    recons[swapped] = truths[(swapped + 5) % 12]
    noisy = np.clip(recons + rng.normal(0, 30, recons.shape), 0, 255).astype(np.uint8)
    per_trial = trial_identification(noisy, truths)
    assert per_trial.shape == (24,) and np.all((per_trial >= 0) & (per_trial <= 1))
    assert float(per_trial.mean()) == pytest.approx(score_set(noisy, truths).identification)
    assert per_trial[12:].mean() > per_trial[:12].mean() + 0.2
    with pytest.raises(ShapeMismatchError, match="one per true picture"):
        trial_identification(noisy[:3], truths)
