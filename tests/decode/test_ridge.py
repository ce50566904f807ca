"""Grouped ridge CV against a closed-form reference."""

import numpy as np
import pytest

from rt_recon.decode.ridge import r2_per_target, ridge_cv, ridge_cv_r2, ridge_cv_r2_designs
from rt_recon.errors import DataError


def _closed_form(x, y, alpha):
    xm, ym = x.mean(0), y.mean(0)
    w = np.linalg.solve((x - xm).T @ (x - xm) + alpha * np.eye(x.shape[1]), (x - xm).T @ (y - ym))
    return w, ym - xm @ w


def _loro_r2(x, y, groups, alpha):
    scores = []
    for g in np.unique(groups):
        tr, te = groups != g, groups == g
        w, b = _closed_form(x[tr], y[tr], alpha)
        scores.append(r2_per_target(y[te], x[te] @ w + b))
    return np.mean(scores, axis=0)


def test_matches_closed_form_cv_and_refit():
    rng = np.random.default_rng(0)
    n, p, t = 160, 60, 8
    x = rng.normal(size=(n, p))
    y = x @ rng.normal(size=(p, t)) * np.linspace(0.1, 2, t) + 3 * rng.normal(size=(n, t)) + 5
    groups = np.repeat(np.arange(4), 40)
    alphas = np.array([0.1, 10.0, 1000.0])
    fit = ridge_cv(x, y, groups, alphas)
    reference = np.array([_loro_r2(x, y, groups, a) for a in alphas])  # (n_alphas, t)
    np.testing.assert_allclose(fit.cv_r2, reference.max(axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(fit.alphas, alphas[reference.argmax(axis=0)].astype(np.float32))
    for j in range(t):
        w, b = _closed_form(x, y[:, [j]], float(fit.alphas[j]))
        np.testing.assert_allclose(fit.coef[:, j], w[:, 0], rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(fit.intercept[j], b[0], rtol=1e-4, atol=1e-4)
    assert fit.cv_r2.mean() > 0.3  # signal is there


def test_out_of_fold_prediction_spread_is_that_of_the_held_out_predictions():
    rng = np.random.default_rng(2)
    n, p, t = 120, 30, 4
    x = rng.normal(size=(n, p))
    y = x @ rng.normal(size=(p, t)) + 4 * rng.normal(size=(n, t))
    groups = np.repeat(np.arange(3), 40)
    alphas = np.array([1.0, 100.0, 10000.0])
    fit = ridge_cv(x, y, groups, alphas)
    for j in range(t):
        pred = np.zeros(n)
        for g in np.unique(groups):
            tr, te = groups != g, groups == g
            w, b = _closed_form(x[tr], y[tr][:, [j]], float(fit.alphas[j]))
            pred[te] = (x[te] @ w + b)[:, 0]
        np.testing.assert_allclose(fit.cv_prediction_std[j], pred.std(), rtol=1e-3)
    assert np.all(fit.cv_prediction_std < y.std(axis=0))  # ridge shrinks towards the mean


def test_alphas_and_weights_equal_himalayas_ridgecv():
    """The reference implementation Takagi & Nishimoto fit with (Dupré la Tour et al. 2022)."""
    himalaya = pytest.importorskip("himalaya.ridge")
    model_selection = pytest.importorskip("sklearn.model_selection")
    rng = np.random.default_rng(4)
    n, p, t = 150, 50, 12
    x = rng.normal(size=(n, p))
    y = x @ rng.normal(size=(p, t)) * np.linspace(0.05, 2, t) + 3 * rng.normal(size=(n, t)) - 2
    groups = np.repeat(np.arange(5), 30)
    alphas = np.array([0.1, 1.0, 10.0, 100.0, 1000.0])
    ours = ridge_cv(x, y, groups, alphas)
    splits = list(model_selection.LeaveOneGroupOut().split(x, y, groups))
    reference = himalaya.RidgeCV(alphas=alphas, fit_intercept=True, cv=splits).fit(x, y)
    assert len(set(ours.alphas.tolist())) > 1  # the per-target choice is exercised
    np.testing.assert_array_equal(ours.alphas, np.asarray(reference.best_alphas_, np.float32))
    np.testing.assert_allclose(ours.coef, reference.coef_, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours.intercept, reference.intercept_, rtol=1e-4, atol=1e-5)


def test_more_features_than_samples_takes_the_dual_and_matches_closed_form():
    """Voxels -> targets: the decomposition comes from the samples' Gram matrix."""
    rng = np.random.default_rng(1)
    n, p, t = 90, 400, 5
    x = rng.normal(size=(n, p)) + 2.0  # an offset the centring must remove
    y = x[:, :5] @ rng.normal(size=(5, t)) + 2 * rng.normal(size=(n, t)) - 1
    groups = np.repeat(np.arange(3), 30)
    alphas = np.array([1.0, 100.0, 1e4])
    fit = ridge_cv(x, y, groups, alphas)
    reference = np.array([_loro_r2(x, y, groups, a) for a in alphas])
    np.testing.assert_allclose(fit.cv_r2, reference.max(axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(fit.alphas, alphas[reference.argmax(axis=0)].astype(np.float32))
    for j in range(t):
        w, b = _closed_form(x, y[:, [j]], float(fit.alphas[j]))
        np.testing.assert_allclose(fit.coef[:, j], w[:, 0], rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(fit.intercept[j], b[0], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("shape", [(120, 6, 700), (120, 300, 7)], ids=["encoding", "decoding"])
def test_scores_alone_equal_the_full_fits_scores(shape):
    """ridge_cv_r2 (many targets, few features: the r x r expansion) gives ridge_cv's cv_r2."""
    n, p, t = shape
    rng = np.random.default_rng(5)
    x = rng.normal(size=(n, p))
    y = x[:, :3] @ rng.normal(size=(3, t)) + 3 * rng.normal(size=(n, t))
    groups = np.repeat(np.arange(4), n // 4)
    alphas = np.array([0.1, 10.0, 1000.0])
    scores = ridge_cv_r2(x, y, groups, alphas)
    np.testing.assert_allclose(scores, ridge_cv(x, y, groups, alphas).cv_r2, rtol=1e-5, atol=1e-6)
    reference = np.array([_loro_r2(x, y[:, :20], groups, a) for a in alphas]).max(axis=0)
    np.testing.assert_allclose(scores[:20], reference, rtol=1e-4, atol=1e-5)


def test_needs_two_groups_and_consistent_lengths():
    x, y = np.zeros((10, 3)), np.zeros((10, 2))
    with pytest.raises(DataError, match="at least 2 groups"):
        ridge_cv(x, y, np.zeros(10), np.array([1.0]))
    with pytest.raises(DataError, match="disagree on samples"):
        ridge_cv(x, y[:9], np.repeat([0, 1], 5), np.array([1.0]))


def test_r2_is_zero_for_constant_truth_and_one_for_perfect():
    y = np.column_stack([np.arange(5.0), np.full(5, 2.0)])
    np.testing.assert_allclose(r2_per_target(y, y), [1.0, 0.0])


def test_designs_scored_together_equal_each_scored_alone():
    """An HRF library's members share one fold's targets: scored together, each member's
    R^2 is the one it gets alone."""
    rng = np.random.default_rng(6)
    n, t = 120, 50
    y = rng.normal(size=(n, t))
    designs = [rng.normal(size=(n, 4)) + y[:, :4] * w for w in (0.0, 0.5, 2.0)]
    groups = np.repeat(np.arange(3), 40)
    alphas = np.array([1.0, 100.0])
    together = ridge_cv_r2_designs(designs, y, groups, alphas)
    alone = np.stack([ridge_cv_r2(x, y, groups, alphas) for x in designs])
    np.testing.assert_allclose(together, alone, rtol=1e-6, atol=1e-7)
    assert together[2, :4].mean() > together[0, :4].mean() + 0.3  # signal ranks the designs
