"""Is the per-TR confidence calibrated? Identification by confidence quintile on held-out runs.

Each participant seed is its own synthetic participant (the realistic one by
default, as in :mod:`benchmarks.bench_accuracy`): its decoders are fitted on
its training runs (the demo's fit, cached, with the confidence's null:
:mod:`rt_recon.decode.confidence`), its held-out run of ``--role`` is decoded
TR by TR by the online decoder, and each trial's confidence is the one the
decoder gave at the trial's scored TR. Every trial is rendered once per
renderer seed with the session's renderer settings and scored by two-way
identification in the metric network's features, per trial
(:func:`~rt_recon.evaluate.semantic.trial_identification`: the fraction of the
run's other trials' pictures its reconstruction is closer to than to its own;
the mean over the renderer seeds). Pooled over the runs, the trials are split
into confidence quintiles; per quintile: its edges, n, and identification with
a bootstrap 95% interval over its trials; then Spearman's rank correlation of
confidence and identification (pooled, with its p and a bootstrap interval,
and within each run).

``--role validation`` compares the candidate statistics (:data:`CANDIDATES`:
which heads the statistic reads) and is where the one the bundle uses was
chosen; ``--role test`` (the default) prints the table once, for the
statistic the bundles use. The per-TR cost of the confidence is timed on the
real runs and at NSD scale.

    python -m benchmarks.bench_confidence [--role test|validation] [--seeds 0 1 2 3 4]
                                          [--render-seeds 0 1 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from benchmarks._report import Timing, add_held_out_arguments, machine, write_json

log = logging.getLogger(__name__)

#: The statistics compared on the validation runs: the heads the statistic averages.
CANDIDATES: dict[str, tuple[str, ...]] = {"c": ("c",), "z": ("z",), "z and c": ("z", "c")}

#: Confidence bins of the table.
QUINTILES = 5

#: Bootstrap resamples of the rank correlation's interval (seeded).
RESAMPLES = 2000


@dataclass
class RunTrials:
    """One participant's held-out run: per trial its confidence (per candidate statistic)
    and its identification per renderer seed."""

    seed: int
    label: str
    stimulus_ids: list[int]
    confidence: dict[str, np.ndarray]  # candidate -> (n,)
    statistic: dict[str, np.ndarray]  # candidate -> (n,): what the confidence is a step of
    used: str  # the candidate the bundle uses
    identification: np.ndarray  # (n_render_seeds, n)
    confidence_ms: list[float]  # per TR, the confidence's own cost


def _candidate_of(use: tuple[str, ...]) -> str:
    for name, heads in CANDIDATES.items():
        if tuple(heads) == tuple(use):
            return name
    return " and ".join(use)


def prepare(participant: str | None, seed: int, role: str, model_path) -> tuple[Any, Any]:
    """Participant ``seed``: its fitted bundle (cached) and its ``role`` run's files."""
    from benchmarks.bench_decoders import _load_session
    from rt_recon.apps.demo import ensure_bundle
    from rt_recon.decode.bundle import DecoderBundle

    config, dataset = _load_session(participant, seed)
    runs = dataset.runs(role)
    if not runs:
        raise SystemExit(f"{dataset.root}: no {role} run (roles: train, validation, test)")
    bundle = DecoderBundle.load(ensure_bundle(dataset, model_path, config))
    if bundle.confidence is None:
        raise SystemExit(f"participant {seed}: the bundle has no confidence")
    return (config, dataset, bundle), runs[0]


def decode_trials(
    participant: str | None, seed: int, role: str, model, model_path, render_seeds: Sequence[int]
) -> RunTrials:
    """Decode participant ``seed``'s ``role`` run TR by TR, keep each trial's confidence at
    its scored TR, render its trials once per renderer seed and score them per trial."""
    from rt_recon.acquire.nifti import load_nifti_run
    from rt_recon.decode.online import OnlineDecoder
    from rt_recon.evaluate.metric_net import load_metric_net
    from rt_recon.evaluate.semantic import trial_identification
    from rt_recon.protocol import trial_samples
    from rt_recon.render.img2img import Img2ImgRenderer

    (config, dataset, bundle), files = prepare(participant, seed, role, model_path)
    run = load_nifti_run(files.bold, files.events)
    # decode without snapping, so that each TR's statistic can be recomputed from the linear
    # prediction the confidence reads; the rendered c is snapped below, as the decoder node's
    bank = bundle.caption_bank if bundle.recipe.snap_c else None
    decoder = OnlineDecoder(replace(bundle, recipe=replace(bundle.recipe, snap_c=False)))
    latents, online, cost = [], [], []
    for volume in run.volumes:
        out = decoder.update(volume)
        latents.append(out)
        online.append(decoder.confidence)
        began = time.perf_counter()
        bundle.confidence.confidence(out)
        cost.append(1000.0 * (time.perf_counter() - began))
    samples = trial_samples(run.events, len(run.volumes), run.tr_s, bundle.window.lag_trs)
    trs = [tr for tr, _ in samples]
    ids = [int(sid) for _, sid in samples]
    model_conf = bundle.confidence
    models = {name: model_conf.with_use(use) for name, use in CANDIDATES.items()}
    statistic = {
        name: np.array([m.statistic(latents[t]) for t in trs]) for name, m in models.items()
    }
    confidence = {
        name: np.array([models[name].of_statistic(v) for v in values])
        for name, values in statistic.items()
    }
    used = _candidate_of(model_conf.use)
    online_at = np.array([online[t] for t in trs])
    if not np.array_equal(online_at, confidence[used]):
        raise AssertionError("the online decoder's confidence differs from the bundle's")
    truths = dataset.stimulus_images(ids)
    net = load_metric_net()
    features = net.features(truths)
    rc = config.renderer
    scores = []

    def snapped(c: np.ndarray) -> np.ndarray:
        return c if bank is None else bank.snap(c)

    for render_seed in render_seeds:
        renderer = Img2ImgRenderer(model, steps=rc.steps, strength=rc.strength, seed=render_seed)
        recons = np.stack([renderer.render(latents[t]["z"], snapped(latents[t]["c"])) for t in trs])
        scores.append(trial_identification(recons, truths, net, features))
    return RunTrials(
        seed=seed,
        label=f"participant {seed}, {role} run {files.run}",
        stimulus_ids=ids,
        confidence=confidence,
        statistic=statistic,
        used=used,
        identification=np.stack(scores),
        confidence_ms=cost,
    )


def _spearman(x: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Spearman's rho with its p (scipy) and a bootstrap 95% interval over the pairs."""
    from scipy import stats

    rho, p = stats.spearmanr(x, y)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(x), size=(RESAMPLES, len(x)))
    rx = stats.rankdata(x[pick], axis=1)  # average ranks for ties, as spearmanr
    ry = stats.rankdata(y[pick], axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    norm = np.sqrt((rx**2).sum(axis=1) * (ry**2).sum(axis=1))
    ok = norm > 0
    draws = (rx * ry).sum(axis=1)[ok] / norm[ok]
    low, high = np.quantile(draws, [0.025, 0.975])
    return {"rho": float(rho), "p": float(p), "ci_low": float(low), "ci_high": float(high),
            "n": len(x)}  # fmt: skip


def calibration(
    confidence: np.ndarray, statistic: np.ndarray, identification: np.ndarray
) -> dict[str, Any]:
    """Quintile table of ``(n,)`` confidences against ``(n,)`` per-trial identification.

    The quintiles are of equal size, by rank of the confidence; the confidence is a step
    function of ``statistic`` (the fraction of the null below it), so trials tied at a
    confidence (at 1: above every null sample) are ranked by the statistic.
    """
    from rt_recon.evaluate.semantic import bootstrap_interval

    order = np.lexsort((statistic, confidence))
    groups = np.array_split(order, QUINTILES)
    edges = [float(confidence[g].min()) for g in groups] + [float(confidence.max())]
    rows = []
    for q, group in enumerate(groups):
        member = np.zeros(len(confidence), dtype=bool)
        member[group] = True
        values = identification[member]
        low, high = bootstrap_interval(values) if member.any() else (np.nan, np.nan)
        rows.append({
            "quintile": q + 1,
            "from": float(confidence[member].min()),
            "to": float(confidence[member].max()),
            "statistic_from": float(statistic[member].min()),
            "statistic_to": float(statistic[member].max()),
            "n": int(member.sum()),
            "confidence_mean": float(confidence[member].mean()) if member.any() else np.nan,
            "identification": float(values.mean()) if member.any() else np.nan,
            "ci_low": low,
            "ci_high": high,
        })  # fmt: skip
    low, high = bootstrap_interval(identification)
    return {
        "edges": edges,
        "rows": rows,
        "overall": {
            "n": len(identification),
            "identification": float(identification.mean()),
            "ci_low": low,
            "ci_high": high,
            "confidence_median": float(np.median(confidence)),
        },
        "spearman": _spearman(confidence, identification),
    }


def table(result: dict[str, Any]) -> str:
    """Markdown: one row per quintile, then the overall figure and the rank correlation."""
    lines = [
        "| confidence quintile | confidence from–to | statistic from–to | n trials | "
        "mean confidence | identification (95% CI) |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['quintile']} | {row['from']:.4f}–{row['to']:.4f} | "
            f"{row['statistic_from']:.2f}–{row['statistic_to']:.2f} | {row['n']} | "
            f"{row['confidence_mean']:.3f} | {100 * row['identification']:.1f}% "
            f"({100 * row['ci_low']:.1f}–{100 * row['ci_high']:.1f}%) |"
        )
    o, s = result["overall"], result["spearman"]
    lines.append(
        f"| all | | | {o['n']} | median {o['confidence_median']:.3f} | "
        f"{100 * o['identification']:.1f}% ({100 * o['ci_low']:.1f}–{100 * o['ci_high']:.1f}%) |"
    )
    lines.append(
        f"\nSpearman's rho (confidence vs per-trial identification, pooled): {s['rho']:+.3f}, "
        f"p = {s['p']:.2g}, bootstrap 95% CI {s['ci_low']:+.3f} to {s['ci_high']:+.3f} "
        f"(n = {s['n']} trials)."
    )
    return "\n".join(lines)


def nsd_cost(repeats: int = 300, n_null: int = 1728) -> Timing:
    """The confidence's cost per TR at NSD scale (z ``(4, 64, 64)``, c ``(77, 768)``, both
    heads, a null of ``n_null`` samples: the demo's size), one BLAS thread as the decoder
    node. The model's arrays are random (the cost does not depend on their values)."""
    from threadpoolctl import threadpool_limits

    from rt_recon.decode.confidence import ConfidenceModel

    rng = np.random.default_rng(0)
    shapes = {"z": (4, 64, 64), "c": (77, 768)}
    sizes = {h: int(np.prod(s)) for h, s in shapes.items()}
    model = ConfidenceModel(
        heads=("z", "c"),
        scale={h: rng.uniform(0.5, 2.0, n).astype(np.float32) for h, n in sizes.items()},
        intercept={h: rng.normal(size=n).astype(np.float32) for h, n in sizes.items()},
        null=rng.gamma(2.0, 0.5, size=(n_null, 2)),
        use=("z", "c"),
    )
    latents = {h: rng.normal(size=s).astype(np.float32) for h, s in shapes.items()}
    seconds = []
    with threadpool_limits(1):
        for _ in range(repeats):
            began = time.perf_counter()
            model.confidence(latents)
            seconds.append(time.perf_counter() - began)
    return Timing.of("confidence per TR, NSD scale (z and c)", seconds)


def run(
    participant: str | None = None,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    render_seeds: Sequence[int] = (0, 1, 2),
    role: str = "test",
) -> dict[str, Any]:
    from benchmarks.bench_decoders import _load_session
    from rt_recon.render.embedded import resolve_model_path
    from rt_recon.render.model import load_render_model

    began = time.perf_counter()
    config, _ = _load_session(participant, seeds[0])
    model_path = resolve_model_path(config)
    model = load_render_model(model_path, with_text=True)
    runs = [decode_trials(participant, s, role, model, model_path, render_seeds) for s in seeds]
    used = runs[0].used
    identification = np.concatenate([r.identification.mean(axis=0) for r in runs])
    candidates = CANDIDATES if role == "validation" else {used: CANDIDATES.get(used, ())}
    results = {}
    for name in candidates:
        confidence = np.concatenate([r.confidence[name] for r in runs])
        statistic = np.concatenate([r.statistic[name] for r in runs])
        entry = calibration(confidence, statistic, identification)
        entry["spearman_statistic"] = _spearman(statistic, identification)
        entry["within_runs"] = [
            _spearman(r.confidence[name], r.identification.mean(axis=0))["rho"] for r in runs
        ]
        entry["table"] = table(entry)
        results[name] = entry
    seconds = [ms / 1000 for r in runs for ms in r.confidence_ms]
    cost = Timing.of("confidence per TR, the demo's bundles", seconds)
    return {
        "participant": config.simulation.participant if participant is None else participant,
        "role": role,
        "seeds": list(seeds),
        "render_seeds": list(render_seeds),
        "runs": [r.label for r in runs],
        "n_trials": [len(r.stimulus_ids) for r in runs],
        "used": used,
        "renderer": {"steps": config.renderer.steps, "strength": config.renderer.strength},
        "results": results,
        "per_run_identification": [float(r.identification.mean()) for r in runs],
        "trials": [
            {
                "run": r.label,
                "stimulus_ids": r.stimulus_ids,
                "confidence": r.confidence[used].tolist(),
                "statistic": r.statistic[used].tolist(),
                "identification": r.identification.mean(axis=0).tolist(),
            }
            for r in runs
        ],
        "cost": {"demo": cost.__dict__, "nsd": nsd_cost().__dict__},
        "machine": machine(),
        "seconds": time.perf_counter() - began,
    }


def report(result: dict[str, Any]) -> str:
    """The printout: per candidate statistic (validation) or the one used (test)."""
    out = [
        f"{result['participant']} participant, {result['role']} runs "
        f"({', '.join(result['runs'])}; {sum(result['n_trials'])} trials) x renderer seeds "
        f"{' '.join(map(str, result['render_seeds']))} (steps {result['renderer']['steps']}, "
        f"strength {result['renderer']['strength']:g}); {result['machine']}",
        f"the bundles' statistic: heads {result['used']}",
    ]
    for name, entry in result["results"].items():
        within = ", ".join(f"{rho:+.2f}" for rho in entry["within_runs"])
        out.append(f"\nstatistic on heads {name}:\n{entry['table']}")
        st = entry["spearman_statistic"]
        out.append(
            f"Spearman's rho of the statistic itself (no ties): {st['rho']:+.3f}, p = "
            f"{st['p']:.2g}, bootstrap 95% CI {st['ci_low']:+.3f} to {st['ci_high']:+.3f}"
        )
        out.append(f"Spearman's rho within each run: {within} (mean "
                   f"{np.mean(entry['within_runs']):+.3f})")  # fmt: skip
    for t in result["cost"].values():
        out.append(
            f"{t['name']}: median {1000 * t['median_ms']:.0f} us, p95 "
            f"{1000 * t['p95_ms']:.0f} us (n {t['n']})"
        )
    out.append(f"{result['seconds']:.0f} s")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_held_out_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    result = run(args.participant, args.seeds, args.render_seeds, args.role)
    print(report(result))
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
