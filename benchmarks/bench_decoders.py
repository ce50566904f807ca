"""Decoders side by side: today's against each recipe change, alone and combined.

On the synthetic session (the demo's config; ``--participant realistic``
for the realistic participant at its own default ``snr``, ``--seeds`` for
one session per participant seed), every decoder is fitted on the same
training runs (preprocessed once) and judged on the validation runs only:
the ``z`` and ``c`` heads' R^2 over the validation trials and their two-way
identification in latent space (each trial's decoded latent against its own
target and every other validation trial's of its run, by correlation;
chance 50%), with a 95% bootstrap interval over trials and the difference
from today's decoder on the same trials (paired). Where a session has no
``validation`` runs (the easy participant), its last two training runs are
held out as validation runs. The best combination is the recipe changes
that each beat today's decoder on validation identification (mean of ``z``
and ``c``), taken together. For today's decoder and the best one (the final
pair), the frames are rendered with the embedded model and scored in pixel
space on the validation and then the test runs
(``rt_recon.evaluate.offline``), and the per-TR cost is measured at NSD
scale: preprocessing with motion correction of a 74x74x36 volume (15,000
decoded voxels, plus the noise pool) and decoding into a low-rank (k=128)
4x64x64 ``z`` and 77x1024 ``c``, one BLAS thread, random weights.

Latent-space figures decode every validation TR with the recipe's
:class:`~rt_recon.decode.online.OnlineDecoder` fed features computed once
per run for the union of every recipe's voxels (a voxel's features do not
depend on which other voxels are preprocessed, up to the despiker's
variance floor; the largest difference this makes is printed), with the
run's trial onsets known (trial mode). The rendered figures decode each
run from its volumes, continuous mode, exactly as ``rt-recon evaluate``.

    python -m benchmarks.bench_decoders [--participant realistic] [--seeds 0 1 2]
        [--pcs 3 6] [--only lss library+pcs3] [--no-render] [--no-timing] [--json out.json]
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from benchmarks._report import Timing, machine, write_json
from rt_recon.decode.bundle import DecoderBundle, DecoderHead, ModelSpec, StreamSpec, WindowSpec
from rt_recon.decode.denoise import NoiseModel
from rt_recon.decode.features import FeatureExtractor
from rt_recon.decode.fit import (
    POOL_CANDIDATES_PER_VOXEL,
    Targets,
    TrainingRun,
    extract_runs,
    fit_planned,
    plan_decoders,
    pool_candidates,
)
from rt_recon.decode.hrf_library import LIBRARY_PEAKS_S, responses
from rt_recon.decode.online import OnlineDecoder
from rt_recon.decode.recipe import DecoderRecipe
from rt_recon.decode.trial_estimate import TemporalModel, matched_weights
from rt_recon.preprocess import PreprocessSpec
from rt_recon.preprocess.spec import DespikeSpec, HighpassSpec, MotionSpec
from rt_recon.protocol import Marker, is_trial_event, onset_tr_from_seconds, trial_samples

log = logging.getLogger("benchmarks.decoders")

Z_SHAPE, C_SHAPE = (4, 64, 64), (77, 1024)


@dataclass
class RecipeResult:
    recipe: DecoderRecipe
    cv_r2: dict[str, float]
    # per validation run: {head: value}
    r2: list[dict[str, float]] = field(default_factory=list)
    ident: list[dict[str, float]] = field(default_factory=list)
    n_trials: list[int] = field(default_factory=list)
    # per head: each validation trial's share of won comparisons, runs concatenated
    wins: dict[str, np.ndarray] = field(default_factory=dict)
    n_voxels: dict[str, int] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    fit_s: float = 0.0

    def mean(self, what: str, head: str) -> float:
        return float(np.mean([run[head] for run in getattr(self, what)]))

    def spread(self, what: str, head: str) -> tuple[float, float]:
        values = [run[head] for run in getattr(self, what)]
        return float(np.min(values)), float(np.max(values))

    def to_json(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe.to_json(),
            "name": self.recipe.name,
            "cv_r2": self.cv_r2,
            "r2_per_run": self.r2,
            "identification_per_run": self.ident,
            "identification": {h: float(w.mean()) for h, w in self.wins.items()},
            "n_trials": self.n_trials,
            "n_voxels": self.n_voxels,
            "report": self.report,
            "fit_s": self.fit_s,
        }

    def interval(self, head: str, n_boot: int = 2000) -> tuple[float, float]:
        """95% bootstrap interval (over validation trials) of identification."""
        wins = self.wins[head]
        rng = np.random.default_rng(0)
        means = wins[rng.integers(0, len(wins), (n_boot, len(wins)))].mean(axis=1)
        return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))

    def paired(self, base: RecipeResult, head: str, n_boot: int = 2000) -> tuple[float, ...]:
        """Identification minus ``base``'s on the same trials: mean and 95% bootstrap
        interval over trials (pairing removes the trials' own difficulty)."""
        diff = self.wins[head] - base.wins[head]
        rng = np.random.default_rng(0)
        means = diff[rng.integers(0, len(diff), (n_boot, len(diff)))].mean(axis=1)
        return (
            float(diff.mean()),
            float(np.percentile(means, 2.5)),
            float(np.percentile(means, 97.5)),
        )

    @property
    def score(self) -> float:
        """Validation identification, mean of the two heads."""
        return 0.5 * (self.mean("ident", "z") + self.mean("ident", "c"))


def _load_session(participant: str | None, seed: int | None = None):
    """The demo config and its synthetic session; ``participant``/``seed`` replace the
    config's (a participant named here gets its own default ``snr``)."""
    from rt_recon.cli import DEFAULT_CONFIG
    from rt_recon.config import SimulationSection, load_config
    from rt_recon.simulators.session import ensure_session

    config = load_config(DEFAULT_CONFIG).resolved()
    sim = config.simulation
    if participant is not None or seed is not None:
        data = sim.model_dump()
        if participant is not None:
            data.pop("snr")  # the participant's default (DEFAULT_SNR)
            data["participant"] = participant
        if seed is not None:
            data["seed"] = seed
        sim = SimulationSection.model_validate(data)
    dataset = ensure_session(sim, config.paths.cache_dir, config.session.subject)
    return config, dataset


def _split(dataset) -> tuple[list, list, list, str]:
    roles = {r["role"] for r in dataset.manifest["runs"]}
    train = dataset.runs("train")
    test = dataset.runs("test") if "test" in roles else []
    if "validation" in roles:
        return train, dataset.runs("validation"), test, "the session's validation runs"
    return train[:-2], train[-2:], test, "the last two training runs, held out"


def _load_run(files):
    from rt_recon.acquire.nifti import load_nifti_run

    return load_nifti_run(files.bold, files.events)


def _onsets(events: list[dict], tr_s: float) -> list[int]:
    markers = [Marker.from_json(e) for e in events]
    return [onset_tr_from_seconds(m.onset, tr_s) for m in markers if is_trial_event(m)]  # type: ignore[arg-type]


def _run_features(run, voxels: np.ndarray, extracted) -> np.ndarray:
    """``(n_trs, n_voxels)`` features of a held-out run with the training runs' preprocessing."""
    extractor = FeatureExtractor(extracted.spec, voxels, run.shape, run.affine, extracted.reference)
    return np.stack([extractor.update(v) for v in run.volumes])


def _validate(
    bundle: DecoderBundle,
    runs: list,
    features: list[np.ndarray],
    voxels: np.ndarray,
    targets: Targets,
) -> tuple[list[dict], list[dict], list[int], dict[str, np.ndarray]]:
    from rt_recon.evaluate.metrics import correlation_matrix

    r2s, idents, ns = [], [], []
    wins: dict[str, list[np.ndarray]] = {head: [] for head in bundle.heads}
    lag = bundle.window.lag_trs
    for run, series in zip(runs, features, strict=True):
        decoder = OnlineDecoder(bundle)
        cols = np.searchsorted(voxels, decoder.voxels)
        onsets = _onsets(run.events, run.tr_s)
        samples = trial_samples(run.events, len(series), run.tr_s, lag)
        wanted = {t for t, _ in samples}
        decoded = {}
        for t in range(len(series)):
            out = decoder.decode(series[t, cols], tr=t, onsets=onsets)
            if t in wanted:
                decoded[t] = out
        ids = np.array([sid for _, sid in samples])
        r2, ident = {}, {}
        for head in bundle.heads:
            est = np.stack([decoded[t][head].ravel() for t, _ in samples]).astype(np.float64)
            truth = targets.lookup(head, ids).astype(np.float64)
            ss_res = ((truth - est) ** 2).sum(axis=0)
            ss_tot = ((truth - truth.mean(axis=0)) ** 2).sum(axis=0)
            r2[head] = float(np.mean(1.0 - ss_res / np.maximum(ss_tot, 1e-12)))
            corr = correlation_matrix(est, truth)
            won = (corr < np.diag(corr)[:, None]).sum(axis=1) / (len(corr) - 1)
            ident[head] = float(won.mean())  # two-way identification, as MindEye's
            wins[head].append(won)
        r2s.append(r2)
        idents.append(ident)
        ns.append(len(samples))
    return r2s, idents, ns, {h: np.concatenate(w) for h, w in wins.items()}


def _table(results: list[RecipeResult], where: str) -> str:
    n = results[0].n_trials
    spread = len(n) > 1
    lines = [
        f"Validation: {where} ({len(n)} run{'s' if spread else ''}, {sum(n)} trials). "
        "R²: mean over targets"
        + (", mean over runs [min–max over runs]" if spread else "")
        + "; identification: over the validation trials, (95% bootstrap interval over "
        "trials). Chance: identification 50%, R² 0.",
        "",
        "| decoder | voxels z / c | CV R² z / c (train) | val R² z / c "
        "| val ident. z | val ident. c | Δ ident. z vs today | Δ ident. c vs today | fit s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    base = results[0]
    for res in results:
        r2 = []
        for head in ("z", "c"):
            lo, hi = res.spread("r2", head)
            r2.append(f"{res.mean('r2', head):.3f}" + (f" [{lo:.3f}–{hi:.3f}]" if spread else ""))
        ident = []
        for head in ("z", "c"):
            lo, hi = res.interval(head)
            ident.append(f"{res.wins[head].mean():.1%} ({lo:.1%}–{hi:.1%})")
        delta = []
        for head in ("z", "c"):
            d, lo, hi = res.paired(base, head)
            delta.append(
                "—" if res is base else f"{100 * d:+.1f} ({100 * lo:+.1f} to {100 * hi:+.1f})"
            )
        name = "today (baseline)" if res.recipe == DecoderRecipe() else res.recipe.name
        lines.append(
            f"| {name} | {res.n_voxels['z']} / {res.n_voxels['c']} | "
            f"{res.cv_r2['z']:.3f} / {res.cv_r2['c']:.3f} | {' / '.join(r2)} | "
            f"{ident[0]} | {ident[1]} | {delta[0]} | {delta[1]} | {res.fit_s:.0f} |"
        )
    lines += [
        "",
        "Δ: percentage points on the same trials, 95% bootstrap interval over trials. CV R² "
        "(leave-one-run-out on the training runs) is optimistic for a recipe that chose "
        "voxels or HRFs on those runs; the validation columns are the honest ones.",
    ]
    return "\n".join(lines)


def _combine(singles: list[RecipeResult], today: RecipeResult) -> DecoderRecipe:
    """Every change that beat today on validation identification, together."""
    best: dict[str, Any] = {}
    by_field: dict[str, RecipeResult] = {}
    base = DecoderRecipe()
    for res in singles:
        if res.score <= today.score:
            continue
        for name in ("hrf", "denoise_pcs", "trial_estimate", "select_voxels"):
            if getattr(res.recipe, name) != getattr(base, name) and (
                name not in by_field or res.score > by_field[name].score
            ):
                by_field[name] = res
                best[name] = getattr(res.recipe, name)
    return replace(base, **best)


# --------------------------------------------------------------------------- timing
def _nsd_bundle(
    recipe: DecoderRecipe, n_voxels: int, rank: int, rng: np.random.Generator, shape, pool: int
) -> DecoderBundle:
    """A bundle at NSD scale with random weights, the recipe's structures in place."""
    grid = int(np.prod(shape))
    decoded = np.sort(rng.choice(grid, size=n_voxels, replace=False))
    heads = {}
    for name, target in (("z", Z_SHAPE), ("c", C_SHAPE)):
        n_targets = int(np.prod(target))
        heads[name] = DecoderHead(
            name=name,
            voxels=decoded,
            weights=rng.standard_normal((n_voxels, rank), dtype=np.float32) * 0.01,
            intercept=np.zeros(n_targets, np.float32),
            alphas=np.ones(rank, np.float32),
            target_shape=target,
            components=rng.standard_normal((rank, n_targets), dtype=np.float32),
        )
    tr_s = 1.5
    n_window = 4 if recipe.trial_estimate == "window" else recipe.lss_window_trs
    lag = 6
    if recipe.hrf == "library":
        resp = responses(LIBRARY_PEAKS_S, 3.0, tr_s)
        group = rng.integers(0, len(resp), n_voxels)
    else:
        resp, group = responses([5.0], 3.0, tr_s), None
    temporal = TemporalModel(
        recipe.trial_estimate, lag, n_window, matched_weights(resp, lag, n_window), resp, group, 3
    )
    noise = None
    if recipe.denoise_pcs:
        outside = np.setdiff1d(np.arange(grid), decoded)
        noise = NoiseModel(
            np.sort(rng.choice(outside, size=pool, replace=False)),
            rng.standard_normal((pool, recipe.denoise_pcs), dtype=np.float32),
            rng.standard_normal((recipe.denoise_pcs, n_voxels), dtype=np.float32) * 0.01,
        )
    affine = np.diag([2.5, 2.5, 3.0, 1.0])
    spec = PreprocessSpec(4, MotionSpec(affine), DespikeSpec(), HighpassSpec(128.0 / tr_s))
    return DecoderBundle(
        heads=heads,
        stream=StreamSpec(shape, grid, "full", affine),
        preprocess=spec,
        window=WindowSpec(tuple(temporal.window_weights[0]), lag, tr_s),
        model=ModelSpec("bench", Z_SHAPE, C_SHAPE, 512),
        recipe=recipe,
        temporal=temporal if recipe != DecoderRecipe() else None,
        noise=noise,
    )


def per_tr_cost(
    recipes: list[DecoderRecipe], n_voxels: int = 15_000, rank: int = 128, repeats: int = 40
) -> dict:
    """Median per-TR preprocess and decode times of each recipe at NSD scale."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    shape = (74, 74, 36)
    base = gaussian_filter(rng.normal(size=shape), 2.0)
    brain = 800 + 150 * base / base.std()
    rows = []
    with threadpool_limits(1):
        for recipe in recipes:
            bundle = _nsd_bundle(recipe, n_voxels, rank, rng, shape, recipe.pool_size)
            bundle.reference = brain.astype(np.float32)
            decoder = OnlineDecoder(bundle)
            pre, dec = [], []
            for i in range(repeats + 5):
                volume = np.ravel(brain + rng.normal(0, 5, shape), order="F").astype(np.float32)
                start = time.perf_counter()
                features = decoder.preprocess(volume)
                mid = time.perf_counter()
                decoder.decode(features, tr=i, trial_onset=max(0, i - 6))
                end = time.perf_counter()
                if i >= 5:
                    pre.append(mid - start)
                    dec.append(end - mid)
            name = "today (baseline)" if recipe == DecoderRecipe() else recipe.name
            rows.append(
                {
                    "recipe": name,
                    "voxels_preprocessed": len(decoder.voxels),
                    "preprocess": Timing.of(f"{name}: preprocess", pre),
                    "decode": Timing.of(f"{name}: decode", dec),
                }
            )
    lines = [
        f"{n_voxels:,} decoded voxels of a 74×74×36 volume (motion correction, despike, "
        f"high-pass, z-score), low rank k={rank} heads into z {Z_SHAPE} + c {C_SHAPE}, "
        "one BLAS thread, random weights:",
        "",
        "| decoder | voxels preprocessed | preprocess median ms (p95) | decode median ms (p95) "
        "| budget |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        p, d = r["preprocess"], r["decode"]
        lines.append(
            f"| {r['recipe']} | {r['voxels_preprocessed']:,} | {p.median_ms:.2f} ({p.p95_ms:.2f}) "
            f"| {d.median_ms:.2f} ({d.p95_ms:.2f}) | ≤ 30 / ≤ 5 ms |"
        )
    return {"rows": rows, "table": "\n".join(lines)}


# --------------------------------------------------------------------------- main
def recipe_named(name: str) -> DecoderRecipe:
    """The recipe of a :attr:`DecoderRecipe.name`, e.g. ``library+pcs3+lss+select(auto)``."""
    fields: dict[str, Any] = {}
    for part in name.split("+"):
        if part == "today":
            continue
        if part == "library":
            fields["hrf"] = "library"
        elif part == "lss":
            fields["trial_estimate"] = "lss"
        elif part.startswith("pcs"):
            fields["denoise_pcs"] = int(part[3:])
        elif part.startswith("select(") and part.endswith(")"):
            arg = part[len("select(") : -1]
            fields["select_voxels"] = arg if arg == "auto" else float(arg)
        else:
            raise SystemExit(f"unknown recipe part {part!r} in {name!r}")
    return DecoderRecipe(**fields)


@dataclass
class Session:
    """One synthetic session, preprocessed once for every recipe."""

    config: Any
    dataset: Any
    where: str
    val_files: list
    test_files: list
    val: list
    extracted: Any
    val_features: list[np.ndarray]
    voxels: np.ndarray
    head_voxels: dict[str, np.ndarray]
    candidates: np.ndarray
    targets: Targets
    shapes: dict[str, tuple[int, ...]]
    stream: StreamSpec
    model_spec: ModelSpec


def _prepare(participant: str | None, seed: int | None, model) -> Session:
    from rt_recon.acquire.masks import load_mask
    from rt_recon.render.targets import encode_captions, encode_images

    config, dataset = _load_session(participant, seed)
    train_files, val_files, test_files, where = _split(dataset)
    print(f"session {dataset.root}: {len(train_files)} training runs, validation: {where}")
    train = [_load_run(f) for f in train_files]
    val = [_load_run(f) for f in val_files]
    shape, affine = train[0].shape, train[0].affine
    masks = {m: load_mask(dataset.mask_path(m), shape, affine) for m in ("ev", "hv", "brain")}
    head_voxels = {"z": masks["ev"], "c": masks["hv"]}
    all_runs = train + val + [_load_run(f) for f in test_files]
    ids = np.array(
        sorted({int(e["stimulus_id"]) for r in all_runs for e in r.events if "stimulus_id" in e})
    )
    targets = Targets(
        ids=ids,
        values={
            "z": encode_images(model, dataset.stimulus_images(ids)),
            "c": encode_captions(model, dataset.captions(ids)),
        },
    )
    stream = StreamSpec(shape, int(np.prod(shape)), "full", np.asarray(affine))
    pool_size = DecoderRecipe().pool_size
    candidates = pool_candidates(masks["brain"], head_voxels, POOL_CANDIDATES_PER_VOXEL * pool_size)
    voxels = np.unique(np.concatenate([masks["ev"], masks["hv"], candidates]))
    began = time.perf_counter()
    training = [TrainingRun(r.volumes, r.events, r.tr_s) for r in train]
    extracted = extract_runs(training, voxels, config.fit, stream)
    val_features = [_run_features(r, voxels, extracted) for r in val]
    print(f"preprocessed {len(train)} + {len(val)} runs, {len(voxels)} voxels: "
          f"{time.perf_counter() - began:.0f} s")  # fmt: skip
    return Session(
        config,
        dataset,
        where,
        val_files,
        test_files,
        val,
        extracted,
        val_features,
        voxels,
        head_voxels,
        candidates,
        targets,
        {"z": model.latent_shape, "c": model.cond_shape},
        stream,
        ModelSpec.from_json(model.describe()),
    )


def _fit(session: Session, recipe: DecoderRecipe) -> tuple[DecoderBundle, float]:
    start = time.perf_counter()
    s = session
    plan = plan_decoders(s.extracted, s.head_voxels, s.targets, s.config.fit, recipe, s.candidates)
    bundle = fit_planned(
        s.extracted, plan, s.targets, s.shapes, s.config.fit, s.stream, s.model_spec
    )
    return bundle, time.perf_counter() - start


def _evaluate(sessions: list[Session], recipe: DecoderRecipe) -> tuple[RecipeResult, list]:
    """Fit ``recipe`` on each session's training runs; validate; results pooled over sessions."""
    res = RecipeResult(recipe, cv_r2={"z": 0.0, "c": 0.0})
    bundles, wins = [], {"z": [], "c": []}
    for s in sessions:
        bundle, seconds = _fit(s, recipe)
        bundles.append(bundle)
        heads = bundle.report["heads"]
        for h in heads:
            res.cv_r2[h] += float(heads[h]["cv_r2_mean"]) / len(sessions)
            res.n_voxels[h] = res.n_voxels.get(h, 0) + len(bundle.heads[h].voxels)
        res.report[str(s.dataset.root)] = {
            k: v for k, v in bundle.report.items() if k in ("hrf", "denoise", "select")
        }
        res.fit_s += seconds
        r2, ident, n, won = _validate(bundle, s.val, s.val_features, s.voxels, s.targets)
        res.r2 += r2
        res.ident += ident
        res.n_trials += n
        for h in won:
            wins[h].append(won[h])
    res.wins = {h: np.concatenate(w) for h, w in wins.items()}
    res.n_voxels = {h: round(v / len(sessions)) for h, v in res.n_voxels.items()}
    print(
        f"  {recipe.name:<40} ident z {res.wins['z'].mean():.1%} c "
        f"{res.wins['c'].mean():.1%}  R2 z {res.mean('r2', 'z'):.3f} c "
        f"{res.mean('r2', 'c'):.3f}  ({res.fit_s:.0f} s)",
        flush=True,
    )
    return res, bundles


def run(
    participant: str | None = None,
    pcs: tuple[int, ...] = (3, 6),
    render: bool = True,
    timing: bool = True,
    only: list[DecoderRecipe] | None = None,
    seeds: tuple[int, ...] | None = None,
) -> dict:
    from rt_recon.render.embedded import resolve_model_path
    from rt_recon.render.model import load_render_model

    config, _ = _load_session(participant, None if not seeds else seeds[0])
    model = load_render_model(resolve_model_path(config), with_text=True)
    sessions = [_prepare(participant, seed, model) for seed in (seeds or (None,))]
    today_res, today_bundles = _evaluate(sessions, DecoderRecipe())
    singles = only or [
        DecoderRecipe(hrf="library"),
        *(DecoderRecipe(denoise_pcs=k) for k in pcs),
        DecoderRecipe(trial_estimate="lss"),
        DecoderRecipe(select_voxels="auto"),
    ]
    fitted = {r: _evaluate(sessions, r) for r in singles}
    single_results = [res for res, _ in fitted.values()]
    best_recipe = _combine(single_results, today_res)
    results = [today_res, *single_results]
    best_bundles = today_bundles
    if best_recipe in fitted:
        best_bundles = fitted[best_recipe][1]
    elif best_recipe != DecoderRecipe():
        best_res, best_bundles = _evaluate(sessions, best_recipe)
        results.append(best_res)
    del fitted
    where = sessions[0].where + (
        f", one session per participant seed {', '.join(map(str, seeds))}" if seeds else ""
    )
    out: dict[str, Any] = {
        "sessions": [str(s.dataset.root) for s in sessions],
        "participant": participant or sessions[0].config.simulation.participant,
        "seeds": list(seeds or ()),
        "validation": where,
        "machine": machine(),
        "results": [r.to_json() for r in results],
        "best": best_recipe.to_json(),
        "best_name": best_recipe.name,
        "table": _table(results, where),
    }
    # how far the shared-extraction shortcut is from each decoder's own preprocessing
    s = sessions[0]
    check = OnlineDecoder(best_bundles[0])
    own = _run_features(s.val[0], check.voxels, s.extracted)
    shared = s.val_features[0][:, np.searchsorted(s.voxels, check.voxels)]
    out["shared_features_max_abs_diff"] = float(np.max(np.abs(own - shared)))
    if render:
        out["rendered"] = _render_pair(sessions, today_bundles, best_bundles, model)
    if timing:
        out["timing"] = per_tr_cost(
            [DecoderRecipe(), best_recipe] if best_recipe != DecoderRecipe() else [DecoderRecipe()]
        )
    return out


def _render_pair(sessions: list[Session], today: list, best: list, model) -> dict:
    """Image-level scores of today's and the best decoder on the validation, then the test
    runs of every session (decoded from the volumes, rendered, scored in the metric network's
    features, the headline of docs/metrics.md, and in pixels), and their differences paired
    on the same trials."""
    from rt_recon.evaluate.metric_net import load_metric_net
    from rt_recon.evaluate.metrics import correlation_matrix, pixel_features
    from rt_recon.evaluate.offline import evaluate_run
    from rt_recon.evaluate.trials import match_size
    from rt_recon.render.img2img import Img2ImgRenderer

    rc = sessions[0].config.renderer
    renderer = Img2ImgRenderer(model, steps=rc.steps, strength=rc.strength, seed=rc.seed)
    net = load_metric_net()
    spaces = {"features": net.features, "pixels": pixel_features}

    def wins(evaluation, space: str) -> np.ndarray:
        recons = match_size(evaluation.recons, evaluation.truths.shape[1:3])
        features = spaces[space]
        corr = correlation_matrix(features(recons), features(evaluation.truths))
        return (corr < np.diag(corr)[:, None]).sum(axis=1) / (len(corr) - 1)

    out: dict[str, Any] = {}
    lines = [
        "| runs | decoder | n trials | identification (metric net) [min–max over runs] "
        "| Δ vs today (paired, 95% CI) | identification (pixels 32×32) | Δ pixels vs today "
        "| PixCorr |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rng = np.random.default_rng(0)
    for split in ("validation", "test"):
        per: dict[str, dict[str, list]] = {}
        for name, bundles in (("today", today), ("best", best)):
            entry: dict[str, list] = {"pixcorr": [], "n": [], "features": [], "pixels": []}
            for s, bundle in zip(sessions, bundles, strict=True):
                for f in s.val_files if split == "validation" else s.test_files:
                    evaluation = evaluate_run(s.dataset, f, bundle, renderer)
                    entry["pixcorr"].append(evaluation.scores.pixcorr)
                    entry["n"].append(evaluation.scores.n_trials)
                    for space in spaces:
                        entry[space].append(wins(evaluation, space))
            per[name] = entry
        deltas = {}
        for space in spaces:
            diff = np.concatenate(per["best"][space]) - np.concatenate(per["today"][space])
            boot = diff[rng.integers(0, len(diff), (2000, len(diff)))].mean(axis=1)
            lo, hi = np.percentile(boot, [2.5, 97.5])
            deltas[space] = (float(diff.mean()), float(lo), float(hi))
            out[f"{split}/delta_{space}"] = {"mean": deltas[space][0], "ci": [lo, hi]}
        for name, entry in per.items():
            ident = np.array([w.mean() for w in entry["features"]])
            pixels = np.array([w.mean() for w in entry["pixels"]])
            spread = f" [{ident.min():.1%}–{ident.max():.1%}]" if len(ident) > 1 else ""

            def delta(space: str, name: str = name, deltas: dict = deltas) -> str:
                if name == "today":
                    return "—"
                mean, lo, hi = deltas[space]
                return f"{100 * mean:+.1f} pp ({100 * lo:+.1f} to {100 * hi:+.1f})"

            lines.append(
                f"| {split} ({len(ident)} run{'s' if len(ident) > 1 else ''}) | {name} | "
                f"{sum(entry['n'])} | {ident.mean():.1%}{spread} | {delta('features')} | "
                f"{pixels.mean():.1%} | {delta('pixels')} | {np.mean(entry['pixcorr']):.3f} |"
            )
            out[f"{split}/{name}"] = {
                "identification": ident.tolist(),
                "pixel_identification": pixels.tolist(),
                "pixcorr": entry["pixcorr"],
                "n": entry["n"],
            }
    out["table"] = "\n".join(lines)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--participant", choices=["easy", "realistic"])
    parser.add_argument("--pcs", type=int, nargs="+", default=[3, 6])
    parser.add_argument("--no-render", action="store_true")
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument(
        "--only", nargs="+", help="these recipes instead of each change alone, e.g. lss+pcs3"
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", help="one session per simulation seed (participants)"
    )
    parser.add_argument("--json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    only = None if args.only is None else [recipe_named(n) for n in args.only]
    result = run(
        args.participant,
        tuple(args.pcs),
        not args.no_render,
        not args.no_timing,
        only,
        None if args.seeds is None else tuple(args.seeds),
    )
    print(f"\n{result['machine']}; best combination: {result['best_name']}\n")
    print(result["table"])
    print(f"\nshared-extraction shortcut, largest feature difference: "
          f"{result['shared_features_max_abs_diff']:.2e}")  # fmt: skip
    if "rendered" in result:
        print("\nRendered (embedded model), today vs best:\n")
        print(result["rendered"]["table"])
    if "timing" in result:
        print("\nPer-TR cost at NSD scale:\n")
        print(result["timing"]["table"])
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
