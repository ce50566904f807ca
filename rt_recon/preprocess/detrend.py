"""Online detrending: an incremental GLM of polynomial drift (and confounds), refitted every TR.

Method. At TR ``t`` (0-based count of updates) the design row is
``x_t = (1, tau, tau^2, ..., tau^degree, c_t)`` with ``tau = t / time_scale_trs``
and ``c_t`` optional confounds (e.g. the six motion parameters of this TR).
The stage keeps the sufficient statistics ``S = sum_s x_s x_s^T``
(``p x p``) and ``B = sum_s x_s y_s^T`` (``p x n_features``), so after adding
TR ``t`` the least-squares fit on every TR so far is ``beta_t = S^+ B`` and
the output is the residual of the newest volume,
``y_t - x_t^T beta_t = y_t - (S^+ x_t)^T B``. That is exactly the last row of
an offline OLS detrend of the run so far (``S^+`` the pseudo-inverse, so the
first ``p - 1`` TRs, where the fit is underdetermined, give the minimum-norm
solution, as ``numpy.linalg.lstsq`` does). This is the cumulative GLM of
real-time fMRI (Bagarinao et al., 2003, NeuroImage 19:422-429; OpenNFT's
cGLM, Koush et al., 2017, NeuroImage 156:489-503) written recursively so each
TR costs the same however long the run.

Cost per TR: one rank-one update of ``B`` (``p * n_features`` multiply-adds),
one ``p x p`` pseudo-inverse (negligible), one ``p``-vector times ``B`` product
(``p * n_features``): ``O(p * n_features)`` time and ``p * n_features`` float64
memory, with ``p = degree + 1 + n_confounds``.

Polynomials, not a cosine (DCT) basis, because an online fit does not know the
run length a DCT needs. The residual has mean zero over the run so far, as a
z-score stage downstream expects.
"""

from __future__ import annotations

import numpy as np

from rt_recon.preprocess._checks import check_confounds, check_volume


class OnlineDetrend:
    """Remove polynomial drift (and confounds) from each volume with a cumulative GLM.

    ``update(y, confounds=None)`` takes ``(n_features,)`` values of this TR
    (voxels in any fixed order) and returns the ``(n_features,)`` float32
    residual. :attr:`warming_up` is True while the fit has fewer TRs than
    ``warmup`` (default: twice the number of regressors); residuals are
    exact but shrunk towards zero then.

    Args:
        n_features: values per volume.
        degree: polynomial degree of the drift (0 = mean only, 1 = linear, ...).
        n_confounds: confound regressors passed to each update (e.g. 6 motion parameters).
        time_scale_trs: TRs per unit of the polynomial's time axis (conditioning only;
            the fit does not depend on it).
        warmup: TRs before :attr:`warming_up` turns False.
    """

    def __init__(
        self,
        n_features: int,
        degree: int = 2,
        n_confounds: int = 0,
        time_scale_trs: float = 100.0,
        warmup: int | None = None,
    ):
        if degree < 0 or n_confounds < 0 or n_features < 1:
            raise ValueError(
                f"need n_features >= 1, degree >= 0, n_confounds >= 0; "
                f"found {n_features}, {degree}, {n_confounds}"
            )
        self.n_features = int(n_features)
        self.degree = int(degree)
        self.n_confounds = int(n_confounds)
        self.time_scale_trs = float(time_scale_trs)
        self.n_regressors = self.degree + 1 + self.n_confounds
        self.warmup = 2 * self.n_regressors if warmup is None else int(warmup)
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self._xtx = np.zeros((self.n_regressors, self.n_regressors))
        self._xty = np.zeros((self.n_regressors, self.n_features))

    @property
    def warming_up(self) -> bool:
        return self.count < self.warmup

    def regressors(self, confounds: np.ndarray | None = None) -> np.ndarray:
        """The design row ``(p,)`` of the next update."""
        tau = self.count / self.time_scale_trs
        drift = tau ** np.arange(self.degree + 1, dtype=np.float64)
        return np.concatenate(
            [drift, check_confounds(confounds, self.n_confounds, "OnlineDetrend")]
        )

    def update(self, values: np.ndarray, confounds: np.ndarray | None = None) -> np.ndarray:
        """``(n_features,)`` values (+ ``(n_confounds,)``) -> ``(n_features,)`` float32 residual."""
        y = check_volume(values, (self.n_features,), "OnlineDetrend")
        x = self.regressors(confounds)
        self._xtx += np.outer(x, x)
        for k, xk in enumerate(x):  # p rows: cheaper than materialising the outer product
            self._xty[k] += xk * y
        weights = np.linalg.pinv(self._xtx, rcond=1e-10, hermitian=True) @ x
        self.count += 1
        # einsum, not ``weights @ B``: a (p,) x (p, n) BLAS gemv can cost 10 ms when
        # OpenBLAS threads contend with other work; einsum's loop costs 0.1-0.4 ms here.
        fit = np.einsum("p,pn->n", weights, self._xty)
        return (y - fit).astype(np.float32)
