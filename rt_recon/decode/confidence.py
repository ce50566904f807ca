"""A per-TR confidence: how far the decoded latents stand above what the decoder gives on noise.

The decoders are linear: on features that carry no stimulus-locked pattern they
still output something, the intercept plus a projection of the noise. How far a
TR's decoded latents lie from the intercept, measured in units of that noise
output, says whether the decoder read a pattern it was fitted to find or only
noise. The confidence is where that statistic falls in its null distribution:

* **the statistic** (:meth:`ConfidenceModel.statistic`): per head ``h`` (``z``,
  ``c``) the deviation ``d = latent - intercept``, each output divided by its
  root-mean-square on the null samples (``scale``), squared and averaged:
  ``s_h = mean((d / scale_h) ** 2)`` (over the outputs that vary on the null),
  so ``s_h`` averages 1 on the null; the
  TR's statistic is the mean of ``s_h`` over the heads the model uses (``use``);
* **the null** (fitted on the TRAINING runs by :func:`rt_recon.decode.fit.
  fit_planned`): the same statistic at every training trial's scored TR after
  each decoded voxel's preprocessed time series has been shifted circularly by
  its own random offset (several draws per run): each voxel keeps its
  distribution and its autocorrelation, but the pattern across voxels that
  the decoders read from a stimulus is gone;
* **the confidence** (:meth:`ConfidenceModel.confidence`): the fraction of the
  null statistics strictly below the TR's, in ``[0, 1]``: uniform on null
  samples, near 1 where the latents stand far above the noise.

Cost per TR: one subtraction, division and mean over each used head's outputs
and one binary search in the sorted null (docs/performance.md gives the
measured figure). The null's limit: shifting each voxel on its own also
breaks the noise's correlation across voxels, so the null is that of
spatially independent noise of the voxels' own spread.

Stored in the bundle (optional; a bundle without it reports confidence None):
``confidence.null`` ``(n_null, n_heads)`` float64 (each null sample's ``s_h``),
``confidence.<head>.scale`` ``(n_targets,)`` float32, and JSON under
``confidence`` (the heads in column order, the heads used, how the null was made).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rt_recon.errors import BundleError

#: The statistic's version: a change to what the fit stores changes it (and the cache key of
#: :func:`rt_recon.apps.demo.ensure_bundle`).
VERSION = 1

#: The JSON key and array prefix of the confidence in a bundle.
KEY = "confidence"

#: How the null is made (the JSON's ``method``).
METHOD = "per-voxel circular shift of the training runs' preprocessed features"

#: Null draws per training run (*chosen*: 12 runs x ~34 trials x 4 gives ~1,600 null
#: samples, a resolution of ~0.06% in the confidence).
N_SHIFTS = 4

#: Seed of the shifts (*chosen*).
SEED = 0

#: Heads the statistic uses by default, *chosen* on the validation runs of participant seeds
#: 0-4 (180 trials x 3 renderer seeds, ``python -m benchmarks.bench_confidence --role
#: validation``): Spearman's rho of confidence and per-trial identification +0.155 (p 0.04)
#: for ``c``, +0.146 for ``z`` and ``c``, +0.061 for ``z`` (docs/study-designs.md,
#: "Confidence"). The ``c`` head carries what is decoded (its CV R^2 ~0.5, ``z``'s ~0).
DEFAULT_USE: tuple[str, ...] = ("c",)

_TINY = 1e-12


@dataclass
class ConfidenceModel:
    """The null of the per-TR statistic, fitted on training runs.

    Attributes:
        heads: the heads the null has a column for, in column order.
        scale: per head, ``(n_targets,)`` float32 root-mean-square of each output's deviation
            from the intercept over the null samples.
        intercept: per head, ``(n_targets,)`` float32, the head's intercept (the decoder's
            output on all-zero features).
        null: ``(n_null, len(heads))`` float64: each null sample's per-head statistic.
        use: the heads whose statistics are averaged into the TR's statistic.
        report: how the null was made (JSON-ready).
    """

    heads: tuple[str, ...]
    scale: dict[str, np.ndarray]
    intercept: dict[str, np.ndarray]
    null: np.ndarray
    use: tuple[str, ...] = DEFAULT_USE
    report: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.heads = tuple(self.heads)
        self.use = tuple(self.use)
        if self.null.ndim != 2 or self.null.shape[1] != len(self.heads) or len(self.null) == 0:
            raise BundleError(
                f"confidence null must be (n_null > 0, {len(self.heads)}) for heads "
                f"{list(self.heads)}, found {self.null.shape}"
            )
        unknown = [h for h in self.use if h not in self.heads]
        if not self.use or unknown:
            raise BundleError(
                f"confidence uses heads {list(self.use)}: expected a non-empty subset of "
                f"{list(self.heads)}"
            )
        for h in self.heads:
            if h not in self.scale or h not in self.intercept:
                raise BundleError(f"confidence lacks the scale or intercept of head {h!r}")
            if self.scale[h].shape != self.intercept[h].shape:
                raise BundleError(
                    f"confidence head {h!r}: scale {self.scale[h].shape} and intercept "
                    f"{self.intercept[h].shape} differ"
                )
        self._columns = [self.heads.index(h) for h in self.use]
        self._sorted = np.sort(self.null[:, self._columns].mean(axis=1))
        self._inverse = {h: _inverse(self.scale[h]) for h in self.heads}
        self._n = {h: max(1, int(np.count_nonzero(self._inverse[h]))) for h in self.heads}

    def with_use(self, use: Sequence[str]) -> ConfidenceModel:
        """The same null, the statistic averaged over ``use`` instead."""
        return ConfidenceModel(self.heads, self.scale, self.intercept, self.null, tuple(use),
                               self.report)  # fmt: skip

    @property
    def n_null(self) -> int:
        return len(self.null)

    def head_statistic(self, head: str, latent: np.ndarray) -> float:
        """``mean(((latent - intercept) / scale) ** 2)`` over the head's outputs that vary on
        the null (an output constant there, e.g. a padding token's, is left out)."""
        d = np.asarray(latent, dtype=np.float32).reshape(-1) - self.intercept[head]
        d *= self._inverse[head]
        return float(np.dot(d, d) / self._n[head])

    def statistic(self, latents: Mapping[str, np.ndarray]) -> float:
        """The TR's statistic: the mean of :meth:`head_statistic` over the heads used."""
        return float(np.mean([self.head_statistic(h, latents[h]) for h in self.use]))

    def of_statistic(self, statistic: float) -> float:
        """The fraction of the null strictly below ``statistic``, in ``[0, 1]``."""
        if not np.isfinite(statistic):
            return 0.0 if np.isnan(statistic) else 1.0
        below = np.searchsorted(self._sorted, statistic, side="left")
        return float(below / len(self._sorted))

    def confidence(self, latents: Mapping[str, np.ndarray]) -> float:
        """The TR's confidence, ``{head: latent}`` as the decoder gives them -> ``[0, 1]``."""
        return self.of_statistic(self.statistic(latents))

    # ------------------------------------------------------------------- storage

    def arrays(self) -> dict[str, np.ndarray]:
        out = {f"{KEY}.null": np.asarray(self.null, dtype=np.float64)}
        for h in self.heads:
            out[f"{KEY}.{h}.scale"] = np.asarray(self.scale[h], dtype=np.float32)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"heads": list(self.heads), "use": list(self.use), "report": self.report}

    @classmethod
    def from_stored(
        cls, entry: Any, arrays: Mapping[str, np.ndarray], intercepts: Mapping[str, np.ndarray]
    ) -> ConfidenceModel:
        """Read back what :meth:`arrays` and :meth:`to_json` wrote; ``intercepts``: the
        bundle's heads' (flattened)."""
        if not isinstance(entry, dict) or "heads" not in entry or "use" not in entry:
            raise BundleError(f"confidence entry must hold 'heads' and 'use', found {entry!r}")
        heads = tuple(entry["heads"])
        names = [f"{KEY}.null", *[f"{KEY}.{h}.scale" for h in heads]]
        missing = [n for n in names if n not in arrays]
        if missing:
            raise BundleError(f"confidence lacks arrays {missing}")
        absent = [h for h in heads if h not in intercepts]
        if absent:
            raise BundleError(f"confidence names heads {absent} the bundle does not have")
        return cls(
            heads=heads,
            scale={h: np.asarray(arrays[f"{KEY}.{h}.scale"], dtype=np.float32) for h in heads},
            intercept={h: np.asarray(intercepts[h], dtype=np.float32).reshape(-1) for h in heads},
            null=np.asarray(arrays[f"{KEY}.null"], dtype=np.float64),
            use=tuple(entry["use"]),
            report=dict(entry.get("report", {})),
        )


def _inverse(scale: np.ndarray) -> np.ndarray:
    """``1 / scale``, 0 where an output does not vary on the null."""
    scale = np.asarray(scale, dtype=np.float32)
    return np.where(scale > _TINY, 1.0 / np.maximum(scale, _TINY), 0.0).astype(np.float32)


def settings() -> dict[str, Any]:
    """What the fit's null depends on beyond the fit settings (a cache key's part)."""
    return {"version": VERSION, "method": METHOD, "n_shifts": N_SHIFTS, "seed": SEED,
            "use": list(DEFAULT_USE)}  # fmt: skip


def fit_confidence(
    null_latents: Mapping[str, np.ndarray],
    intercepts: Mapping[str, np.ndarray],
    use: Sequence[str] = DEFAULT_USE,
    report: Mapping[str, Any] | None = None,
) -> ConfidenceModel:
    """The model from the decoder's outputs on null samples.

    Args:
        null_latents: per head, ``(n_null, n_targets)`` the head's outputs (intercept
            included) on the null samples, rows in the same order for every head.
        intercepts: per head, ``(n_targets,)`` the head's intercept.
        use: the heads the statistic averages (those of them present).
        report: how the null samples were made.
    """
    heads = tuple(null_latents)
    sizes = {len(v) for v in null_latents.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise BundleError(
            f"null latents must have one non-zero number of rows for every head, found "
            f"{ {h: len(v) for h, v in null_latents.items()} }"
        )
    scale, inter, columns = {}, {}, []
    for h in heads:
        d = np.asarray(null_latents[h], dtype=np.float64).reshape(len(null_latents[h]), -1)
        b = np.asarray(intercepts[h], dtype=np.float64).reshape(-1)
        d = d - b
        rms = np.sqrt(np.mean(d**2, axis=0))
        scale[h] = rms.astype(np.float32)
        inter[h] = b.astype(np.float32)
        inverse = _inverse(scale[h]).astype(np.float64)
        z = d * inverse
        columns.append(np.sum(z**2, axis=1) / max(1, int(np.count_nonzero(inverse))))
    chosen = tuple(h for h in use if h in heads) or heads
    return ConfidenceModel(
        heads, scale, inter, np.column_stack(columns), chosen, dict(report or {})
    )


def circular_shift_voxels(
    series: np.ndarray, rng: np.random.Generator, min_shift: int, start: int = 0
) -> np.ndarray:
    """``(n_trs, n_voxels)`` -> the same with rows ``start:`` of each column shifted
    circularly by its own offset, drawn uniformly from ``[min_shift, n - min_shift]``
    (``n = n_trs - start``), so no voxel keeps its own timing; rows before ``start``
    (the z-score warm-up) are kept. A run too short for ``min_shift`` (fewer than
    ``2 * min_shift + 1`` rows) is shifted by at least ``(n - 1) // 2``."""
    out = np.array(series, copy=True)
    part = series[start:]
    n = len(part)
    if n < 2:
        return out
    min_shift = max(1, min(min_shift, (n - 1) // 2))
    offsets = rng.integers(min_shift, n - min_shift + 1, size=part.shape[1])
    rows = (np.arange(n)[:, None] - offsets[None, :]) % n
    out[start:] = np.take_along_axis(part, rows, axis=0)
    return out
