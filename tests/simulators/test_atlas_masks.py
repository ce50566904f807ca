"""Atlas-like decoder masks differ from the oracle ROIs by the documented amount."""

from __future__ import annotations

import numpy as np
import pytest

from rt_recon.config import SimulationSection
from rt_recon.simulators.atlas_masks import atlas_like, mask_disagreement
from rt_recon.simulators.brain import roi_geometry
from rt_recon.simulators.participant import AtlasMasks


def test_masks_on_the_default_grid_put_about_a_fifth_of_their_voxels_outside_the_roi():
    brain, rois = roi_geometry(SimulationSection().grid)
    params = AtlasMasks()
    outside, missed = [], []
    for seed in range(3):
        for roi in ("ev", "hv"):
            mask, offset = atlas_like(rois[roi], brain, params, np.random.default_rng(seed))
            assert np.linalg.norm(offset) == pytest.approx(params.shift_voxels)
            assert not (mask & ~brain).any()
            errors = mask_disagreement(mask, rois[roi])
            outside.append(errors["outside"])
            missed.append(errors["missed"])
    # docs/simulation.md: about 20-25% outside, about 25% of the ROI missed
    assert 0.12 < np.mean(outside) < 0.35
    assert 0.12 < np.mean(missed) < 0.35
    assert min(outside) > 0.05 and min(missed) > 0.05  # never the oracle


def test_disagreement_measures_outside_missed_and_dice():
    oracle = np.zeros((4, 4, 4), dtype=bool)
    oracle[:2] = True  # 32 voxels
    mask = np.zeros_like(oracle)
    mask[1:3] = True  # 16 shared, 16 outside
    errors = mask_disagreement(mask, oracle)
    assert errors == pytest.approx({"outside": 0.5, "missed": 0.5, "dice": 0.5})


def test_an_oracle_on_another_grid_is_refused():
    with pytest.raises(ValueError, match="share a shape"):
        atlas_like(
            np.ones((4, 4, 4), bool), np.ones((5, 4, 4), bool), AtlasMasks(),
            np.random.default_rng(0),
        )  # fmt: skip
