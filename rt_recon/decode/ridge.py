"""Ridge regression with a penalty chosen per target by grouped cross-validation.

For each fold the centred training features are decomposed once
(``X = U diag(s) V^T``); every penalty ``alpha`` then costs only a diagonal
rescaling, ``W(alpha) = V diag(s / (s^2 + alpha)) U^T Y``. Each target keeps
the penalty with the best mean R^2 over the held-out groups (runs), and the
final weights are refitted on all samples. Shapes follow himalaya's
conventions: ``X (n_samples, n_features)``, ``Y (n_samples, n_targets)``.

(himalaya 0.4.11's RidgeCV, the first choice, returned CV scores near -75
with ``fit_intercept=True`` and explicit splits on numpy 2.4 where this
implementation and a closed-form check give +0.44. Its chosen penalties and
weights are right, and tests/decode/test_ridge.py holds ours equal to them.)
"""

from __future__ import annotations

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


def _svd_centred(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    u, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    return mean, u, s, vt


def r2_per_target(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """``1 - SS_res / SS_tot`` per column; 0 where the truth has no variance."""
    ss_res = ((y_true - y_pred) ** 2).sum(axis=-2)
    ss_tot = ((y_true - y_true.mean(axis=0)) ** 2).sum(axis=0)
    return np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), 0.0)


def ridge_cv(x: np.ndarray, y: np.ndarray, groups: np.ndarray, alphas: np.ndarray) -> RidgeFit:
    """Fit ridge with an intercept; pick ``alpha`` per target by leave-one-group-out CV."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    alphas = np.asarray(alphas, dtype=np.float64)
    unique = np.unique(groups)
    if len(unique) < 2:
        raise DataError(f"cross-validation needs at least 2 groups (runs), found {len(unique)}")
    if len(x) != len(y) or len(x) != len(groups):
        raise DataError(f"x, y and groups disagree on samples: {len(x)}, {len(y)}, {len(groups)}")
    scores = np.zeros((len(alphas), y.shape[1]))
    out_of_fold = np.zeros((len(alphas), *y.shape))
    for g in unique:
        train, test = groups != g, groups == g
        x_mean, u, s, vt = _svd_centred(x[train])
        y_mean = y[train].mean(axis=0)
        projected_test = (x[test] - x_mean) @ vt.T  # (n_test, r)
        projected_y = u.T @ (y[train] - y_mean)  # (r, n_targets)
        for a, alpha in enumerate(alphas):
            shrink = s / (s**2 + alpha)
            pred = (projected_test * shrink) @ projected_y + y_mean
            scores[a] += r2_per_target(y[test], pred)
            out_of_fold[a][test] = pred
    scores /= len(unique)
    best = np.argmax(scores, axis=0)
    columns = np.arange(y.shape[1])
    prediction_std = out_of_fold[best, :, columns].std(axis=1)  # (n_targets, n) -> per target
    x_mean, u, s, vt = _svd_centred(x)
    y_mean = y.mean(axis=0)
    projected_y = u.T @ (y - y_mean)
    coef = np.empty((x.shape[1], y.shape[1]))
    for a in np.unique(best):
        cols = best == a
        coef[:, cols] = vt.T @ ((s / (s**2 + alphas[a]))[:, None] * projected_y[:, cols])
    return RidgeFit(
        coef=coef.astype(np.float32),
        intercept=(y_mean - x_mean @ coef).astype(np.float32),
        alphas=alphas[best].astype(np.float32),
        cv_r2=scores[best, columns].astype(np.float32),
        cv_prediction_std=prediction_std.astype(np.float32),
    )
