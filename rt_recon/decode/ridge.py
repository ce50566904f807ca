"""Ridge regression with a penalty chosen per target by grouped cross-validation.

For each fold the centred training features are decomposed once
(``X = U diag(s) V^T``); every penalty ``alpha`` then costs only a diagonal
rescaling, ``W(alpha) = V diag(s / (s^2 + alpha)) U^T Y``. Each target keeps
the penalty with the best mean R^2 over the held-out groups (runs), and the
final weights are refitted on all samples. Shapes follow himalaya's
conventions: ``X (n_samples, n_features)``, ``Y (n_samples, n_targets)``.

Two shapes matter, and each has its cheap road (the fit in a visit's break
runs both many times, docs/performance.md "Fit in the break"):

* more features than samples (voxels -> targets): the decomposition comes
  from the samples' Gram matrix ``X X^T``, computed once for all folds; each
  fold centres its block and takes its eigenvectors (``U``, ``s^2``), and a
  held-out sample enters only through its centred inner products with the
  training samples (the dual form of the same ridge; Hastie, Tibshirani &
  Friedman, *Elements of Statistical Learning*, 2nd ed., sec. 18.3.5);
* many targets and few features (targets' components -> every voxel, the
  encoding models): a held-out R^2 needs only each target's residual sum of
  squares, which expands into ``r x r`` products of the fold's projections,
  so no ``(n_test, n_targets)`` prediction is formed per penalty.

(himalaya 0.4.11's RidgeCV, the first choice, returned CV scores near -75
with ``fit_intercept=True`` and explicit splits on numpy 2.4 where this
implementation and a closed-form check give +0.44. Its chosen penalties and
weights are right, and tests/decode/test_ridge.py holds ours equal to them.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rt_recon.errors import DataError


@dataclass
class RidgeFit:
    coef: np.ndarray  # (n_features, n_targets)
    intercept: np.ndarray  # (n_targets,)
    alphas: np.ndarray  # (n_targets,) chosen penalty per target
    cv_r2: np.ndarray  # (n_targets,) mean held-out R^2 at the chosen penalty
    cv_prediction_std: np.ndarray  # (n_targets,) std of the out-of-fold predictions (chosen alpha)


def r2_per_target(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """``1 - SS_res / SS_tot`` per column; 0 where the truth has no variance."""
    ss_tot = ((y_true - y_true.mean(axis=0)) ** 2).sum(axis=0)
    return _r2(((y_true - y_pred) ** 2).sum(axis=-2), ss_tot)


@dataclass
class _Fold:
    """One fold's training decomposition and its held-out samples' projections.

    ``u`` ``(n_train, r)`` and ``s2`` ``(r,)``: the centred training features' left singular
    vectors and squared singular values; ``a`` ``(n_test, r)``: the held-out samples, centred
    by the training mean, projected as ``(x_test - mean) X_c^T U`` (so that the held-out
    prediction at penalty ``alpha`` is ``a diag(1 / (s2 + alpha)) U^T Y_c + mean_y``).
    """

    train: np.ndarray
    test: np.ndarray
    u: np.ndarray
    s2: np.ndarray
    a: np.ndarray


def _rank_kept(s2: np.ndarray) -> np.ndarray:
    """Components above round-off (a centred block has at least one null direction)."""
    top = float(s2.max(initial=0.0))
    return s2 > top * len(s2) * np.finfo(np.float64).eps


def _primal_fold(x: np.ndarray, train: np.ndarray, test: np.ndarray) -> _Fold:
    mean = x[train].mean(axis=0)
    u, s, vt = np.linalg.svd(x[train] - mean, full_matrices=False)
    keep = _rank_kept(s**2)
    u, s, vt = u[:, keep], s[keep], vt[keep]
    return _Fold(train, test, u, s**2, ((x[test] - mean) @ vt.T) * s)


def _dual_fold(gram: np.ndarray, train: np.ndarray, test: np.ndarray) -> _Fold:
    k = gram[np.ix_(train, train)]
    col = k.mean(axis=0)
    centred = k - col[None, :] - col[:, None] + col.mean()
    s2, u = np.linalg.eigh(centred)
    keep = _rank_kept(s2)
    u, s2 = u[:, keep], s2[keep]
    cross = gram[np.ix_(test, train)]
    cross = cross - cross.mean(axis=1, keepdims=True) - col[None, :] + col.mean()
    return _Fold(train, test, u, s2, cross @ u)


def _folds(x: np.ndarray, groups: np.ndarray, gram: np.ndarray | None) -> list[_Fold]:
    folds = []
    for g in np.unique(groups):
        train, test = np.flatnonzero(groups != g), np.flatnonzero(groups == g)
        folds.append(
            _primal_fold(x, train, test) if gram is None else _dual_fold(gram, train, test)
        )
    return folds


def _checked(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, alphas: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    groups = np.asarray(groups)
    alphas = np.asarray(alphas, dtype=np.float64)
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise DataError(f"cross-validation needs at least 2 groups (runs), found {n_groups}")
    if len(x) != len(y) or len(x) != len(groups):
        raise DataError(f"x, y and groups disagree on samples: {len(x)}, {len(y)}, {len(groups)}")
    return x, y, groups, alphas


def _gram_if_wide(x: np.ndarray) -> np.ndarray | None:
    """The samples' Gram matrix where features outnumber samples (the dual is cheaper)."""
    return x @ x.T if x.shape[1] > x.shape[0] else None


@dataclass
class _HeldOut:
    """One fold's targets, shared by every design scored on that fold: the training mean,
    the held-out targets minus it (``e``), and per target ``|e|^2`` and the held-out sum of
    squares about their own mean (R^2's denominator)."""

    y_mean: np.ndarray
    e: np.ndarray
    e2: np.ndarray
    ss_tot: np.ndarray

    @classmethod
    def of(cls, y: np.ndarray, y_sum: np.ndarray, fold: _Fold) -> _HeldOut:
        held = y[fold.test]  # the training rows are not copied out: they are most of ``y``
        y_mean = (y_sum - held.sum(axis=0)) / len(fold.train)
        e = held - y_mean
        ss_tot = ((held - held.mean(axis=0)) ** 2).sum(axis=0)
        return cls(y_mean, e, (e**2).sum(axis=0), ss_tot)


def _fold_scores(
    fold: _Fold, y: np.ndarray, held: _HeldOut, alphas: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(n_alphas, n_targets)`` held-out R^2 of one fold, and ``U^T Y_c`` of its training part.

    The residual sum of squares per target, ``|e - a D W|^2`` with ``e`` the held-out targets
    minus the training mean, ``D = diag(1 / (s2 + alpha))`` and ``W = U^T Y_c``, expands to
    ``|e|^2 - 2 sum_r D_r (a^T e)_r W_r + sum_rr' D_r D_r' (a^T a)_rr' W_r W_r'``: ``r x r``
    work per target and penalty, cheaper than forming the prediction when ``r <= n_test``.
    """
    spread = np.zeros((len(y), fold.u.shape[1]))
    spread[fold.train] = fold.u
    w = spread.T @ y - np.outer(fold.u.sum(axis=0), held.y_mean)  # U^T Y_c, (r, n_targets)
    scores = np.empty((len(alphas), y.shape[1]))
    if fold.a.shape[1] <= fold.a.shape[0]:
        cross = (fold.a.T @ held.e) * w  # (r, n_targets)
        gram = fold.a.T @ fold.a
        for i, alpha in enumerate(alphas):
            d = 1.0 / (fold.s2 + alpha)
            quadratic = (((gram * np.outer(d, d)) @ w) * w).sum(axis=0)
            scores[i] = _r2(held.e2 - 2.0 * (d @ cross) + quadratic, held.ss_tot)
    else:
        for i, alpha in enumerate(alphas):
            pred = (fold.a / (fold.s2 + alpha)) @ w
            scores[i] = _r2(((held.e - pred) ** 2).sum(axis=0), held.ss_tot)
    return scores, w


def _r2(ss_res: np.ndarray, ss_tot: np.ndarray) -> np.ndarray:
    return np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), 0.0)


def ridge_cv_r2(x: np.ndarray, y: np.ndarray, groups: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """``(n_targets,)`` mean held-out R^2 at each target's best penalty (as
    :func:`ridge_cv`'s ``cv_r2``), without the refit on all samples: for scoring only."""
    return ridge_cv_r2_designs([x], y, groups, alphas)[0]


def ridge_cv_r2_designs(
    designs: Sequence[np.ndarray], y: np.ndarray, groups: np.ndarray, alphas: np.ndarray
) -> np.ndarray:
    """``(n_designs, n_targets)``: :func:`ridge_cv_r2` of each design (``(n_samples, p_k)``
    features) for the same targets, the targets' share of each fold computed once (an HRF
    library's members, each a design for every voxel)."""
    if not designs:
        return np.zeros((0, np.shape(y)[1]), dtype=np.float32)
    _, y, groups, alphas = _checked(designs[0], y, groups, alphas)  # y converted once
    y_sum = y.sum(axis=0)
    held: dict[int, _HeldOut] = {}
    out = np.empty((len(designs), y.shape[1]), dtype=np.float32)
    for k, design in enumerate(designs):
        x = _checked(design, y, groups, alphas)[0]
        folds = _folds(x, groups, _gram_if_wide(x))
        total = np.zeros((len(alphas), y.shape[1]))
        for i, fold in enumerate(folds):
            if i not in held:
                held[i] = _HeldOut.of(y, y_sum, fold)
            total += _fold_scores(fold, y, held[i], alphas)[0]
        out[k] = (total / len(folds)).max(axis=0)
    return out


def ridge_cv(x: np.ndarray, y: np.ndarray, groups: np.ndarray, alphas: np.ndarray) -> RidgeFit:
    """Fit ridge with an intercept; pick ``alpha`` per target by leave-one-group-out CV."""
    x, y, groups, alphas = _checked(x, y, groups, alphas)
    gram = _gram_if_wide(x)
    folds = _folds(x, groups, gram)
    scores = np.zeros((len(alphas), y.shape[1]))
    projected, held_out = [], []
    y_sum = y.sum(axis=0)
    for fold in folds:
        held = _HeldOut.of(y, y_sum, fold)
        fold_scores, w = _fold_scores(fold, y, held, alphas)
        scores += fold_scores
        projected.append(w)
        held_out.append(held)
    scores /= len(folds)
    best = np.argmax(scores, axis=0)
    chosen = alphas[best]
    out_of_fold = np.empty_like(y)
    for fold, w, held in zip(folds, projected, held_out, strict=True):
        for a in np.unique(best):
            cols = best == a
            out_of_fold[np.ix_(fold.test, cols)] = (fold.a / (fold.s2 + alphas[a])) @ w[
                :, cols
            ] + held.y_mean[cols]
    coef = _refit(x, y, gram, best, alphas)
    y_mean, x_mean = y.mean(axis=0), x.mean(axis=0)
    return RidgeFit(
        coef=coef.astype(np.float32),
        intercept=(y_mean - x_mean @ coef).astype(np.float32),
        alphas=chosen.astype(np.float32),
        cv_r2=scores[best, np.arange(y.shape[1])].astype(np.float32),
        cv_prediction_std=out_of_fold.std(axis=0).astype(np.float32),
    )


def _refit(
    x: np.ndarray, y: np.ndarray, gram: np.ndarray | None, best: np.ndarray, alphas: np.ndarray
) -> np.ndarray:
    """``(n_features, n_targets)`` weights on all samples, each target at its penalty."""
    centred_y = y - y.mean(axis=0)
    everything = np.arange(len(x))
    if gram is None:
        x_mean = x.mean(axis=0)
        u, s, vt = np.linalg.svd(x - x_mean, full_matrices=False)
        keep = _rank_kept(s**2)
        u, s, vt = u[:, keep], s[keep], vt[keep]
        basis, shrink_num = vt.T, s  # coef = V diag(s / (s^2 + alpha)) U^T Y_c
        s2 = s**2
    else:
        fold = _dual_fold(gram, everything, everything[:0])
        u, s2 = fold.u, fold.s2
        basis = (x - x.mean(axis=0)).T @ u  # X_c^T U = V diag(s)
        shrink_num = np.ones_like(s2)  # coef = X_c^T U diag(1 / (s^2 + alpha)) U^T Y_c
    projected = u.T @ centred_y
    coef = np.empty((x.shape[1], y.shape[1]))
    for a in np.unique(best):
        cols = best == a
        coef[:, cols] = basis @ ((shrink_num / (s2 + alphas[a]))[:, None] * projected[:, cols])
    return coef
