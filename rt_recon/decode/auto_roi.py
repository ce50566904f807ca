"""Regions of interest for a participant without ROI masks: a brain mask and voxels per head.

At the scanner a new participant rarely has early- and higher-visual masks.
Two steps replace them, both on the training runs alone:

1. **Brain mask** from the mean EPI (:func:`epi_brain_mask`): nilearn's
   :func:`~nilearn.masking.compute_epi_mask` (the histogram's lower cutoff
   between air and tissue, a morphological opening, the largest connected
   component), grown by :data:`DILATION_VOXELS` voxel, returned as channel
   indices in stream voxel order (:data:`rt_recon.protocol.VOXEL_ORDER`, x
   fastest), as :func:`rt_recon.acquire.masks.load_mask` returns a mask file's
   voxels. nilearn's mask alone drops the partial-volume voxels at the brain's
   edge, where the occipital pole's early visual cortex lies (on the realistic
   synthetic participant it kept 89% of the true early visual ROI, grown by one
   voxel 99.5%); an extra voxel of air costs a little extraction time and the
   encoding step drops it.
2. **Voxels per head** by cross-validated encoding (:func:`choose_head_voxels`):
   each brain voxel's trial estimates (the canonical matched filter's) are
   predicted from each head's targets (their first :data:`ENCODING_COMPONENTS`
   principal components: :func:`rt_recon.decode.select.target_scores`) by
   ridge with leave-one-run-out cross-validation
   (:func:`rt_recon.decode.ridge.ridge_cv`), the estimates centred per run
   first (the running z-score leaves each run its own offset, which otherwise
   dominates a voxel's held-out error: most voxels scored below zero). A voxel
   goes to the head whose targets predict it best (winner takes all), if that
   CV R^2 is above the head's chance level (:func:`chance_thresholds`: the
   :data:`CHANCE_QUANTILE` quantile of the voxels' R^2 with the trials'
   targets permuted); within a head voxels rank by that R^2, and the head
   keeps the number of its best voxels, out of :data:`COUNT_LADDER` (and all
   of them), whose decoder has the best training CV score, as
   ``select_voxels: auto`` chooses a fraction (:mod:`rt_recon.decode.select`).

Why winner-takes-all on 16 components: on the realistic synthetic participant
(default config, seed 0) the 250 best voxels of the ``z`` head were 96% in the
oracle early visual ROI and those of the ``c`` head 94% in the oracle higher
visual ROI. Each head ranked by its own R^2 alone gave the ``z`` head 74%
early visual (the caption's attributes reach both ROIs); 64 components gave
the ``c`` head 37% higher visual (the caption embedding's many dimensions
overfit); the difference of the heads' R^2, or the unique R^2 of one head
beyond the other, traded one head's precision for the other's (86%/94%,
100%/84%).

Measured (benchmarks/bench_auto_roi.py, three realistic participants, seeds
0-2, the config's recipe, 108 validation trials): identification of the
rendered frames 76.3% with automatic voxels against 76.9% with the oracle
ROIs (paired difference -0.6 points, 95% interval -5.4 to +4.2) and 80.5%
with the atlas-like masks; the automatic ``z`` voxels were 83% oracle early
visual, the ``c`` voxels 98% oracle higher visual.

Cost: the encoding models read ``k`` components, so each is a ``(n, k)``
decomposition per fold and a product with the voxels' estimates, in chunks of
:data:`VOXEL_CHUNK` voxels. On this project's 2-core CPU, at 100,000 voxels x
432 trials (12 runs) and two heads, the encoding and chance R^2 took 21 s and
the whole choice, the decoder scores of each count included, 29 s
(benchmarks/bench_auto_roi.py ``--timing``). Preprocessing every brain voxel
of the training runs first (the fit's own extraction) costs more: its
``(trials, voxels)`` estimates and ``(TRs, voxels)`` series are held in memory
(float32: 100,000 voxels x 1,800 TRs is 0.7 GB).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rt_recon.decode.ridge import ridge_cv_r2
from rt_recon.decode.select import target_scores
from rt_recon.errors import DataError

log = logging.getLogger(__name__)

#: Target principal components each head's encoding model reads.
ENCODING_COMPONENTS = 16
#: Voxel counts a head tries (besides all its candidates), smallest first.
COUNT_LADDER: tuple[int, ...] = (50, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600)
#: Voxels per encoding ridge at a time (bounds memory: alphas x trials x chunk floats).
VOXEL_CHUNK = 4096
#: A candidate's CV R^2 must exceed this quantile of the R^2 voxels reach by chance.
CHANCE_QUANTILE = 0.99
#: Voxels of margin added around nilearn's EPI mask (the partial-volume voxels at the
#: brain's edge, where the occipital pole's early visual cortex lies).
DILATION_VOXELS = 1
#: How a report names the method.
METHOD = "auto"


def mean_epi(volumes: Sequence[np.ndarray], shape: tuple[int, int, int]) -> np.ndarray:
    """``(x, y, z)`` mean of runs' ``(n_trs, n_channels)`` volumes in stream voxel order."""
    n = int(np.prod(shape))
    total = np.zeros(n, dtype=np.float64)
    count = 0
    for run in volumes:
        if run.ndim != 2 or run.shape[1] != n:
            raise DataError(
                f"a mean EPI needs full volumes of {n} channels (shape {tuple(shape)}), found a "
                f"run of shape {run.shape}; give the brain mask's channels instead"
            )
        total += run.sum(axis=0, dtype=np.float64)
        count += len(run)
    if count == 0:
        raise DataError("a mean EPI needs at least one volume, found none")
    return (total / count).reshape(shape, order="F")


def epi_brain_mask(mean: np.ndarray, affine: np.ndarray | None = None) -> np.ndarray:
    """Channel indices ``(n,)`` int64 (stream voxel order) of the brain in a mean EPI.

    ``mean``: ``(x, y, z)`` mean EPI; ``affine``: its RAS+ affine (only carried into
    the NIfTI image nilearn reads; the mask is on the EPI's own grid).
    """
    import nibabel as nib
    from nilearn.masking import compute_epi_mask  # imported here: only a fit needs it
    from scipy.ndimage import binary_dilation

    mean = np.asarray(mean, dtype=np.float32)
    if mean.ndim != 3:
        raise DataError(f"a mean EPI must be (x, y, z), found shape {mean.shape}")
    if not np.isfinite(mean).all() or float(np.ptp(mean)) <= 0:
        raise DataError(
            f"mean EPI of shape {mean.shape} is constant or not finite: no brain to find"
        )
    image = nib.Nifti1Image(mean, np.eye(4) if affine is None else np.asarray(affine, float))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nilearn warns about its own defaults changing
        try:
            mask = np.asarray(compute_epi_mask(image).dataobj) > 0
        except ValueError as exc:  # nilearn's own complaint about the histogram
            raise DataError(
                f"no brain found in the mean EPI of shape {mean.shape}: {exc}"
            ) from None
    if mask.any() and DILATION_VOXELS:
        mask = binary_dilation(mask, iterations=DILATION_VOXELS)
    channels = np.flatnonzero(np.ravel(mask, order="F"))
    if len(channels) == 0:
        raise DataError(
            f"no brain found in the mean EPI of shape {mean.shape} (nilearn's compute_epi_mask "
            "returned an empty mask): give a brain mask instead"
        )
    log.info("brain mask from the mean EPI: %d of %d voxels", len(channels), mean.size)
    return channels


def encoding_scores(
    features: np.ndarray,
    groups: np.ndarray,
    targets: Mapping[str, np.ndarray],
    alphas: np.ndarray,
    k: int = ENCODING_COMPONENTS,
    chunk: int = VOXEL_CHUNK,
    shuffle: np.random.Generator | None = None,
) -> dict[str, np.ndarray]:
    """Per head, ``(n_voxels,)`` leave-one-run-out CV R^2 of each voxel's trial estimates
    ``features (n, n_voxels)`` predicted from the head's ``targets (n, n_targets)`` (their
    first ``k`` principal components), the estimates centred per run (``groups (n,)``).

    ``shuffle``: pair the estimates with the targets of randomly permuted trials instead
    (the R^2 a voxel reaches by chance: :func:`chance_thresholds`).
    """
    x = np.array(features, dtype=np.float64)  # a copy, centred in place
    if x.ndim != 2 or x.shape[1] == 0:
        raise DataError(f"encoding needs (trials, voxels) estimates, found shape {x.shape}")
    if len(np.unique(groups)) < 2:
        raise DataError(
            f"choosing voxels needs at least 2 training runs (leave-one-run-out), found "
            f"{len(np.unique(groups))}"
        )
    for g in np.unique(groups):
        x[groups == g] -= x[groups == g].mean(axis=0)
    out = {}
    for head, y in targets.items():
        if len(y) != len(x):
            raise DataError(f"head {head!r}: {len(y)} targets for {len(x)} trial estimates")
        scores = target_scores(np.asarray(y).reshape(len(y), -1), k)
        if shuffle is not None:
            scores = scores[shuffle.permutation(len(scores))]
        r2 = np.empty(x.shape[1], dtype=np.float32)
        for start in range(0, x.shape[1], chunk):
            cols = slice(start, start + chunk)
            r2[cols] = ridge_cv_r2(scores, x[:, cols], groups, alphas)
        out[head] = r2
    return out


def chance_thresholds(
    features: np.ndarray,
    groups: np.ndarray,
    targets: Mapping[str, np.ndarray],
    alphas: np.ndarray,
    quantile: float = CHANCE_QUANTILE,
    seed: int = 0,
) -> dict[str, float]:
    """Per head, the ``quantile`` of the voxels' CV R^2 with the trials' targets permuted:
    a voxel above it is predicted better than all but ``1 - quantile`` of voxels by chance
    (each voxel one draw of the null distribution, so one permutation gives ``n_voxels``)."""
    rng = np.random.default_rng(seed)
    null = encoding_scores(features, groups, targets, alphas, shuffle=rng)
    return {head: float(np.quantile(r2, quantile)) for head, r2 in null.items()}


@dataclass
class HeadVoxels:
    """The voxels chosen for one head and how.

    Attributes:
        positions: sorted positions (columns of the estimates) kept.
        ranked: the head's candidates, best first (positions).
        report: what was tried and chosen (JSON-ready).
    """

    positions: np.ndarray
    ranked: np.ndarray
    report: dict[str, Any] = field(default_factory=dict)


def rank_candidates(
    scores: Mapping[str, np.ndarray], thresholds: Mapping[str, float] | None = None
) -> dict[str, np.ndarray]:
    """Per head, the positions of its candidate voxels, best first: the voxels whose CV
    R^2 is highest under this head's encoding model (winner takes all; ties to the first
    head) and above the head's threshold (default 0), ranked by that R^2."""
    heads = list(scores)
    stacked = np.stack([scores[h] for h in heads])  # (n_heads, n_voxels)
    winner = np.argmax(stacked, axis=0)
    out = {}
    for i, head in enumerate(heads):
        r2 = stacked[i]
        floor = max(0.0, (thresholds or {}).get(head, 0.0))
        mine = np.flatnonzero((winner == i) & (r2 > floor))
        out[head] = mine[np.argsort(-r2[mine], kind="stable")]
    return out


def count_options(n_candidates: int, ladder: Sequence[int] = COUNT_LADDER) -> list[int]:
    """The counts a head with ``n_candidates`` tries: the ladder's below it, and all."""
    return sorted({c for c in ladder if c < n_candidates} | {n_candidates})


def choose_head_voxels(
    scores: Mapping[str, np.ndarray],
    decoder_score: Callable[[str, np.ndarray], float],
    thresholds: Mapping[str, float] | None = None,
    ladder: Sequence[int] = COUNT_LADDER,
) -> dict[str, HeadVoxels]:
    """Each head's voxels: its candidates (:func:`rank_candidates`), the best ``n`` kept
    for the ``n`` (of :func:`count_options`) whose decoder scores best.

    Args:
        scores: per head, ``(n_voxels,)`` encoding CV R^2 (:func:`encoding_scores`).
        decoder_score: ``(head, sorted positions) -> the head's decoder CV score``.
        thresholds: per head, the R^2 a candidate must exceed (:func:`chance_thresholds`;
            default 0).
        ladder: the counts tried.

    A head with no voxel above its threshold keeps its ``ladder[0]`` voxels of highest
    R^2 (a warning says so: its decoder will be poor).
    """
    thresholds = dict(thresholds or {})
    ranked = rank_candidates(scores, thresholds)
    out = {}
    for head, candidates in ranked.items():
        r2 = scores[head]
        report: dict[str, Any] = {
            "n_candidates": len(candidates),
            "encoding_components": ENCODING_COMPONENTS,
            "chance_threshold_r2": float(max(0.0, thresholds.get(head, 0.0))),
            "brain_encoding_r2_median": float(np.median(r2)),
            "brain_positive_fraction": float(np.mean(r2 > 0)),
        }
        if len(candidates) == 0:
            candidates = np.argsort(-r2, kind="stable")[: ladder[0]]
            log.warning(
                "head %s: no voxel's activity is predicted from its targets above chance "
                "(cross-validated R2 above %.4f); keeping the %d best of %d",
                head, report["chance_threshold_r2"], len(candidates), len(r2),
            )  # fmt: skip
            report["fallback"] = f"no voxel above chance: the {len(candidates)} best kept"
        tried = {}
        for n in count_options(len(candidates), ladder):
            tried[n] = decoder_score(head, np.sort(candidates[:n]))
            log.info("head %s: %d voxels, decoder CV R2 %.4f", head, n, tried[n])
        best = max(tried, key=lambda n: tried[n])
        keep = np.sort(candidates[:best])
        kept_r2 = r2[keep]
        report.update(
            n_voxels=int(best),
            decoder_cv_r2_by_count={str(n): float(s) for n, s in tried.items()},
            encoding_r2={
                "median": float(np.median(kept_r2)),
                "mean": float(np.mean(kept_r2)),
                "min": float(np.min(kept_r2)),
                "max": float(np.max(kept_r2)),
            },
        )
        out[head] = HeadVoxels(keep, candidates, report)
    return out
