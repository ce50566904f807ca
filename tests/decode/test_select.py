"""Voxel selection keeps the voxels that encode the targets over those that are noise."""

import numpy as np
import pytest

from rt_recon.decode.select import encoding_r2, select_voxels, top_fraction
from rt_recon.errors import DataError


def _trials(rng, n_runs=4, per_run=40, n_informative=30, n_noise=90, n_targets=8):
    targets = rng.normal(size=(n_runs * per_run, n_targets))
    encoding = rng.normal(size=(n_targets, n_informative))
    informative = targets @ encoding / np.sqrt(n_targets) + rng.normal(
        size=(len(targets), n_informative)
    )
    noise = rng.normal(size=(len(targets), n_noise))
    order = rng.permutation(n_informative + n_noise)  # informative voxels scattered
    features = np.hstack([informative, noise])[:, order]
    is_informative = order < n_informative
    groups = np.repeat(np.arange(n_runs), per_run)
    return features, targets, groups, is_informative


def test_encoding_r2_ranks_informative_voxels_first_and_selection_keeps_them():
    rng = np.random.default_rng(0)
    features, targets, groups, informative = _trials(rng)
    r2 = encoding_r2(features, targets, groups, np.array([1.0, 10.0, 100.0, 1000.0]))
    assert r2[informative].min() > r2[~informative].max()
    assert np.median(r2[~informative]) < 0.01 < 0.2 < np.median(r2[informative])
    keep, report = select_voxels(r2, 0.25, lambda k: 0.0, ())
    assert len(keep) == 30 and informative[keep].all()
    assert report["kept"] == 30 and report["fraction"] == 0.25


def test_auto_takes_the_fraction_the_score_prefers():
    r2 = np.linspace(0.0, 1.0, 20)
    seen = []

    def score(keep):
        seen.append(len(keep))
        return -abs(len(keep) - 10)  # best with 10 voxels

    keep, report = select_voxels(r2, "auto", score, (0.25, 0.5, 1.0))
    assert seen == [5, 10, 20] and report["fraction"] == 0.5
    np.testing.assert_array_equal(keep, np.arange(10, 20))  # the 10 of highest R^2


def test_top_fraction_keeps_at_least_one_and_refuses_bad_fractions():
    assert top_fraction(np.array([0.1, 0.3, 0.2]), 0.01).tolist() == [1]
    with pytest.raises(DataError, match=r"in \(0, 1\]"):
        top_fraction(np.zeros(3), 1.5)
