"""Fit linear decoders offline, with the same preprocessing the online decoder runs.

One sample per trial, as Takagi & Nishimoto fit on per-trial response
estimates: the feature of a trial is the HRF-window sum of preprocessed
volumes (the chain the bundle's :class:`~rt_recon.preprocess.PreprocessSpec`
builds and :class:`~rt_recon.decode.window.HrfWindow`, exactly the objects the
online decoder uses) at the trial's scored TR, ``lag`` TRs after its onset
(the protocol's trial rule, :func:`rt_recon.protocol.trial_samples`), where
the window holds the most of its response; the target is the ``z``/``c`` of
its picture.
The online decoder computes the same window sum every TR, so at each
trial's TR it produces exactly the estimate the decoders were fitted on.
Ridge regression with a penalty chosen per target by leave-one-run-out
cross-validation (:mod:`rt_recon.decode.ridge`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rt_recon.config import FitSection
from rt_recon.decode.bundle import DecoderBundle, DecoderHead, ModelSpec, StreamSpec, WindowSpec
from rt_recon.decode.features import FeatureExtractor
from rt_recon.decode.ridge import RidgeFit, ridge_cv
from rt_recon.decode.window import HrfWindow
from rt_recon.errors import DataError
from rt_recon.hrf import matched_window
from rt_recon.preprocess import PreprocessSpec
from rt_recon.protocol import Marker, is_trial_event, trial_samples

log = logging.getLogger(__name__)

#: Volumes averaged into the motion-correction reference.
_REFERENCE_VOLUMES = 5

#: Runs a fit needs: alphas are chosen by leave-one-run-out cross-validation.
MIN_RUNS = 2


@dataclass
class TrainingRun:
    """One run to fit on: ``volumes (n_trs, n_channels)`` in stream order, its events
    (BIDS rows: ``onset``/``duration`` in seconds from the run's start), its TR in seconds."""

    volumes: np.ndarray
    events: list[dict]
    tr_s: float


@dataclass
class Targets:
    """Target arrays per stimulus: ``ids (n,)`` and ``values[head] (n, *target_shape)``."""

    ids: np.ndarray
    values: Mapping[str, np.ndarray]

    def lookup(self, head: str, stimulus_ids: np.ndarray) -> np.ndarray:
        row_of = {int(s): i for i, s in enumerate(self.ids)}
        missing = sorted({int(s) for s in stimulus_ids} - row_of.keys())
        if missing:
            raise DataError(f"no {head!r} target for stimulus ids {missing[:10]}")
        rows = np.array([row_of[int(s)] for s in stimulus_ids])
        return self.values[head][rows].reshape(len(rows), -1)


def _fit_head(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    fit: FitSection,
    rank: int | None,
    target_shape: tuple[int, ...],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ridge for one head, full rank or on the targets' first ``rank`` principal components.

    Returns the :class:`DecoderHead` fields (less ``voxels``) and the report entry.
    For a low-rank head the CV R^2 is that of the component scores, and the
    report states the share of target variance the components keep.
    """
    alphas = np.asarray(fit.alphas)
    entry: dict[str, Any] = {"n_targets": int(y.shape[1]), "rank": rank}
    if rank is None:
        ridge = ridge_cv(x, y, groups, alphas)
        scale = _spread_scale(ridge, y, fit, entry)
        coef = ridge.coef * scale
        intercept = y.mean(axis=0) + scale * (ridge.intercept - y.mean(axis=0))
        head = {"weights": coef, "intercept": intercept.astype(np.float32), "components": None}
    else:
        if rank > min(y.shape):
            raise DataError(
                f"head {name!r}: rank {rank} exceeds what {y.shape[0]} samples of "
                f"{y.shape[1]} targets allow ({min(y.shape)})"
            )
        mean = y.mean(axis=0)
        _, s, vt = np.linalg.svd(y - mean, full_matrices=False)
        components = vt[:rank].astype(np.float32)
        scores = (y - mean) @ components.T
        ridge = ridge_cv(x, scores, groups, alphas)
        scale = _spread_scale(ridge, scores, fit, entry)  # scores have mean 0
        head = {
            "weights": ridge.coef * scale,
            "intercept": (mean + (ridge.intercept * scale) @ components).astype(np.float32),
            "components": components,
        }
        entry["target_variance_kept"] = float(np.sum(s[:rank] ** 2) / np.sum(s**2))
    entry["cv_r2_mean"] = float(ridge.cv_r2.mean())
    entry["cv_r2_median"] = float(np.median(ridge.cv_r2))
    entry["alphas_chosen"] = {f"{a:g}": int(np.sum(ridge.alphas == np.float32(a))) for a in alphas}
    head.update(name=name, alphas=ridge.alphas, target_shape=tuple(target_shape))
    return head, entry


_MAX_SCALE = 10.0


def _spread_scale(ridge: RidgeFit, y: np.ndarray, fit: FitSection, entry: dict) -> np.ndarray:
    """Per-output factor restoring the targets' spread to ridge's shrunk predictions.

    Ridge predictions cluster near the mean; a diffusion model conditioned on
    near-mean embeddings renders an average picture. As Brain-Diffuser
    (Ozcelik & VanRullen 2023) does, each output is stretched around its
    training mean by ``std(targets) / std(out-of-fold predictions)``: only
    outputs with positive CV R^2 (stretching noise adds noise), at most 10x.
    """
    if not fit.rescale_predictions:
        return np.ones(y.shape[1], dtype=np.float32)
    target_std = y.std(axis=0)
    usable = (ridge.cv_r2 > 0) & (ridge.cv_prediction_std > 1e-8)
    scale = np.ones(y.shape[1])
    scale[usable] = np.minimum(target_std[usable] / ridge.cv_prediction_std[usable], _MAX_SCALE)
    entry["rescaled_outputs"] = int(usable.sum())
    entry["median_scale"] = float(np.median(scale[usable])) if usable.any() else 1.0
    return scale.astype(np.float32)


def feature_series(
    volumes: np.ndarray,
    voxels: np.ndarray,
    spec: PreprocessSpec,
    hrf_weights: np.ndarray,
    shape: tuple[int, int, int] | None = None,
    affine: np.ndarray | None = None,
    reference: np.ndarray | None = None,
) -> np.ndarray:
    """``(n_trs, n_channels)`` run -> ``(n_trs, n_selected)`` HRF-window features, TR by TR.

    ``spec`` is the bundle's preprocessing spec; the preprocessing is the
    online decoder's own :class:`~rt_recon.decode.features.FeatureExtractor`
    (``shape``/``affine`` of the volumes, default a flat ``(n_channels, 1, 1)``
    grid; ``reference`` for motion correction).
    """
    shape = (volumes.shape[1], 1, 1) if shape is None else shape
    affine = np.eye(4) if affine is None else affine
    extractor = FeatureExtractor(spec, voxels, shape, affine, reference)
    window = HrfWindow(hrf_weights, dim=len(voxels))
    out = np.empty((len(volumes), len(voxels)), dtype=np.float32)
    for t, volume in enumerate(volumes):
        out[t] = window.update(extractor.update(volume))
    return out


def fit_decoders(
    runs: Sequence[TrainingRun],
    head_voxels: Mapping[str, np.ndarray],
    targets: Targets,
    target_shapes: Mapping[str, tuple[int, ...]],
    fit: FitSection,
    stream: StreamSpec,
    model: ModelSpec,
    progress: Callable[[int, int], None] | None = None,
) -> DecoderBundle:
    """Fit one ridge head per entry of ``head_voxels`` and return the bundle.

    ``progress(done, total)`` is called after each run's preprocessing and after
    each head's fit (``total`` = runs + heads).
    """
    if len(runs) < MIN_RUNS:
        raise DataError(
            f"fitting needs at least {MIN_RUNS} runs for cross-validation, found {len(runs)}"
        )
    warmup = fit.zscore_warmup_trs
    shape, affine = stream.shape, stream.affine
    reference = None
    if fit.motion_correction and affine is not None and min(shape) > 1:
        # the realignment target: the mean of the first training run's first volumes
        reference = runs[0].volumes[:_REFERENCE_VOLUMES].mean(axis=0).reshape(shape, order="F")
    tr_s = runs[0].tr_s
    spec = PreprocessSpec.from_fit(fit, affine if reference is not None else None, tr_s)
    trials = [m for r in runs for e in r.events if is_trial_event(m := Marker.from_json(e))]
    if not trials:
        raise DataError("the training runs have no trial events (events with a stimulus_id)")
    durations = [m.duration or 0.0 for m in trials]
    weights, lag = matched_window(tr_s, float(np.median(durations)), fit.hrf_window_trs)
    voxels = np.unique(np.concatenate(list(head_voxels.values())))
    features, groups, ids = [], [], []
    for r, run in enumerate(runs):
        if abs(run.tr_s - tr_s) > 1e-6:
            raise DataError(
                f"all runs must share one TR: run 0 has {tr_s} s, run {r} has {run.tr_s} s"
            )
        samples = [
            s for s in trial_samples(run.events, len(run.volumes), tr_s, lag) if s[0] >= warmup
        ]
        if not samples:
            raise DataError(f"run {r} has no trial whose response window ends inside the run")
        rows = np.array([t for t, _ in samples])
        series = feature_series(run.volumes, voxels, spec, weights, shape, stream.affine, reference)
        features.append(series[rows])
        ids.append(np.array([sid for _, sid in samples]))
        groups.append(np.full(len(samples), r))
        if progress is not None:
            progress(r + 1, len(runs) + len(head_voxels))
    x_all, id_all, group_all = np.concatenate(features), np.concatenate(ids), np.concatenate(groups)
    heads, report = {}, {"n_samples": len(x_all), "lag_trs": lag, "heads": {}}
    for name, head_vox in head_voxels.items():
        local = np.searchsorted(voxels, head_vox)
        y = targets.lookup(name, id_all).astype(np.float32)
        head, entry = _fit_head(
            name, x_all[:, local], y, group_all, fit, fit.low_rank.get(name), target_shapes[name]
        )
        heads[name] = DecoderHead(voxels=np.asarray(head_vox, dtype=np.int64), **head)
        report["heads"][name] = {"n_voxels": len(head_vox), **entry}
        if progress is not None:
            progress(len(runs) + len(report["heads"]), len(runs) + len(head_voxels))
        log.info(
            "head %s: %d voxels -> %d targets (rank %s), CV R2 mean %.3f",
            name, len(head_vox), y.shape[1], entry["rank"], entry["cv_r2_mean"],
        )  # fmt: skip
    return DecoderBundle(
        heads=heads,
        stream=stream,
        preprocess=spec,
        window=WindowSpec(tuple(float(w) for w in weights), lag, tr_s),
        model=model,
        report=report,
        reference=None if reference is None else reference.astype(np.float32),
    )
