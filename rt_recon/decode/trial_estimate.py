"""A trial's response estimate per voxel: a weighted sum over the TRs of its window.

The estimate of a trial with onset TR ``o`` is, per voxel ``v``,
``sum_m a[g(v), m] * x_v(o + lag - m)`` over the window's ``n_window`` TRs,
where ``g(v)`` is the voxel's HRF group (one group with the canonical HRF;
one per library HRF, :mod:`rt_recon.decode.hrf_library`) and ``a[g]`` the
group's weights:

* ``"window"``: a matched filter, the group's response over the window,
  clipped at zero and summed to one (today's estimate for the canonical
  HRF). While the window is still filling (trial mode) or where a TR never
  arrived, the TRs present are divided by the weight they carry.
* ``"lss"``: the first row of the pseudo-inverse of the window's design:
  the trial's own response and one regressor summing the responses of every
  other trial (as least-squares-separate, Mumford et al. 2012, does over a
  run). The trial's own response carries weight one and the other trials'
  none, so neighbouring trials no longer leak into the estimate (with the
  canonical HRF, a 3 s picture every 3 TRs of 1.5 s and today's 4-TR window,
  the previous trial's response enters at 34% and the next one's at 22% of
  the trial's own), for about 5% more noise. There is no constant: in a
  design this fast the trials' responses overlap into a plateau that a
  constant nearly equals, and with one the estimate's noise grows about
  twentyfold; the features are high-passed and z-scored against the run, so
  the baseline is taken as zero. TRs not (yet) present count as zero too.

Which other trials surround a trial comes from the onsets known (the fit
gives every onset of the run); without them the schedule is assumed
regular, one trial every ``period_trs`` TRs (the training runs' median).

The fit (:mod:`rt_recon.decode.fit`) and the online decoder
(:class:`~rt_recon.decode.online.OnlineDecoder`) both call
:meth:`TrialEstimator.estimate`, with the TRs' features from an array or
from the decoder's buffer: the same code gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rt_recon.errors import BundleError

#: Others' onsets assumed on each side of a trial under the regular-schedule assumption.
_ASSUMED_NEIGHBOURS = 16


@dataclass
class TemporalModel:
    """The groups' temporal weights, stored in the bundle.

    Attributes:
        mode: ``"window"`` or ``"lss"``.
        lag_trs: TRs from onset to the complete estimate; ``n_window``: TRs in the window.
        window_weights: ``(K, n_window)`` matched filters (weight ``m`` for TR ``o + lag - m``).
        responses: ``(K, n_response)`` each group's expected response ``j`` TRs after onset.
        voxel_group: ``(n_voxels,)`` group of each decoded voxel (ascending voxel order),
            or None when ``K == 1``.
        period_trs: the schedule assumed when the onsets of other trials are unknown.
        peaks_s: each group's HRF peak (report only).
    """

    mode: str
    lag_trs: int
    n_window: int
    window_weights: np.ndarray
    responses: np.ndarray
    voxel_group: np.ndarray | None = None
    period_trs: int = 1
    peaks_s: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        self.window_weights = np.asarray(self.window_weights, dtype=np.float32)
        self.responses = np.asarray(self.responses, dtype=np.float64)
        k = len(self.window_weights)
        if self.mode not in ("window", "lss"):
            raise BundleError(f"temporal mode must be 'window' or 'lss', found {self.mode!r}")
        if self.window_weights.shape != (k, self.n_window) or len(self.responses) != k:
            raise BundleError(
                f"temporal model: window weights {self.window_weights.shape} and responses "
                f"{self.responses.shape} must be ({k}, {self.n_window}) and ({k}, n)"
            )
        if self.voxel_group is not None:
            self.voxel_group = np.asarray(self.voxel_group, dtype=np.int64)
            if self.voxel_group.size and (
                self.voxel_group.min() < 0 or self.voxel_group.max() >= k
            ):
                raise BundleError(f"temporal model: voxel groups outside 0..{k - 1}")
        if self.period_trs < 1:
            raise BundleError(f"temporal model: period_trs must be >= 1, found {self.period_trs}")

    @property
    def n_groups(self) -> int:
        return len(self.window_weights)

    def to_json(self) -> dict:
        return {
            "mode": self.mode,
            "lag_trs": self.lag_trs,
            "n_window": self.n_window,
            "period_trs": self.period_trs,
            "peaks_s": list(self.peaks_s),
        }

    def arrays(self) -> dict[str, np.ndarray]:
        out = {
            "temporal.window_weights": self.window_weights.astype(np.float32),
            "temporal.responses": self.responses.astype(np.float64),
        }
        if self.voxel_group is not None:
            out["temporal.voxel_group"] = self.voxel_group.astype(np.int64)
        return out

    @classmethod
    def from_stored(cls, entry: dict, arrays: dict[str, np.ndarray]) -> TemporalModel:
        missing = [k for k in ("temporal.window_weights", "temporal.responses") if k not in arrays]
        if missing or not isinstance(entry, dict):
            raise BundleError(f"bundle temporal model lacks {missing or 'its JSON entry'}")
        try:
            return cls(
                mode=str(entry["mode"]),
                lag_trs=int(entry["lag_trs"]),
                n_window=int(entry["n_window"]),
                window_weights=arrays["temporal.window_weights"],
                responses=arrays["temporal.responses"],
                voxel_group=arrays.get("temporal.voxel_group"),
                period_trs=int(entry.get("period_trs", 1)),
                peaks_s=tuple(float(p) for p in entry.get("peaks_s", ())),
            )
        except KeyError as exc:
            raise BundleError(f"bundle temporal model lacks {exc}") from None


def matched_weights(responses: np.ndarray, lag_trs: int, n_window: int) -> np.ndarray:
    """``(K, n_window)`` matched filters: ``responses[:, lag - m]`` clipped at 0, summing to 1."""
    lags = lag_trs - np.arange(n_window)
    inside = (lags >= 0) & (lags < responses.shape[1])
    w = np.zeros((len(responses), n_window))
    w[:, inside] = np.clip(responses[:, lags[inside]], 0.0, None)
    total = w.sum(axis=1, keepdims=True)
    if np.any(total <= 0):
        raise BundleError(f"a response is zero over the window (lag {lag_trs}, {n_window} TRs)")
    return w / total


class TrialEstimator:
    """``estimate(features_at, tr, onset, onsets) -> (n_voxels,)`` per-voxel trial estimates."""

    def __init__(self, model: TemporalModel, n_voxels: int):
        self.model = model
        self.n_voxels = n_voxels
        if model.voxel_group is not None and model.voxel_group.shape != (n_voxels,):
            raise BundleError(
                f"temporal model groups {model.voxel_group.shape[0]} voxels, "
                f"the decoder reads {n_voxels}"
            )
        self._lss_cache: dict[tuple[int, ...], np.ndarray] = {}
        self._voxel_cache: dict[object, np.ndarray] = {}

    def _per_voxel(self, weights: np.ndarray) -> np.ndarray:
        """``(n_window, n_voxels)`` each voxel's weights (``(n_window, 1)`` for one group)."""
        group = self.model.voxel_group
        if group is None:
            return np.ascontiguousarray(weights[0][:, None], dtype=np.float32)
        return np.ascontiguousarray(weights.T[:, group], dtype=np.float32)

    def trs(self, onset: int) -> np.ndarray:
        """The window's TRs, ``onset + lag - m`` for ``m < n_window``."""
        return onset + self.model.lag_trs - np.arange(self.model.n_window)

    def group_weights(self, onset: int, onsets: Sequence[int] | None = None) -> np.ndarray:
        """``(K, n_window)`` weights of each group for the trial with onset TR ``onset``."""
        if self.model.mode == "window":
            return self.model.window_weights
        return self._lss_weights(self._others(onset, onsets))

    def _others(self, onset: int, onsets: Sequence[int] | None) -> tuple[int, ...]:
        """Onsets of the other trials relative to ``onset`` that reach the window."""
        m = self.model
        n_resp = m.responses.shape[1]
        if onsets is None:
            p = m.period_trs
            others = [j * p for j in range(-_ASSUMED_NEIGHBOURS, _ASSUMED_NEIGHBOURS + 1) if j]
        else:
            others = [int(o) - onset for o in onsets if int(o) != onset]
        first = m.lag_trs - (m.n_window - 1)  # window TRs relative to onset: first..lag
        return tuple(sorted(d for d in others if first - n_resp < d <= m.lag_trs))

    def _lss_weights(self, others: tuple[int, ...]) -> np.ndarray:
        cached = self._lss_cache.get(others)
        if cached is not None:
            return cached
        m = self.model
        rel = m.lag_trs - np.arange(m.n_window)  # window TRs relative to the onset
        out = np.empty((m.n_groups, m.n_window))
        for g, response in enumerate(m.responses):
            own = _sample(response, rel)
            other = sum((_sample(response, rel - d) for d in others), np.zeros(m.n_window))
            out[g] = np.linalg.pinv(np.column_stack([own, other]))[0]
        out = out.astype(np.float32)
        if len(self._lss_cache) < 256:
            self._lss_cache[others] = out
        return out

    def estimate(
        self,
        features_at: Callable[[int], np.ndarray | None],
        tr: int,
        onset: int,
        onsets: Sequence[int] | None = None,
    ) -> np.ndarray:
        """The estimate at TR ``tr`` of the trial with onset TR ``onset``.

        Args:
            features_at: a TR -> its ``(n_voxels,)`` features, or None where absent.
            tr: the latest TR that counts (later window TRs are not there yet).
            onset: the trial's onset TR; ``onsets``: every trial onset known (None: a
                regular schedule, ``lss`` only).
        """
        key = "window" if self.model.mode == "window" else self._others(onset, onsets)
        per_voxel = self._voxel_cache.get(key)
        if per_voxel is None:
            per_voxel = self._per_voxel(self.group_weights(onset, onsets))
            if len(self._voxel_cache) < 16:
                self._voxel_cache[key] = per_voxel
        rows, used = [], []
        for m, t in enumerate(self.trs(onset)):
            if t > tr:
                continue
            x = features_at(int(t))
            if x is not None:
                rows.append(x)
                used.append(m)
        if not rows:
            return np.zeros(self.n_voxels, dtype=np.float32)
        x = np.stack(rows)  # (n_used, n_voxels)
        if per_voxel.shape[1] == 1:  # one group: a weight per TR
            w = per_voxel[used, 0]
            out = (w @ x).astype(np.float32)
            total = np.full(self.n_voxels, w.sum(), dtype=np.float32)
        else:
            w = per_voxel[used]  # (n_used, n_voxels)
            out = np.einsum("mv,mv->v", w, x).astype(np.float32)
            total = w.sum(axis=0)
        if self.model.mode == "window":
            out = np.divide(out, total, out=np.zeros_like(out), where=total > 0)
        return out


def _sample(response: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """``response[lags]`` with zeros outside ``0 <= lag < len(response)``."""
    inside = (lags >= 0) & (lags < len(response))
    out = np.zeros(len(lags))
    out[inside] = response[lags[inside]]
    return out
