"""Automatic regions of interest against masks: oracle ROIs, atlas-like masks, the EPI alone.

On the realistic synthetic participant (the default config's session;
``--seeds`` for other participants), the decoders are fitted three ways on
the training runs with the config's fit and recipe (the demo's decoder):

* **oracle**: ``z`` from the simulator's true early visual ROI, ``c`` from
  its true higher visual ROI (``oracle_masks`` in the manifest);
* **atlas**: the atlas-like masks a real participant would have
  (``sub-01/masks``: misregistered, blurred, with non-visual voxels);
* **auto**: no mask at all: a brain mask from the training runs' mean EPI
  and each head's voxels chosen by cross-validated encoding
  (:mod:`rt_recon.decode.auto_roi`).

Each is scored on the validation run(s) only (never a test run) with the
project's headline figure: two-way identification of the rendered frames in
the metric network's features (:func:`rt_recon.evaluate.semantic.evaluate_semantic`),
with its 95% bootstrap interval over trials, and each minus the oracle's on
the same trials (paired bootstrap). The chosen voxels' overlap with the
oracle ROIs (Dice, precision, recall) is printed beside. The issue's target:
automatic ROIs within 5 points of the oracle masks on identification.

``--timing`` also times the voxel choice alone at 100,000 brain voxels
(random estimates and targets of this session's sizes).

    python -m benchmarks.bench_auto_roi [--seeds 0] [--timing] [--figure out.png] [--json out.json]
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import numpy as np

from benchmarks._report import machine, write_json
from benchmarks.bench_decoders import _load_run, _load_session, _split

log = logging.getLogger("benchmarks.auto_roi")

#: Identification points (percent) the automatic ROIs may lose to the oracle masks.
TARGET_POINTS = 5.0


def overlap(chosen: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Dice, precision (share of ``chosen`` in ``truth``) and recall of two channel sets."""
    both = len(np.intersect1d(chosen, truth))
    return {
        "n": len(chosen),
        "dice": 2 * both / max(1, len(chosen) + len(truth)),
        "precision": both / max(1, len(chosen)),
        "recall": both / max(1, len(truth)),
    }


def _wins(evaluation, net) -> np.ndarray:
    """Each trial's share of distractors beaten in the metric network's features."""
    from rt_recon.evaluate.metrics import correlation_matrix
    from rt_recon.evaluate.trials import match_size

    recons = match_size(evaluation.recons, evaluation.truths.shape[1:3])
    corr = correlation_matrix(net.features(recons), net.features(evaluation.truths))
    return (corr < np.diag(corr)[:, None]).sum(axis=1) / (len(corr) - 1)


def _paired(diff: np.ndarray) -> tuple[float, float, float]:
    rng = np.random.default_rng(0)
    boot = diff[rng.integers(0, len(diff), (2000, len(diff)))].mean(axis=1)
    return float(diff.mean()), float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def session_result(seed: int | None, model, net, renderer_for) -> dict[str, Any]:
    """Fit the three ways on one participant, score on its validation runs."""
    from rt_recon.acquire.masks import load_mask
    from rt_recon.decode.bundle import ModelSpec, StreamSpec
    from rt_recon.decode.fit import Targets, TrainingRun, fit_decoders
    from rt_recon.decode.recipe import DecoderRecipe
    from rt_recon.evaluate.offline import evaluate_run
    from rt_recon.evaluate.semantic import evaluate_semantic
    from rt_recon.render.targets import encode_captions, encode_images

    config, dataset = _load_session(None, seed)
    train_files, val_files, _, where = _split(dataset)
    train = [_load_run(f) for f in train_files]
    shape, affine = train[0].shape, train[0].affine
    masks = {m: load_mask(dataset.mask_path(m), shape, affine) for m in ("ev", "hv", "brain")}
    oracle_paths = dataset.manifest.get("oracle_masks")
    if not oracle_paths:
        raise SystemExit(f"{dataset.root}: no oracle_masks in the manifest (realistic only)")
    oracle = {m: load_mask(dataset.root / p, shape, affine) for m, p in oracle_paths.items()}
    ids = np.array(
        sorted({int(e["stimulus_id"]) for r in train for e in r.events if "stimulus_id" in e})
    )
    targets = Targets(
        ids,
        {
            "z": encode_images(model, dataset.stimulus_images(ids)),
            "c": encode_captions(model, dataset.captions(ids)),
        },
    )
    runs = [TrainingRun(r.volumes, r.events, r.tr_s) for r in train]
    stream = StreamSpec(shape, int(np.prod(shape)), "full", np.asarray(affine))
    spec = ModelSpec.from_json(model.describe())
    recipe = DecoderRecipe(**config.fit.recipe.model_dump())
    ways: dict[str, dict] = {
        "oracle": {"heads": {"z": oracle["ev"], "c": oracle["hv"]}, "noise": masks["brain"]},
        "atlas": {"heads": {"z": masks["ev"], "c": masks["hv"]}, "noise": masks["brain"]},
        "auto": {"heads": {"z": None, "c": None}, "noise": None},
    }
    out: dict[str, Any] = {
        "session": str(dataset.root),
        "validation": where,
        "recipe": recipe.name,
        "ways": {},
    }
    renderer = renderer_for(config)
    for name, way in ways.items():
        began = time.perf_counter()
        bundle = fit_decoders(
            runs,
            way["heads"],
            targets,
            {"z": model.latent_shape, "c": model.cond_shape},
            config.fit,
            stream,
            spec,
            recipe=recipe,
            noise_candidates=way["noise"],
        )
        fit_s = time.perf_counter() - began
        wins, idents, cis, ns = [], [], [], []
        for files in val_files:
            evaluation = evaluate_run(dataset, files, bundle, renderer)
            report = evaluate_semantic(evaluation.recons, evaluation.truths, net=net)
            idents.append(report.model.identification)
            cis.append(report.model.identification_ci)
            ns.append(report.model.n)
            wins.append(_wins(evaluation, net))
        entry: dict[str, Any] = {
            "fit_s": fit_s,
            "identification": idents,
            "identification_ci": cis,
            "n_trials": ns,
            "wins": np.concatenate(wins),
            "overlap": {
                "z vs oracle ev": overlap(bundle.heads["z"].voxels, oracle["ev"]),
                "c vs oracle hv": overlap(bundle.heads["c"].voxels, oracle["hv"]),
                "z vs oracle hv": overlap(bundle.heads["z"].voxels, oracle["hv"]),
                "c vs oracle ev": overlap(bundle.heads["c"].voxels, oracle["ev"]),
            },
            "voxels": bundle.report.get("voxels"),
            "select": bundle.report.get("select"),
        }
        if name == "auto":
            from rt_recon.decode.auto_roi import epi_brain_mask, mean_epi

            brain = epi_brain_mask(mean_epi([r.volumes for r in train], shape), affine)
            entry["brain_vs_simulator"] = overlap(brain, masks["brain"])
            entry["brain_covers"] = {
                roi: len(np.intersect1d(brain, v)) / len(v) for roi, v in oracle.items()
            }
            entry["bundle"] = bundle
        out["ways"][name] = entry
        print(
            f"  {name:<7} identification {np.mean(idents):.1%} ({fit_s:.0f} s fit); "
            f"z {len(bundle.heads['z'].voxels)} voxels, c {len(bundle.heads['c'].voxels)}",
            flush=True,
        )
    return out


def table(results: list[dict[str, Any]]) -> str:
    """Markdown: identification and overlap of each way, pooled over sessions."""
    lines = [
        "| ROIs | n val. trials | identification (95% CI) | Δ vs oracle, paired (95% CI) "
        "| z: voxels, Dice / precision / recall vs oracle EV | c: voxels, Dice / precision / "
        "recall vs oracle HV | fit s |",
        "|---|---|---|---|---|---|---|",
    ]
    rng = np.random.default_rng(0)
    oracle = np.concatenate([r["ways"]["oracle"]["wins"] for r in results])
    for name in ("oracle", "atlas", "auto"):
        wins = np.concatenate([r["ways"][name]["wins"] for r in results])
        boot = wins[rng.integers(0, len(wins), (2000, len(wins)))].mean(axis=1)
        lo, hi = np.percentile(boot, [2.5, 97.5])
        if name == "oracle":
            delta = "—"
        else:
            d, dlo, dhi = _paired(wins - oracle)
            delta = f"{100 * d:+.1f} pp ({100 * dlo:+.1f} to {100 * dhi:+.1f})"
        cells = []
        for key in ("z vs oracle ev", "c vs oracle hv"):
            o = [r["ways"][name]["overlap"][key] for r in results]
            mean = {k: np.mean([x[k] for x in o]) for k in ("n", "dice", "precision", "recall")}
            cells.append(
                f"{mean['n']:.0f}: {mean['dice']:.2f} / {mean['precision']:.2f} / "
                f"{mean['recall']:.2f}"
            )
        fit_s = sum(r["ways"][name]["fit_s"] for r in results)
        lines.append(
            f"| {name} | {len(wins)} | {wins.mean():.1%} ({lo:.1%}–{hi:.1%}) | {delta} | "
            f"{cells[0]} | {cells[1]} | {fit_s:.0f} |"
        )
    return "\n".join(lines)


def selection_timing(n_voxels: int = 100_000, n_trials: int = 432, n_runs: int = 12) -> dict:
    """Seconds to choose voxels for two heads among ``n_voxels`` (encoding, chance, counts)."""
    from rt_recon.decode import auto_roi
    from rt_recon.decode.ridge import ridge_cv_r2

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n_trials, n_voxels), dtype=np.float32)
    groups = np.repeat(np.arange(n_runs), n_trials // n_runs)
    y = {"z": rng.standard_normal((n_trials, 1024)), "c": rng.standard_normal((n_trials, 1024))}
    y["z"][:, :16] += x[:, :16] * 2  # a few voxels with signal, so both heads have candidates
    alphas = np.array([10.0, 100.0, 1e3, 1e4, 1e5])
    began = time.perf_counter()
    scores = auto_roi.encoding_scores(x, groups, y, alphas)
    chance = auto_roi.chance_thresholds(x, groups, y, alphas)
    encode_s = time.perf_counter() - began

    def decoder_score(head: str, keep: np.ndarray) -> float:
        return float(ridge_cv_r2(x[:, keep], y[head], groups, alphas).mean())

    chosen = auto_roi.choose_head_voxels(scores, decoder_score, chance)
    return {
        "n_voxels": n_voxels,
        "n_trials": n_trials,
        "encoding_and_chance_s": encode_s,
        "total_s": time.perf_counter() - began,
        "counts_tried": {h: list(c.report["decoder_cv_r2_by_count"]) for h, c in chosen.items()},
    }


def run(seeds: tuple[int | None, ...] = (None,), timing: bool = False, figure: str | None = None):
    from rt_recon.evaluate.metric_net import load_metric_net
    from rt_recon.render.embedded import resolve_model_path
    from rt_recon.render.factory import make_renderer
    from rt_recon.render.model import load_render_model

    config, _ = _load_session(None, seeds[0])
    model = load_render_model(resolve_model_path(config), with_text=True)
    net = load_metric_net()
    results = [
        session_result(seed, model, net, lambda c: make_renderer(model, c)) for seed in seeds
    ]
    out: dict[str, Any] = {"machine": machine(), "table": table(results)}
    if figure:
        from rt_recon.evaluate.mask_figure import draw_bundle_masks

        first = results[0]
        _, dataset = _load_session(None, seeds[0])
        train = [_load_run(f) for f in _split(dataset)[0]]
        from rt_recon.decode.auto_roi import mean_epi

        mean = mean_epi([r.volumes for r in train], train[0].shape)
        draw_bundle_masks(first["ways"]["auto"]["bundle"], mean, figure)
        out["figure"] = figure
    for r in results:
        r["ways"]["auto"].pop("bundle", None)
        for w in r["ways"].values():
            w["wins"] = w["wins"].tolist()
    out["results"] = results
    if timing:
        out["timing"] = selection_timing()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", help="participant seeds (default: config)")
    parser.add_argument("--timing", action="store_true")
    parser.add_argument("--figure", help="draw the auto masks of the first session here (PNG)")
    parser.add_argument("--json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = run(tuple(args.seeds) if args.seeds else (None,), args.timing, args.figure)
    print(f"\n{result['machine']}\n")
    print(result["table"])
    for r in result["results"]:
        auto = r["ways"]["auto"]
        print(
            f"\n{r['session']} (validation: {r['validation']}; recipe {r['recipe']}): EPI brain "
            f"mask vs simulator's: {auto['brain_vs_simulator']}; covers oracle "
            f"{ {k: round(v, 3) for k, v in auto['brain_covers'].items()} }"
        )
        for name, w in r["ways"].items():
            print(f"  {name}: {w['overlap']}")
    if "timing" in result:
        t = result["timing"]
        print(
            f"\nvoxel choice at {t['n_voxels']:,} voxels x {t['n_trials']} trials, two heads: "
            f"encoding + chance {t['encoding_and_chance_s']:.1f} s, total {t['total_s']:.1f} s"
        )
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
