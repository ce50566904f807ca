"""Reconstruction accuracy with its spread: held-out runs x renderer seeds, beside baselines.

Each participant seed is its own synthetic participant (a session of the
config's participant, realistic by default: training runs, then a validation
and a test run on a second session). For each, the decoders are fitted on the
training runs (the demo's fit, cached), the held-out run of ``--role`` is
decoded from its volumes and rendered once per renderer seed (the session's
fixed noise), and every figure of :mod:`rt_recon.evaluate.semantic` is
computed for the reconstructions and for each baseline, with exactly the same
functions. Reported per figure: the mean over the runs x seeds, the SD over
all of them, the SD over runs (each run's mean over seeds) and over seeds
(each seed's mean over runs), min-max, and a 95% t-interval of the mean over
runs (the runs are independent participants; the seeds of one run are not).

Choices are made on ``--role validation`` (``--sweep`` renders each strength
and step count there); the test runs are for the final figures only.

    python -m benchmarks.bench_accuracy [--seeds 0 1 2 3 4] [--render-seeds 0 1 2]
                                        [--role test|validation] [--sweep] [--json out.json]
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks._report import add_held_out_arguments, finish, machine

log = logging.getLogger(__name__)

#: Renderer settings tried by ``--sweep`` on the validation runs: (steps, strength).
SWEEP = ((4, 0.25), (4, 0.5), (4, 0.75), (8, 0.5), (8, 0.75))

#: Takagi & Nishimoto's img2img (their code, yu-takagi/StableDiffusionReconstruction,
#: codes/diffusion_sd1/diffusion_decoding.py: strength 0.8, guidance scale 5.0 against the
#: empty prompt, the decoded z decoded to a picture and encoded again; 50 DDIM steps there,
#: 10 Euler steps here, the issue's "10 or more", to keep 5 x 3 renders affordable on a CPU).
TAKAGI = {"steps": 10, "strength": 0.8, "guidance_scale": 5.0, "vae_roundtrip": True}

#: t quantiles (0.975) by degrees of freedom, for the interval of a mean over few runs.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306}


@dataclass
class HeldOutRun:
    """One participant's held-out run, decoded: its trials' decoded latents and pictures."""

    seed: int
    label: str
    stimulus_ids: list[int]
    n_shown: int
    decoded: dict[str, np.ndarray]  # head -> (n, ...) at each scored trial's TR
    truths: np.ndarray
    world_baselines: dict[str, np.ndarray]
    config: Any


def _session(participant: str | None, seed: int):
    from benchmarks.bench_decoders import _load_session

    return _load_session(participant, seed)


def prepare_run(
    participant: str | None, seed: int, role: str, model, model_path, fit=None
) -> HeldOutRun:
    """Fit (cached) and decode participant ``seed``'s ``role`` run; build its baselines.
    ``fit``: a fit section to use instead of the demo config's."""
    from rt_recon.acquire.nifti import load_nifti_run
    from rt_recon.apps.demo import ensure_bundle
    from rt_recon.decode.bundle import DecoderBundle
    from rt_recon.evaluate.offline import decode_run
    from rt_recon.protocol import trial_samples

    config, dataset = _session(participant, seed)
    if fit is not None:
        config = config.model_copy(update={"fit": fit})
    runs = dataset.runs(role)
    if not runs:
        raise SystemExit(f"{dataset.root}: no {role} run (roles: train, validation, test)")
    files = runs[0]
    bundle = DecoderBundle.load(ensure_bundle(dataset, model_path, config))
    run = load_nifti_run(files.bold, files.events)
    latents = decode_run(bundle, run.volumes)
    samples = trial_samples(run.events, len(run.volumes), run.tr_s, bundle.window.lag_trs)
    trs = [tr for tr, _ in samples]
    ids = [int(sid) for _, sid in samples]
    decoded = {head: np.stack([latents[t][head] for t in trs]) for head in ("z", "c")}
    label = f"participant {seed}, {role} run {files.run}"
    return held_out_run(seed, label, dataset, ids, decoded, model_path, config)


def held_out_run(
    seed: int,
    label: str,
    dataset,
    ids: list[int],
    decoded: dict[str, np.ndarray],
    model_path,
    config,
) -> HeldOutRun:
    """A decoded run's trials with their true pictures and world baselines; ``dataset``: the
    synthetic session (its training runs give the nearest-training baseline)."""
    from rt_recon.apps.demo import nearest_training_pictures, wrong_shape_pictures
    from rt_recon.evaluate.semantic import NEAREST_TRAINING, WRONG_SHAPE
    from rt_recon.simulators.world import StimulusWorld

    sim = dataset.manifest["simulation"]  # this participant's (the config is the demo's)
    world = StimulusWorld(sim["seed"], sim["image_size"], int(sim.get("world_version", 1)))
    return HeldOutRun(
        seed=seed,
        label=label,
        stimulus_ids=ids,
        n_shown=len(ids),
        decoded=decoded,
        truths=dataset.stimulus_images(ids),
        world_baselines={
            WRONG_SHAPE: wrong_shape_pictures(world, ids),
            NEAREST_TRAINING: nearest_training_pictures(dataset, model_path, decoded),
        },
        config=config,
    )


def score_run(
    held: HeldOutRun,
    model,
    steps: int,
    strength: float,
    render_seed: int,
    guidance_scale: float = 1.0,
    vae_roundtrip: bool = False,
    batch: bool = False,
):
    """Render ``held``'s trials with one renderer seed and score them with the baselines.

    ``batch``: every trial in one diffusion call (:func:`render_batch`), for benchmarks that
    render thousands of frames on a CPU; pictures equal one-at-a-time rendering up to a
    grey level in a few pixels (float sums in another order).
    """
    from rt_recon.evaluate.semantic import evaluate_semantic
    from rt_recon.render.img2img import Img2ImgRenderer
    from rt_recon.render.targets import empty_caption

    uncond = empty_caption(model) if guidance_scale > 1 else None
    renderer = Img2ImgRenderer(
        model,
        steps=steps,
        strength=strength,
        seed=render_seed,
        guidance_scale=guidance_scale,
        uncond=uncond,
        vae_roundtrip=vae_roundtrip,
    )
    if batch:
        recons = render_batch(renderer, held.decoded["z"], held.decoded["c"])
    else:
        z, c = held.decoded["z"], held.decoded["c"]
        recons = np.stack([renderer.render(zi, ci) for zi, ci in zip(z, c, strict=True)])
    return evaluate_semantic(recons, held.truths, held.n_shown, held.world_baselines)


def render_batch(renderer, z: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``(n, C, h, w)`` z and ``(n, L, D)`` c -> ``(n, H, W, 3)`` uint8 in one diffusion call:
    what :meth:`~rt_recon.render.img2img.Img2ImgRenderer.render` gives each trial (the
    session's fixed noise, no blending, no VAE round trip)."""
    import torch

    from rt_recon.render.img2img import StartPoint, to_uint8

    if renderer.blend or renderer.vae_roundtrip:
        raise ValueError("render_batch renders trials independently: no blend, no VAE round trip")
    m = renderer.model
    start = StartPoint(
        torch.from_numpy(np.ascontiguousarray(z)).to(m.device, m.dtype),
        torch.from_numpy(np.ascontiguousarray(c)).to(m.device, m.dtype),
    )
    with torch.inference_mode():
        return to_uint8(renderer.denoise(start))


def _figures(scored) -> dict[str, float]:
    """The figures aggregated over runs and seeds, by name."""
    out = {
        "identification": scored.identification,
        "same-background identification": scored.same_background,
        "pixel identification": scored.pixel_identification,
        "PixCorr": scored.pixcorr,
        "SSIM": scored.ssim,
    }
    out.update({f"{head} agreement": value for head, value in scored.attributes.items()})
    return {k: float(v) for k, v in out.items() if v is not None}


def summarise(grid: np.ndarray) -> dict[str, float]:
    """``grid[run, seed]`` -> mean, SDs, range and the t-interval of the mean over runs."""
    per_run = grid.mean(axis=1)
    n_runs = len(per_run)
    sd_runs = float(per_run.std(ddof=1)) if n_runs > 1 else 0.0
    half = _T975.get(n_runs - 1, 1.96) * sd_runs / np.sqrt(n_runs) if n_runs > 1 else 0.0
    return {
        "mean": float(grid.mean()),
        "sd": float(grid.std(ddof=1)) if grid.size > 1 else 0.0,
        "sd_runs": sd_runs,
        "sd_seeds": float(grid.mean(axis=0).std(ddof=1)) if grid.shape[1] > 1 else 0.0,
        "min": float(grid.min()),
        "max": float(grid.max()),
        "ci_low": float(grid.mean() - half),
        "ci_high": float(grid.mean() + half),
    }


def aggregate(reports: list[list]) -> dict[str, dict[str, dict[str, float]]]:
    """``reports[run][seed]`` (SemanticReports) -> ``{who: {figure: summary}}``, ``who`` the
    model or a baseline."""
    who_sets: dict[str, list[list]] = {"model": [[r.model for r in row] for row in reports]}
    for name in reports[0][0].baselines:
        who_sets[name] = [[r.baselines[name] for r in row] for row in reports]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for who, sets in who_sets.items():
        figures = [[_figures(s) for s in row] for row in sets]
        names = [k for k in figures[0][0] if all(k in f for row in figures for f in row)]
        out[who] = {
            name: summarise(np.array([[f[name] for f in row] for row in figures])) for name in names
        }
    return out


def table(summary: dict[str, dict[str, dict[str, float]]], n_runs: int, n_seeds: int) -> str:
    """Markdown: one row per figure, the model's mean ± SD and interval, then the baselines'."""
    from rt_recon.evaluate.semantic import SHORT

    whos = list(summary)
    header = "| figure | model: mean ± SD (95% CI) [SD runs / seeds] | " + " | ".join(
        SHORT.get(w, w) for w in whos[1:]
    )
    lines = [header + " |", "|---" * len(whos) + "|---|"]
    for figure, s in summary["model"].items():
        pct = figure != "PixCorr" and figure != "SSIM"
        f = (lambda v: f"{100 * v:.1f}%") if pct else (lambda v: f"{v:.3f}")
        model = (
            f"{f(s['mean'])} ± {f(s['sd'])} ({f(s['ci_low'])}–{f(s['ci_high'])}) "
            f"[{f(s['sd_runs'])} / {f(s['sd_seeds'])}]"
        )
        others = [f(summary[w][figure]["mean"]) if figure in summary[w] else "—" for w in whos[1:]]
        lines.append(f"| {figure} | {model} | " + " | ".join(others) + " |")
    lines.append(
        f"\n{n_runs} runs (one per participant seed) x {n_seeds} renderer seeds; baselines: "
        "mean over the same runs and seeds."
    )
    return "\n".join(lines)


def run(
    participant: str | None = None,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    render_seeds: Sequence[int] = (0, 1, 2),
    role: str = "test",
    settings: tuple[int, float] | None = None,
    sweep: bool = False,
    takagi: bool = False,
) -> dict:
    from rt_recon.render.embedded import resolve_model_path
    from rt_recon.render.model import load_render_model

    began = time.perf_counter()
    config, _ = _session(participant, seeds[0])
    model_path = resolve_model_path(config)
    model = load_render_model(model_path, with_text=True)
    rc = config.renderer
    settings = settings or (rc.steps, rc.strength)
    held = [prepare_run(participant, s, role, model, model_path) for s in seeds]
    out: dict[str, Any] = {
        "participant": held[0].config.simulation.participant,
        "role": role,
        "seeds": list(seeds),
        "render_seeds": list(render_seeds),
        "runs": [h.label for h in held],
        "n_trials": [h.n_shown for h in held],
        "machine": machine(),
        "results": {},
    }
    runs: list[tuple[str, dict]] = [
        (f"steps {steps}, strength {strength:g}", {"steps": steps, "strength": strength})
        for steps, strength in (SWEEP if sweep else (settings,))
    ]
    if takagi:
        runs.append(("Takagi & Nishimoto: " + ", ".join(f"{k} {v}" for k, v in TAKAGI.items()),
                     TAKAGI))  # fmt: skip
    for key, kwargs in runs:
        reports = [[score_run(h, model, render_seed=r, **kwargs) for r in render_seeds]
                   for h in held]  # fmt: skip
        summary = aggregate(reports)
        out["results"][key] = {
            "summary": summary,
            "table": table(summary, len(held), len(render_seeds)),
            "not_available": reports[0][0].not_available,
        }
        log.info("%s: identification %.1f%%", key, 100 * summary["model"]["identification"]["mean"])
    out["seconds"] = time.perf_counter() - began
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_held_out_arguments(parser)
    parser.add_argument("--sweep", action="store_true", help="try SWEEP's settings (validation)")
    parser.add_argument(
        "--takagi", action="store_true", help="also render with Takagi & Nishimoto's settings"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.sweep and args.role == "test":
        parser.error("--sweep chooses settings: run it on --role validation, not on the test runs")
    result = run(
        args.participant,
        args.seeds,
        args.render_seeds,
        args.role,
        sweep=args.sweep,
        takagi=args.takagi,
    )
    print(f"{result['participant']} participant, {args.role} runs; {result['machine']}")
    for key, entry in result["results"].items():
        print(f"\n{key}:\n{entry['table']}")
        for name, why in entry["not_available"].items():
            print(f"  {name}: not available ({why})")
    return finish(result, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
