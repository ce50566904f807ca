"""Rendered decoders side by side: today's, the shipped recipe, and each with ``c`` snapped.

Issue #16's "a decoder that earns its score", judged by the headline metric on
rendered pictures (docs/metrics.md). For each participant seed (a synthetic
participant of the demo config, realistic by default), four decoders read the
same held-out run: *today* (the plain ridge decoder, the schema's default
recipe), *shipped* (the recipe of ``configs/demo.yaml``), and each with its
``c`` snapped to the render model's caption bank (``+snap``,
:mod:`rt_recon.decode.caption_bank`: the same heads, the bank added). Bundles
are the demo's, cached (:func:`rt_recon.apps.demo.ensure_bundle`); each run is
decoded from its volumes by the real online decoder, rendered with the
embedded model once per renderer seed, and scored with every baseline.

Reported per decoder: the mean over runs x seeds ± SD, the SD over runs and
over seeds, and each decoder's paired difference from *today* on the same runs
and seeds (mean, and a 95% t-interval over runs: the runs are independent
participants, the seeds of one run are not). Choose on ``--role validation``;
``--role test`` is for the final figures.

    python -m benchmarks.bench_snap [--role validation|test] [--seeds 0 1 2 3 4]
                                    [--render-seeds 0 1 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import numpy as np

from benchmarks._report import add_held_out_arguments, finish, machine
from benchmarks.bench_accuracy import _T975, prepare_run, score_run

log = logging.getLogger(__name__)

#: The figures compared (names of :func:`benchmarks.bench_accuracy._figures`).
FIGURES = ("identification", "same-background identification", "shape agreement")


def decoders(config) -> dict[str, Any]:
    """``{name: fit section}``: today's, the shipped recipe, each with ``c`` snapped."""
    from rt_recon.config import RecipeSection

    def with_recipe(recipe: RecipeSection):
        return config.fit.model_copy(update={"recipe": recipe})

    shipped = config.fit.recipe.model_copy(update={"snap_c": False})
    return {
        "today": with_recipe(RecipeSection()),
        "today+snap": with_recipe(RecipeSection(snap_c=True)),
        "shipped": with_recipe(shipped),
        "shipped+snap": with_recipe(shipped.model_copy(update={"snap_c": True})),
    }


def paired(grid: np.ndarray, base: np.ndarray) -> dict[str, float]:
    """Difference ``grid - base`` (``[run, seed]``): mean and a t-interval over runs."""
    per_run = (grid - base).mean(axis=1)
    n = len(per_run)
    half = _T975.get(n - 1, 1.96) * per_run.std(ddof=1) / np.sqrt(n) if n > 1 else 0.0
    mean = float(per_run.mean())
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half}


def run(participant=None, seeds=(0, 1, 2, 3, 4), render_seeds=(0, 1, 2), role="validation"):
    from benchmarks.bench_accuracy import _session
    from rt_recon.evaluate.semantic import NEAREST_TRAINING, WRONG_SHAPE
    from rt_recon.render.embedded import resolve_model_path
    from rt_recon.render.model import load_render_model

    began = time.perf_counter()
    config, _ = _session(participant, seeds[0])
    model_path = resolve_model_path(config)
    model = load_render_model(model_path, with_text=True)
    rc = config.renderer
    grids: dict[str, dict[str, np.ndarray]] = {}
    n_trials: list[int] = []
    for name, fit in decoders(config).items():
        rows = []
        for seed in seeds:
            held = prepare_run(participant, seed, role, model, model_path, fit)
            if name == "today":
                n_trials.append(held.n_shown)
            rows.append(
                [score_run(held, model, rc.steps, rc.strength, r, batch=True) for r in render_seeds]
            )
            log.info("%s, %s: rendered", name, held.label)
        figures = {
            f: np.array([[_value(rep.model, f) for rep in row] for row in rows]) for f in FIGURES
        }
        for who, key in (("nearest training", NEAREST_TRAINING), ("wrong shape", WRONG_SHAPE)):
            figures[f"{who} identification"] = np.array(
                [[rep.baselines[key].identification for rep in row] for row in rows]
            )
        grids[name] = figures
    out: dict[str, Any] = {
        "participant": config.simulation.participant if participant is None else participant,
        "role": role,
        "seeds": list(seeds),
        "render_seeds": list(render_seeds),
        "n_trials": n_trials,
        "renderer": {"steps": rc.steps, "strength": rc.strength},
        "machine": machine(),
        "results": {},
    }
    for name, figures in grids.items():
        out["results"][name] = {
            f: {
                "mean": float(g.mean()),
                "sd": float(g.std(ddof=1)),
                "sd_runs": float(g.mean(axis=1).std(ddof=1)) if len(seeds) > 1 else 0.0,
                "sd_seeds": float(g.mean(axis=0).std(ddof=1)) if len(render_seeds) > 1 else 0.0,
                "vs_today": paired(g, grids["today"][f]),
            }
            for f, g in figures.items()
        }
    out["seconds"] = time.perf_counter() - began
    return out


def _value(scored, figure: str) -> float:
    if figure == "identification":
        return scored.identification
    if figure == "same-background identification":
        return scored.same_background
    return scored.attributes[figure.split()[0]]


def table(result: dict) -> str:
    cols = [*FIGURES, "nearest training identification", "wrong shape identification"]
    lines = [
        "| decoder | " + " | ".join(cols) + " | Δ identification vs today (95% CI) |",
        "|---" * (len(cols) + 2) + "|",
    ]
    for name, figs in result["results"].items():
        cells = [f"{100 * figs[c]['mean']:.1f}% ± {100 * figs[c]['sd']:.1f}" for c in cols]
        d = figs["identification"]["vs_today"]
        low, high = 100 * d["ci_low"], 100 * d["ci_high"]
        delta = "—" if name == "today" else f"{100 * d['mean']:+.1f} pp ({low:+.1f} to {high:+.1f})"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {delta} |")
    n = result["n_trials"]
    lines.append(
        f"\n{len(n)} runs ({sum(n)} trials) x {len(result['render_seeds'])} renderer seeds; "
        "± is the SD over runs x seeds; baselines from each decoder's own latents."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_held_out_arguments(parser, role="validation")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    result = run(args.participant, args.seeds, args.render_seeds, args.role)
    print(f"{result['participant']} participant, {args.role} runs; {result['machine']}")
    print(table(result))
    return finish(result, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
