"""Fit linear decoders offline, with the same preprocessing the online decoder runs.

One sample per trial, as Takagi & Nishimoto fit on per-trial response
estimates. The training runs are preprocessed once (the chain the bundle's
:class:`~rt_recon.preprocess.PreprocessSpec` builds, run by
:class:`~rt_recon.decode.features.FeatureExtractor`, exactly the object the
online decoder uses): :func:`extract_runs`. Then, as the bundle's
:class:`~rt_recon.decode.recipe.DecoderRecipe` says (:func:`plan_decoders`):
noise components from a pool of voxels outside the ROIs are removed
(:mod:`rt_recon.decode.denoise`), each voxel gets the canonical HRF or the
library HRF that fits it (:mod:`rt_recon.decode.hrf_library`), and each ROI
keeps its voxels or the ones that encode the targets best
(:mod:`rt_recon.decode.select`). A trial's feature is its estimate at its
scored TR, ``lag`` TRs after its onset (the protocol's trial rule,
:func:`rt_recon.protocol.trial_samples`), by
:class:`~rt_recon.decode.trial_estimate.TrialEstimator` (a matched-filter
window, today's default, or least squares on the window): the object the
online decoder calls every TR, so at each trial's TR it produces exactly the
estimate the decoders were fitted on. The target is the ``z``/``c`` of its
picture. Ridge regression with a penalty chosen per target by
leave-one-run-out cross-validation (:mod:`rt_recon.decode.ridge`).

A participant without ROI masks: a head given None instead of channels gets
voxels chosen from a brain mask (given, or the training runs' mean EPI's) by
cross-validated encoding (:func:`choose_voxels`, :mod:`rt_recon.decode.auto_roi`).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rt_recon.config import FitSection
from rt_recon.decode import auto_roi, hrf_library
from rt_recon.decode import confidence as conf
from rt_recon.decode.bundle import DecoderBundle, DecoderHead, ModelSpec, StreamSpec, WindowSpec
from rt_recon.decode.caption_bank import CaptionBank
from rt_recon.decode.denoise import Denoiser, NoiseModel, fit_noise_model
from rt_recon.decode.features import FeatureExtractor
from rt_recon.decode.recipe import AUTO_FRACTIONS, DecoderRecipe
from rt_recon.decode.ridge import RidgeFit, ridge_cv, ridge_cv_r2, ridge_cv_r2_designs
from rt_recon.decode.select import encoding_r2, select_voxels, target_scores
from rt_recon.decode.trial_estimate import TemporalModel, TrialEstimator, matched_weights
from rt_recon.decode.window import HrfWindow
from rt_recon.errors import DataError
from rt_recon.hrf import matched_window
from rt_recon.preprocess import GlmSpec, PreprocessSpec, TrQuality
from rt_recon.protocol import Marker, is_trial_event, onset_tr_from_seconds, trial_samples

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


@dataclass
class ExtractedRuns:
    """Training runs preprocessed once: every TR's features of ``voxels``, and their trials.

    Attributes:
        voxels: ``(n_voxels,)`` the channels extracted (ascending).
        series: per run, ``(n_trs, n_voxels)`` float32 preprocessed features.
        onsets: per run, every trial's onset TR; trial_ids: their stimulus ids.
        samples: per run, ``(scored TR, stimulus id)`` of the trials fitted on (after the
            warm-up).
        spec, reference: the preprocessing (and its motion-correction reference).
        tr_s: the TR; duration_s: the trials' median duration; lag: TRs from onset to the
            scored TR; hrf_weights: today's matched window; warmup: TRs of z-score warm-up.
        shape: the ``(x, y, z)`` grid the channels index (Fortran order); affine: the
            runs' RAS+ affine.
        realigned: per run, ``(n_trs, n_voxels)`` float32 values before the temporal stages
            (realigned, not yet despiked, detrended or z-scored); params: per run,
            ``(n_trs, 6)`` motion parameters (None without motion correction). A narrower
            set of voxels is preprocessed from these (:func:`narrow_runs`).
    """

    voxels: np.ndarray
    series: list[np.ndarray]
    onsets: list[list[int]]
    trial_ids: list[np.ndarray]
    samples: list[list[tuple[int, int]]]
    spec: PreprocessSpec
    reference: np.ndarray | None
    tr_s: float
    duration_s: float
    lag: int
    hrf_weights: np.ndarray
    warmup: int
    shape: tuple[int, int, int]
    affine: np.ndarray | None
    realigned: list[np.ndarray]
    params: list[np.ndarray] | None

    @property
    def sample_ids(self) -> np.ndarray:
        """Stimulus id of every sample, runs concatenated."""
        return np.concatenate([[sid for _, sid in samples] for samples in self.samples])

    @property
    def sample_runs(self) -> np.ndarray:
        """Run index of every sample (the cross-validation groups)."""
        return np.concatenate([np.full(len(s), r) for r, s in enumerate(self.samples)])

    def columns(self, voxels: np.ndarray) -> np.ndarray:
        """Positions of ``voxels`` among the extracted ones (DataError if one is missing)."""
        local = np.searchsorted(self.voxels, voxels)
        local = np.minimum(local, len(self.voxels) - 1)
        if len(voxels) and not np.array_equal(self.voxels[local], voxels):
            raise DataError("voxels asked for were not extracted from the training runs")
        return local


def extract_runs(
    runs: Sequence[TrainingRun],
    voxels: np.ndarray,
    fit: FitSection,
    stream: StreamSpec,
    progress: Callable[[int], None] | None = None,
    reference: np.ndarray | None = None,
) -> ExtractedRuns:
    """Preprocess every training run's volumes into ``voxels``' features, TR by TR.

    ``progress(run_done)`` after each run. ``reference``: the motion-correction
    reference (default: the mean of the first training run's first volumes).
    """
    if len(runs) < MIN_RUNS:
        raise DataError(
            f"fitting needs at least {MIN_RUNS} runs for cross-validation, found {len(runs)}"
        )
    voxels = np.unique(np.asarray(voxels, dtype=np.int64))
    warmup = fit.zscore_warmup_trs
    shape, affine = stream.shape, stream.affine
    if reference is None and fit.motion_correction and affine is not None and min(shape) > 1:
        # the realignment target: the mean of the first training run's first volumes
        reference = runs[0].volumes[:_REFERENCE_VOLUMES].mean(axis=0).reshape(shape, order="F")
    tr_s = runs[0].tr_s
    spec = PreprocessSpec.from_fit(fit, affine if reference is not None else None, tr_s)
    trials = [m for r in runs for e in r.events if is_trial_event(m := Marker.from_json(e))]
    if not trials:
        raise DataError("the training runs have no trial events (events with a stimulus_id)")
    duration = float(np.median([m.duration or 0.0 for m in trials]))
    weights, lag = matched_window(tr_s, duration, fit.hrf_window_trs)
    series, onsets, trial_ids, samples, realigned, motion = [], [], [], [], [], []
    for r, run in enumerate(runs):
        if abs(run.tr_s - tr_s) > 1e-6:
            raise DataError(
                f"all runs must share one TR: run 0 has {tr_s} s, run {r} has {run.tr_s} s"
            )
        kept = [s for s in trial_samples(run.events, len(run.volumes), tr_s, lag) if s[0] >= warmup]
        if not kept:
            raise DataError(f"run {r} has no trial whose response window ends inside the run")
        extractor = FeatureExtractor(spec, voxels, shape, affine, reference)
        out = np.empty((len(run.volumes), len(voxels)), dtype=np.float32)
        raw = np.empty_like(out)
        params = np.zeros((len(run.volumes), 6))
        for t, volume in enumerate(run.volumes):
            raw[t], quality = extractor.realign(volume)
            if quality.params is not None:
                params[t] = quality.params
            out[t] = extractor.update_realigned(raw[t], quality)
        series.append(out)
        realigned.append(raw)
        motion.append(params)
        run_trials = [m for e in run.events if is_trial_event(m := Marker.from_json(e))]
        onsets.append([onset_tr_from_seconds(m.onset, tr_s) for m in run_trials])  # type: ignore[arg-type]
        trial_ids.append(np.array([int(m.stimulus_id) for m in run_trials]))  # type: ignore[arg-type]
        samples.append(kept)
        if progress is not None:
            progress(r + 1)
    return ExtractedRuns(
        voxels,
        series,
        onsets,
        trial_ids,
        samples,
        spec,
        reference,
        tr_s,
        duration,
        lag,
        weights,
        warmup,
        tuple(int(s) for s in shape),  # type: ignore[arg-type]
        None if affine is None else np.asarray(affine),
        realigned,
        motion if spec.motion is not None else None,
    )


def narrow_runs(extracted: ExtractedRuns, voxels: np.ndarray) -> ExtractedRuns:
    """``extracted`` as :func:`extract_runs` gives it for ``voxels`` (a subset of its own),
    without a second pass over the volumes: the subset's columns of the realigned values
    pass through fresh temporal stages (despiking judges the subset's own spread, as the
    online decoder reading only these voxels does), with each TR's motion parameters.
    """
    voxels = np.unique(np.asarray(voxels, dtype=np.int64))
    cols = extracted.columns(voxels)
    affine = np.eye(4) if extracted.affine is None else extracted.affine
    series, realigned = [], []
    for r, raw in enumerate(extracted.realigned):
        chain = FeatureExtractor(
            extracted.spec, voxels, extracted.shape, affine, extracted.reference
        ).chain
        narrow = np.ascontiguousarray(raw[:, cols])
        out = np.empty_like(narrow)
        for t, values in enumerate(narrow):
            params = None if extracted.params is None else extracted.params[r][t]
            out[t] = chain.update_realigned(values, TrQuality(index=t, params=params))
        series.append(out)
        realigned.append(narrow)
    return dataclasses.replace(extracted, voxels=voxels, series=series, realigned=realigned)


@dataclass
class DecoderPlan:
    """What a recipe decided on the training runs, before any ridge.

    Attributes:
        recipe: the recipe.
        head_voxels: each head's channels (after selection).
        decoded: ``(n_decoded,)`` the union of the heads' channels (ascending).
        temporal: the trial estimator's weights over ``decoded``.
        noise: the noise model over ``decoded`` (None: no denoising).
        window: the bundle's window spec (lag, matched weights of the canonical HRF).
        report: what each step chose.
    """

    recipe: DecoderRecipe
    head_voxels: dict[str, np.ndarray]
    decoded: np.ndarray
    temporal: TemporalModel
    noise: NoiseModel | None
    window: WindowSpec
    report: dict[str, Any]

    @property
    def extract_voxels(self) -> np.ndarray:
        """The channels the feature extractor must output: decoded voxels and noise pool."""
        pool = self.noise.pool if self.noise is not None else np.zeros(0, np.int64)
        return np.union1d(self.decoded, pool)


def _period_trs(onsets: Sequence[Sequence[int]]) -> int:
    gaps = [b - a for run in onsets for a, b in itertools.pairwise(run) if b > a]
    return max(1, round(float(np.median(gaps)))) if gaps else 1


def _trial_features(
    series: np.ndarray,
    estimator: TrialEstimator,
    samples: Sequence[tuple[int, int]],
    lag: int,
    onsets: Sequence[int],
) -> np.ndarray:
    """``(n_samples, n_voxels)``: each trial's estimate at its scored TR."""

    def features_at(t: int) -> np.ndarray | None:
        return series[t] if 0 <= t < len(series) else None

    return np.stack([estimator.estimate(features_at, t, t - lag, onsets) for t, _ in samples])


def preprocessed_regressors(regressors: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """``(n_trs, n)`` regressors passed TR by TR through the preprocessing's temporal stages
    (detrending and the running z-score, as the voxels' time series were), so that a model
    fitted to the features sees its regressors distorted as the signal was (the running
    mean alone moves a response's apparent peak earlier by about half a second)."""
    detrend = spec.detrend
    if isinstance(detrend, GlmSpec) and detrend.motion:
        detrend = GlmSpec(degree=detrend.degree, motion=False)  # no motion in a regressor
    temporal = PreprocessSpec(spec.zscore_warmup_trs, None, None, detrend)
    n = regressors.shape[1]
    chain = temporal.build(np.arange(n), (n, 1, 1), np.eye(4))
    return np.stack([chain.update(row) for row in regressors.astype(np.float32)])


def _hrf_scores(
    series: Sequence[np.ndarray],
    extracted: ExtractedRuns,
    heads: Mapping[str, np.ndarray],
    decoded: np.ndarray,
    targets: Targets,
    fit: FitSection,
    library: np.ndarray,
) -> np.ndarray:
    """``(K, n_decoded)`` cross-validated R^2 of each voxel's time series under each library
    member's encoding model (the best over the heads that read the voxel)."""
    first = extracted.warmup
    groups = np.concatenate([np.full(len(s) - first, r) for r, s in enumerate(series)])
    scores = np.full((len(library), len(decoded)), -np.inf)
    for name, vox in heads.items():
        cols = np.searchsorted(decoded, vox)
        every = np.concatenate(extracted.trial_ids)
        pcs = target_scores(targets.lookup(name, every))
        per_run = np.split(pcs, np.cumsum([len(i) for i in extracted.trial_ids])[:-1])
        y = np.concatenate([s[first:, cols] for s in series])
        # every member's regressors side by side: the temporal preprocessing is per column,
        # so one pass over each run's TRs serves the whole library
        x_all = np.concatenate(
            [
                preprocessed_regressors(
                    np.hstack([hrf_library.encoding_design(r, onsets, p, len(s)) for r in library]),
                    extracted.spec,
                )[first:]
                for s, onsets, p in zip(series, extracted.onsets, per_run, strict=True)
            ]
        )
        designs = np.split(x_all, len(library), axis=1)
        r2 = ridge_cv_r2_designs(designs, y, groups, np.asarray(fit.alphas))
        scores[:, cols] = np.maximum(scores[:, cols], r2)
    return scores


def _all_trial_features(
    series: Sequence[np.ndarray], estimator: TrialEstimator, extracted: ExtractedRuns
) -> np.ndarray:
    """Every training trial's estimate, runs concatenated: ``(n_samples, n_voxels)``."""
    return np.concatenate(
        [
            _trial_features(s, estimator, samples, extracted.lag, onsets)
            for s, samples, onsets in zip(series, extracted.samples, extracted.onsets, strict=True)
        ]
    )


def _low_rank_scores(y: np.ndarray, rank: int | None) -> np.ndarray:
    if rank is None or rank >= min(y.shape):
        return y
    centred = y - y.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:rank].T


def plan_decoders(
    extracted: ExtractedRuns,
    head_voxels: Mapping[str, np.ndarray],
    targets: Targets,
    fit: FitSection,
    recipe: DecoderRecipe,
    noise_candidates: np.ndarray | None = None,
) -> DecoderPlan:
    """Noise model, HRF groups and voxel selection of ``recipe`` on the extracted runs,
    in that order (each step sees the features the previous one leaves)."""
    heads = {h: np.unique(np.asarray(v, dtype=np.int64)) for h, v in head_voxels.items()}
    decoded = np.unique(np.concatenate(list(heads.values())))
    report: dict[str, Any] = {"recipe": recipe.to_json(), "recipe_name": recipe.name}
    series = [s[:, extracted.columns(decoded)] for s in extracted.series]
    noise = None
    if recipe.denoise_pcs:
        noise, report["denoise"] = _noise_step(extracted, series, decoded, recipe, noise_candidates)
        denoiser = Denoiser(noise, extracted.voxels, decoded)
        series = [denoiser.apply(s) for s in extracted.series]
    temporal, report_hrf = _temporal_step(extracted, series, heads, decoded, targets, fit, recipe)
    if report_hrf:
        report["hrf"] = report_hrf
    if recipe.select_voxels is not None:
        report["select"] = {}
        x_all = _all_trial_features(series, TrialEstimator(temporal, len(decoded)), extracted)
        for name, vox in heads.items():
            y = targets.lookup(name, extracted.sample_ids).astype(np.float64)
            x = x_all[:, np.searchsorted(decoded, vox)]
            keep, report["select"][name] = _select_step(
                x, y, extracted.sample_runs, fit, recipe, name
            )
            heads[name] = vox[keep]
        kept = np.unique(np.concatenate(list(heads.values())))
        cols = np.searchsorted(decoded, kept)
        decoded = kept
        if temporal.voxel_group is not None:
            temporal.voxel_group = temporal.voxel_group[cols]
        if noise is not None:
            noise = NoiseModel(noise.pool, noise.components, noise.weights[:, cols])
    canonical = hrf_library.responses(
        [hrf_library.CANONICAL_PEAK_S], extracted.duration_s, extracted.tr_s
    )
    weights = (
        temporal.window_weights[0]
        if recipe.hrf == "canonical"
        else matched_weights(canonical, extracted.lag, temporal.n_window)[0]
    )
    window = WindowSpec(tuple(float(w) for w in weights), extracted.lag, extracted.tr_s)
    return DecoderPlan(recipe, heads, decoded, temporal, noise, window, report)


def _noise_step(
    extracted: ExtractedRuns,
    series: Sequence[np.ndarray],
    decoded: np.ndarray,
    recipe: DecoderRecipe,
    noise_candidates: np.ndarray | None,
) -> tuple[NoiseModel, dict]:
    if noise_candidates is None or len(noise_candidates) == 0:
        raise DataError(
            f"recipe {recipe.name!r} removes noise components but no noise-pool "
            "candidates (voxels outside the ROIs) were given"
        )
    candidates = np.setdiff1d(np.asarray(noise_candidates, dtype=np.int64), decoded)
    cols = extracted.columns(candidates)
    canonical = hrf_library.responses(
        [hrf_library.CANONICAL_PEAK_S], extracted.duration_s, extracted.tr_s
    )
    runs = [
        (s[:, cols], x, o)
        for s, x, o in zip(extracted.series, series, extracted.onsets, strict=True)
    ]
    return fit_noise_model(
        runs, candidates, canonical[0], recipe.denoise_pcs, recipe.pool_size, extracted.warmup
    )


def _temporal_step(
    extracted: ExtractedRuns,
    series: Sequence[np.ndarray],
    heads: Mapping[str, np.ndarray],
    decoded: np.ndarray,
    targets: Targets,
    fit: FitSection,
    recipe: DecoderRecipe,
) -> tuple[TemporalModel, dict]:
    """The trial estimator: its mode and window, and each voxel's HRF."""
    lag, tr_s = extracted.lag, extracted.tr_s
    n_window = fit.hrf_window_trs if recipe.trial_estimate == "window" else recipe.lss_window_trs
    period = _period_trs(extracted.onsets)
    report: dict[str, Any] = {}
    voxel_group = None
    if recipe.hrf == "library":
        library = hrf_library.responses(hrf_library.LIBRARY_PEAKS_S, extracted.duration_s, tr_s)
        scores = _hrf_scores(series, extracted, heads, decoded, targets, fit, library)
        coords = np.column_stack(np.unravel_index(decoded, extracted.shape, order="F"))
        choice = hrf_library.choose(scores, coords)
        used, voxel_group = np.unique(choice, return_inverse=True)
        responses = library[used]
        peaks = tuple(hrf_library.LIBRARY_PEAKS_S[i] for i in used)
        report = {
            "library_peaks_s": list(hrf_library.LIBRARY_PEAKS_S),
            "voxels_per_peak": {
                f"{p:g}": int(np.sum(choice == i)) for p, i in zip(peaks, used, strict=True)
            },
            "median_peak_s": float(np.median(np.asarray(hrf_library.LIBRARY_PEAKS_S)[choice])),
        }
    else:
        peaks = (hrf_library.CANONICAL_PEAK_S,)
        responses = hrf_library.responses(peaks, extracted.duration_s, tr_s)
    if recipe.hrf == "canonical" and n_window == len(extracted.hrf_weights):
        window_weights = np.asarray(extracted.hrf_weights)[None, :]  # today's, exactly
    else:
        window_weights = matched_weights(responses, lag, n_window)
    temporal = TemporalModel(
        mode=recipe.trial_estimate,
        lag_trs=lag,
        n_window=n_window,
        window_weights=window_weights,
        responses=responses,
        voxel_group=voxel_group,
        period_trs=period,
        peaks_s=peaks,
    )
    return temporal, report


def _select_step(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    fit: FitSection,
    recipe: DecoderRecipe,
    head: str,
) -> tuple[np.ndarray, dict]:
    """Positions of a head's voxels to keep (columns of ``x``, its trial estimates)."""
    alphas = np.asarray(fit.alphas)
    r2 = encoding_r2(x, y, groups, alphas)
    y_fit = _low_rank_scores(y, fit.low_rank.get(head))

    def score(keep: np.ndarray) -> float:
        return float(ridge_cv_r2(x[:, keep], y_fit, groups, alphas).mean())

    return select_voxels(r2, recipe.select_voxels, score, AUTO_FRACTIONS)  # type: ignore[arg-type]


def trial_features(
    extracted: ExtractedRuns, plan: DecoderPlan
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the ridge heads are fitted on: every trial's estimate at its scored TR.

    Returns:
        ``(features (n_samples, n_decoded), stimulus ids (n_samples,), run (n_samples,))``,
        with the columns in ``plan.decoded`` order.
    """
    denoiser = Denoiser(plan.noise, extracted.voxels, plan.decoded)
    estimator = TrialEstimator(plan.temporal, len(plan.decoded))
    features, ids, groups = [], [], []
    for r, (series, samples, onsets) in enumerate(
        zip(extracted.series, extracted.samples, extracted.onsets, strict=True)
    ):
        clean = denoiser.apply(series)
        features.append(_trial_features(clean, estimator, samples, plan.temporal.lag_trs, onsets))
        ids.append(np.array([sid for _, sid in samples]))
        groups.append(np.full(len(samples), r))
    return np.concatenate(features), np.concatenate(ids), np.concatenate(groups)


def fit_confidence_null(
    extracted: ExtractedRuns,
    plan: DecoderPlan,
    heads: Mapping[str, DecoderHead],
    n_shifts: int = conf.N_SHIFTS,
    seed: int = conf.SEED,
    use: Sequence[str] = conf.DEFAULT_USE,
) -> conf.ConfidenceModel:
    """The per-TR confidence's null (:mod:`rt_recon.decode.confidence`) on the training runs:
    ``n_shifts`` times per run, each decoded voxel's denoised features shifted circularly by
    its own random offset (at least the trial window's reach, ``lag + n_window`` TRs, after
    the warm-up), every trial estimated at its scored TR as the fit does, and projected
    through ``heads``. The heads and their latents are not changed."""
    denoiser = Denoiser(plan.noise, extracted.voxels, plan.decoded)
    estimator = TrialEstimator(plan.temporal, len(plan.decoded))
    reach = plan.temporal.lag_trs + plan.temporal.n_window
    rng = np.random.default_rng(seed)
    estimates = []
    for series, samples, onsets in zip(
        extracted.series, extracted.samples, extracted.onsets, strict=True
    ):
        clean = denoiser.apply(series)
        for _ in range(n_shifts):
            shifted = conf.circular_shift_voxels(clean, rng, reach, extracted.warmup)
            estimates.append(
                _trial_features(shifted, estimator, samples, plan.temporal.lag_trs, onsets)
            )
    x = np.concatenate(estimates)
    latents = {
        name: head.predict(x[:, np.searchsorted(plan.decoded, head.voxels)])
        for name, head in heads.items()
    }
    report = {"method": conf.METHOD, "n_shifts": n_shifts, "seed": seed,
              "min_shift_trs": reach, "n_null": len(x)}  # fmt: skip
    return conf.fit_confidence(
        latents, {name: head.intercept for name, head in heads.items()}, use, report
    )


def fit_planned(
    extracted: ExtractedRuns,
    plan: DecoderPlan,
    targets: Targets,
    target_shapes: Mapping[str, tuple[int, ...]],
    fit: FitSection,
    stream: StreamSpec,
    model: ModelSpec,
    progress: Callable[[int], None] | None = None,
) -> DecoderBundle:
    """Ridge heads on the trial estimates the plan defines; the bundle.

    ``progress(heads_done)`` after each head.
    """
    x_all, id_all, group_all = trial_features(extracted, plan)
    heads, report = {}, {"n_samples": len(x_all), "lag_trs": plan.temporal.lag_trs, "heads": {}}
    report.update(plan.report)
    for name, head_vox in plan.head_voxels.items():
        local = np.searchsorted(plan.decoded, head_vox)
        y = targets.lookup(name, id_all).astype(np.float32)
        head, entry = _fit_head(
            name, x_all[:, local], y, group_all, fit, fit.low_rank.get(name), target_shapes[name]
        )
        heads[name] = DecoderHead(voxels=np.asarray(head_vox, dtype=np.int64), **head)
        report["heads"][name] = {"n_voxels": len(head_vox), **entry}
        if progress is not None:
            progress(len(report["heads"]))
        log.info(
            "head %s: %d voxels -> %d targets (rank %s), CV R2 mean %.3f",
            name, len(head_vox), y.shape[1], entry["rank"], entry["cv_r2_mean"],
        )  # fmt: skip
    confidence = fit_confidence_null(extracted, plan, heads)
    report["confidence"] = {**confidence.report, "use": list(confidence.use)}
    return DecoderBundle(
        heads=heads,
        stream=stream,
        preprocess=extracted.spec,
        window=plan.window,
        model=model,
        report=report,
        reference=None if extracted.reference is None else extracted.reference.astype(np.float32),
        recipe=plan.recipe,
        temporal=plan.temporal,
        noise=plan.noise,
        confidence=confidence,
    )


def pool_candidates(
    candidates: np.ndarray, head_voxels: Mapping[str, np.ndarray], n: int
) -> np.ndarray:
    """At most ``n`` noise-pool candidates outside the heads' voxels, evenly spread."""
    outside = np.setdiff1d(
        np.asarray(candidates, dtype=np.int64), np.concatenate(list(head_voxels.values()))
    )
    if len(outside) <= n:
        return outside
    return outside[np.linspace(0, len(outside) - 1, n).round().astype(np.int64)]


#: Pool candidates extracted per pool voxel kept (the pool is the least task-driven of them).
POOL_CANDIDATES_PER_VOXEL = 2


@dataclass
class VoxelChoice:
    """Each head's channels and how they were chosen (:func:`choose_voxels`).

    Attributes:
        head_voxels: per head, ``(n,)`` sorted channels.
        brain: ``(n_brain,)`` the brain mask's channels the automatic heads chose from.
        report: ``{"brain": ..., "heads": {head: ...}}`` (JSON-ready).
        extracted: the runs preprocessed over ``brain`` to choose (None where every head
            was given): the fit narrows them to its voxels (:func:`narrow_runs`).
    """

    head_voxels: dict[str, np.ndarray]
    brain: np.ndarray
    report: dict[str, Any]
    extracted: ExtractedRuns | None = None


def choose_voxels(
    runs: Sequence[TrainingRun],
    head_voxels: Mapping[str, np.ndarray | None],
    targets: Targets,
    fit: FitSection,
    stream: StreamSpec,
    brain: np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
) -> VoxelChoice:
    """Voxels for every head given None in ``head_voxels``, chosen from ``brain`` by
    cross-validated encoding on the training runs (:mod:`rt_recon.decode.auto_roi`).

    ``brain``: the brain mask's channels; None computes it from the runs' mean EPI
    (full volumes of ``stream.shape`` needed). Every brain voxel is preprocessed as the
    fit preprocesses (``progress(run_done)`` after each run), each trial estimated with
    the canonical matched filter, and the heads' voxels chosen by
    :func:`~rt_recon.decode.auto_roi.choose_head_voxels`, the count by the decoder's
    leave-one-run-out CV R^2 (on the head's low-rank scores where ``fit.low_rank`` says).
    Heads given channels keep them.
    """
    if len(runs) < MIN_RUNS:
        raise DataError(
            f"choosing voxels needs at least {MIN_RUNS} training runs for leave-one-run-out "
            f"cross-validation, found {len(runs)}"
        )
    auto = [h for h, v in head_voxels.items() if v is None]
    if brain is None:
        mean = auto_roi.mean_epi([r.volumes for r in runs], stream.shape)
        brain = auto_roi.epi_brain_mask(mean, stream.affine)
        source = "mean EPI of the training runs (nilearn compute_epi_mask)"
    else:
        source = "given"
    brain = np.unique(np.asarray(brain, dtype=np.int64))
    if len(brain) == 0:
        raise DataError(
            f"heads {auto} have no voxels given and the brain mask to choose them from is "
            "empty: give a brain mask with voxels, or each head's voxels"
        )
    if brain[0] < 0 or brain[-1] >= stream.n_channels:
        raise DataError(
            f"brain mask channels must be in 0..{stream.n_channels - 1} (the stream's "
            f"{stream.n_channels} voxels), found {brain[0]}..{brain[-1]}"
        )
    report: dict[str, Any] = {"brain": {"source": source, "n_voxels": len(brain)}, "heads": {}}
    chosen = {
        h: np.unique(np.asarray(v, dtype=np.int64)) for h, v in head_voxels.items() if v is not None
    }
    for head, vox in chosen.items():
        report["heads"][head] = {"method": "given", "n_voxels": len(vox)}
    if not auto:
        return VoxelChoice(chosen, brain, report)
    extracted = extract_runs(runs, brain, fit, stream, progress)
    temporal, _ = _temporal_step(
        extracted, extracted.series, {}, extracted.voxels, targets, fit, DecoderRecipe()
    )
    x = _all_trial_features(
        extracted.series, TrialEstimator(temporal, len(extracted.voxels)), extracted
    )
    groups, ids = extracted.sample_runs, extracted.sample_ids
    alphas = np.asarray(fit.alphas)
    y = {h: targets.lookup(h, ids).astype(np.float64) for h in auto}
    scores = auto_roi.encoding_scores(x, groups, y, alphas)
    chance = auto_roi.chance_thresholds(x, groups, y, alphas)

    def decoder_score(head: str, keep: np.ndarray) -> float:
        y_fit = _low_rank_scores(y[head], fit.low_rank.get(head))
        return float(ridge_cv_r2(x[:, keep], y_fit, groups, alphas).mean())

    for head, result in auto_roi.choose_head_voxels(scores, decoder_score, chance).items():
        chosen[head] = extracted.voxels[result.positions]
        report["heads"][head] = {"method": auto_roi.METHOD, **result.report}
        log.info(
            "head %s: %d voxels chosen of %d brain voxels (%d candidates), encoding R2 "
            "median %.3f",
            head, len(result.positions), len(brain), len(result.ranked),
            result.report["encoding_r2"]["median"],
        )  # fmt: skip
    return VoxelChoice({h: chosen[h] for h in head_voxels}, brain, report, extracted)


def fit_decoders(
    runs: Sequence[TrainingRun],
    head_voxels: Mapping[str, np.ndarray | None],
    targets: Targets,
    target_shapes: Mapping[str, tuple[int, ...]],
    fit: FitSection,
    stream: StreamSpec,
    model: ModelSpec,
    progress: Callable[[int, int], None] | None = None,
    recipe: DecoderRecipe | None = None,
    noise_candidates: np.ndarray | None = None,
    brain: np.ndarray | None = None,
    caption_bank: CaptionBank | None = None,
) -> DecoderBundle:
    """Fit one ridge head per entry of ``head_voxels`` as ``recipe`` says; return the bundle.

    A recipe that snaps ``c`` needs ``caption_bank`` (the heads are fitted without it; it
    is attached to the bundle, :meth:`DecoderBundle.with_caption_bank`).

    A head given None instead of channels gets voxels chosen from ``brain`` (channels of
    a brain mask; None: the training runs' mean EPI's, :func:`choose_voxels`); the
    report's ``voxels`` entry says, per head, how its voxels were chosen, how many, and
    (chosen ones) their encoding CV R^2.
    ``noise_candidates``: channels the noise pool may come from (brain voxels outside the
    ROIs), needed when the recipe denoises (default with automatic heads: ``brain``).
    ``progress(done, total)`` is called after each run's preprocessing and after each
    head's fit (``total`` = runs + heads). The runs are read and preprocessed once, over
    the widest set of voxels the fit needs (the brain mask when a head's voxels are
    chosen); each later step narrows them (:func:`narrow_runs`).
    """
    recipe = DecoderRecipe() if recipe is None else recipe
    if recipe.snap_c and caption_bank is None:
        raise DataError("the recipe snaps c (snap_c) but no caption bank was given")
    snap, recipe = recipe.snap_c, dataclasses.replace(recipe, snap_c=False)
    if len(runs) < MIN_RUNS:
        raise DataError(
            f"fitting needs at least {MIN_RUNS} runs for cross-validation, found {len(runs)}"
        )
    total = len(runs) + len(head_voxels)

    def run_done(r: int) -> None:
        if progress is not None:
            progress(min(r, len(runs)), total)

    choice = None
    if any(v is None for v in head_voxels.values()):
        choice = choose_voxels(runs, head_voxels, targets, fit, stream, brain, run_done)
        head_voxels = choice.head_voxels
        if noise_candidates is None:
            noise_candidates = choice.brain
    bundle = _fit_voxels(
        runs, head_voxels, targets, target_shapes, fit, stream, model, progress, recipe,
        noise_candidates, run_done, total, None if choice is None else choice.extracted,
    )  # fmt: skip
    if choice is not None:
        bundle.report["voxels"] = choice.report
    if snap:
        bundle = bundle.with_caption_bank(caption_bank)  # type: ignore[arg-type]
    return bundle


def _fit_voxels(
    runs: Sequence[TrainingRun],
    head_voxels: Mapping[str, np.ndarray],
    targets: Targets,
    target_shapes: Mapping[str, tuple[int, ...]],
    fit: FitSection,
    stream: StreamSpec,
    model: ModelSpec,
    progress: Callable[[int, int], None] | None,
    recipe: DecoderRecipe,
    noise_candidates: np.ndarray | None,
    run_done: Callable[[int], None],
    total: int,
    wider: ExtractedRuns | None = None,
) -> DecoderBundle:
    """:func:`fit_decoders` once every head has its channels (``wider``: the runs already
    preprocessed over a superset of the channels needed, narrowed instead of read again)."""
    voxels = np.unique(np.concatenate([np.asarray(v) for v in head_voxels.values()]))
    candidates = None
    if recipe.denoise_pcs and noise_candidates is not None:
        candidates = pool_candidates(
            noise_candidates, head_voxels, POOL_CANDIDATES_PER_VOXEL * recipe.pool_size
        )
        voxels = np.union1d(voxels, candidates)
    if wider is not None and np.all(np.isin(voxels, wider.voxels)):
        extracted = narrow_runs(wider, voxels)
    else:
        extracted = extract_runs(runs, voxels, fit, stream, run_done)
    plan = plan_decoders(extracted, head_voxels, targets, fit, recipe, candidates)
    if not np.array_equal(plan.extract_voxels, extracted.voxels):
        # the online decoder preprocesses only these voxels: fit on exactly what it computes
        extracted = narrow_runs(extracted, plan.extract_voxels)
    return fit_planned(
        extracted,
        plan,
        targets,
        target_shapes,
        fit,
        stream,
        model,
        None if progress is None else (lambda h: progress(len(runs) + h, total)),
    )
