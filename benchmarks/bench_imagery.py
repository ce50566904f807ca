"""Decoding imagery: vision-fitted decoders on cued imagery runs, beside the same pictures seen.

Each participant seed is a realistic synthetic participant (docs/simulation.md).
Its decoders are fitted on its vision training runs (the demo's fit, cached,
as :mod:`benchmarks.bench_accuracy`); then, on its second session, the vision
run of ``--role`` and the cued imagery run that cues the *same pictures*
(:mod:`rt_recon.simulators.imagery_runs`) are decoded, rendered once per
renderer seed and scored with :func:`~rt_recon.evaluate.semantic.
evaluate_semantic` (the headline identification and every baseline).

Conditions (:data:`CONDITIONS`), each ``(label, run, steps, strength, z)``:

* **trial mode** (the decoder knows each trial's onset from its marker, as the
  decoder node does: every onset received so far is given to the least-squares
  estimate; the estimate of a trial is taken at TR ``onset + lag``);
* **continuous mode** (imagery blocks without per-trial onsets): every TR's
  estimate assumes a trial began ``lag`` TRs earlier and that trials follow the
  training schedule (the bundle's ``period_trs``); scored at TR
  ``onset + lag`` of each imagery period;
* **z + c**: the decoded z (from early visual voxels) is the init latent and
  the decoded c (higher visual) the conditioning, the shipped renderer;
* **c only**: z replaced by the mean z of the training pictures (the same for
  every trial, so z carries nothing about the trial), same renderer settings:
  what the picture owes to c alone;
* imagery presets: z + c at a higher strength (0.75: 3 of 4 steps from the
  noised z; 1.0: all 4, z enters only under the largest noise, so c weighs the
  most).

Reported per condition: identification (and same-background identification)
mean ± SD over runs x renderer seeds, the SD over runs and over seeds, a 95%
t-interval over runs, n, and the baselines (as bench_accuracy's table). The
imagery preset is chosen on ``--role validation`` (the strength with the best
imagery identification, trial mode); the test runs are for the final figures.

    python -m benchmarks.bench_imagery [--seeds 0 1 2 3 4] [--render-seeds 0 1 2]
                                       [--role validation|test] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks._report import add_held_out_arguments, finish, machine
from benchmarks.bench_accuracy import HeldOutRun, aggregate, held_out_run, score_run, table

log = logging.getLogger(__name__)


def _config(config=None):
    """The demo's config (realistic participant) unless one is given."""
    from rt_recon.cli import DEFAULT_CONFIG
    from rt_recon.config import load_config

    return config if config is not None else load_config(DEFAULT_CONFIG).resolved()


def _shipped_renderer() -> tuple[int, float]:
    """``(steps, strength)`` of the demo config's renderer: what "shipped" means here."""
    renderer = _config().renderer
    return renderer.steps, renderer.strength


SHIPPED_STEPS, SHIPPED_STRENGTH = _shipped_renderer()
_SHIPPED = f"shipped: {SHIPPED_STEPS} steps, strength {SHIPPED_STRENGTH:g}"

#: ``(label, run, steps, strength, z)``: ``run`` one of vision, imagery, imagery continuous;
#: ``z`` decoded or mean (the training pictures' mean z: "c only"). The imagery presets are
#: the shipped strength, 0.75 and 1.0 (each once).
CONDITIONS: tuple[tuple[str, str, int, float, str], ...] = (
    (f"vision, z+c ({_SHIPPED})", "vision", SHIPPED_STEPS, SHIPPED_STRENGTH, "decoded"),
    ("vision, c only", "vision", SHIPPED_STEPS, SHIPPED_STRENGTH, "mean"),
    (f"imagery, z+c ({_SHIPPED})", "imagery", SHIPPED_STEPS, SHIPPED_STRENGTH, "decoded"),
    ("imagery, c only", "imagery", SHIPPED_STEPS, SHIPPED_STRENGTH, "mean"),
    *(
        (f"imagery, z+c, strength {strength}", "imagery", SHIPPED_STEPS, strength, "decoded")
        for strength in (0.75, 1.0)
        if strength != SHIPPED_STRENGTH
    ),
    (
        f"imagery, continuous mode, z+c (strength {SHIPPED_STRENGTH:g})",
        "imagery continuous", SHIPPED_STEPS, SHIPPED_STRENGTH, "decoded",
    ),
)  # fmt: skip
#: The imagery presets chosen between on the validation runs: (steps, strength) by label.
PRESETS = {c[0]: (c[2], c[3]) for c in CONDITIONS if c[1] == "imagery" and c[4] == "decoded"}
RUNS = ("vision", "imagery", "imagery continuous")
#: The imagery preset ``choose_preset`` picked on the validation runs (5 participants x 3
#: renderer seeds, 2026-12-04 in world version 1, and again 2026-12-05 in world version 2
#: with its model; docs/study-designs.md, "Imagery"), shipped in configs/imagery.yaml.
CHOSEN_PRESET = (4, 1.0)
#: What ``--role validation`` renders: enough to choose the preset (the imagery z+c strengths),
#: with vision and c only beside them; the test runs render every condition once.
VALIDATION_CONDITIONS = tuple(
    c for c in CONDITIONS if c[1] == "imagery" or c[0] == CONDITIONS[0][0]
)


def _session(config, seed: int):
    """Participant ``seed``'s vision session under ``config``'s simulation, and its settings."""
    from rt_recon.simulators.session import ensure_session

    sim = config.simulation.model_copy(update={"seed": seed})
    return sim, ensure_session(sim, config.paths.cache_dir, config.session.subject)


def onset_trs(events: list[dict], n_trs: int, tr_s: float) -> tuple[list[int], list[int]]:
    """Trials' onset TRs and stimulus ids (the trial rule: an event with a stimulus_id)."""
    from rt_recon.protocol import trial_samples

    samples = trial_samples(events, n_trs, tr_s, 0)
    return [t for t, _ in samples], [int(s) for _, s in samples]


def decode_trials(
    bundle, volumes: np.ndarray, onsets: Sequence[int], continuous: bool = False
) -> tuple[list[int], dict[str, np.ndarray]]:
    """Each trial's latents at its scored TR ``onset + lag`` (trials past the run left out).

    Trial mode (default): the estimate of the trial with that onset, every onset up to the
    TR known (as the decoder node passes them). ``continuous``: no onsets, the estimate of a
    trial assumed to have begun ``lag`` TRs before.
    """
    from rt_recon.decode.online import OnlineDecoder

    decoder = OnlineDecoder(bundle)
    lag = bundle.window.lag_trs
    scored = {o + lag: o for o in onsets if o + lag < len(volumes)}
    kept, latents = [], []
    for tr, volume in enumerate(volumes):
        features = decoder.preprocess(volume)
        if tr not in scored:
            decoder.estimate(features, tr)  # keeps the TR's features for later windows
            continue
        known = None if continuous else [o for o in onsets if o <= tr]
        onset = None if continuous else scored[tr]
        latents.append(decoder.decode(features, tr, trial_onset=onset, onsets=known))
        kept.append(scored[tr])
    decoded = {head: np.stack([lat[head] for lat in latents]) for head in ("z", "c")}
    return kept, decoded


def training_mean_z(dataset, model) -> np.ndarray:
    """The mean encoded z of the training runs' pictures (the z decoders' mean target)."""
    from rt_recon.acquire.events import read_events
    from rt_recon.apps.fit import training_runs
    from rt_recon.render.targets import encode_images

    ids = sorted(
        {
            int(e["stimulus_id"])
            for run in training_runs(dataset)
            for e in read_events(run.events)
            if "stimulus_id" in e and int(e["stimulus_id"]) >= 0
        }
    )
    return encode_images(model, dataset.stimulus_images(ids)).mean(axis=0)


def prepare_participant(config, seed: int, role: str, model, model_path) -> dict[str, HeldOutRun]:
    """Fit (cached), simulate the imagery runs (cached) and decode participant ``seed``'s
    ``role`` runs: ``{run kind: HeldOutRun}`` with ``mean_z`` for c only in each."""
    from rt_recon.acquire.nifti import load_nifti_run
    from rt_recon.apps.demo import ensure_bundle
    from rt_recon.decode.bundle import DecoderBundle
    from rt_recon.simulators.imagery_runs import ensure_imagery_runs

    sim, vision = _session(config, seed)
    imagery = ensure_imagery_runs(vision, sim)
    bundle = DecoderBundle.load(ensure_bundle(vision, model_path, config))
    out = {}
    for kind, dataset in (("vision", vision), ("imagery", imagery)):
        files = dataset.runs(role)[0]
        run = load_nifti_run(files.bold, files.events)
        onsets, ids = onset_trs(run.events, len(run.volumes), run.tr_s)
        modes = (False, True) if kind == "imagery" else (False,)
        for continuous in modes:
            kept, decoded = decode_trials(bundle, run.volumes, onsets, continuous)
            kept_ids = [sid for o, sid in zip(onsets, ids, strict=True) if o in set(kept)]
            name = f"{kind} continuous" if continuous else kind
            label = f"participant {seed}, {role} {kind} run {files.run}"
            out[name] = held_out_run(seed, label, vision, kept_ids, decoded, model_path, config)
    mean_z = training_mean_z(vision, model)
    for held in out.values():
        held.decoded["mean_z"] = np.broadcast_to(mean_z, held.decoded["z"].shape).copy()
    return out


def _with_z(held: HeldOutRun, z: str) -> HeldOutRun:
    if z == "decoded":
        return held
    return dataclasses.replace(held, decoded={"z": held.decoded["mean_z"], "c": held.decoded["c"]})


def summary_table(results: dict[str, dict], n_runs: int, n_seeds: int) -> str:
    """Markdown: one row per condition, identification with its spreads and the baselines."""
    rows = [
        "| condition | identification: mean ± SD (95% CI) [SD runs / seeds] | "
        "same-background | n trials | nearest training | wrong shape | shuffled |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, entry in results.items():
        s = entry["summary"]
        ident, same = s["model"]["identification"], s["model"]["same-background identification"]

        def pct(v: float) -> str:
            return f"{100 * v:.1f}%"

        def base(who: str, s: dict = s) -> str:
            return pct(s[who]["identification"]["mean"]) if who in s else "—"

        rows.append(
            f"| {label} | {pct(ident['mean'])} ± {pct(ident['sd'])} "
            f"({pct(ident['ci_low'])}–{pct(ident['ci_high'])}) "
            f"[{pct(ident['sd_runs'])} / {pct(ident['sd_seeds'])}] | {pct(same['mean'])} | "
            f"{entry['n_trials']} | {base('nearest training picture by decoded latents')} | "
            f"{base('true picture, wrong shape')} | {base('shuffled pairing')} |"
        )
    rows.append(
        f"\n{n_runs} runs (one per participant seed) x {n_seeds} renderer seeds; n trials: "
        "summed over the runs; baselines: mean over the same runs and seeds."
    )
    return "\n".join(rows)


def choose_preset(results: dict[str, dict]) -> tuple[str, float]:
    """The imagery preset with the highest mean identification (trial mode, z+c)."""
    scores = {
        label: results[label]["summary"]["model"]["identification"]["mean"]
        for label in PRESETS
        if label in results
    }
    best = max(scores, key=scores.__getitem__)
    return best, scores[best]


def run(
    config=None,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    render_seeds: Sequence[int] = (0, 1, 2),
    role: str = "validation",
    conditions: Sequence[tuple[str, str, int, float, str]] | None = None,
) -> dict:
    """Every condition on ``role``'s runs (default conditions: :data:`VALIDATION_CONDITIONS`
    on validation, :data:`CONDITIONS` on test)."""
    from rt_recon.render.embedded import resolve_model_path
    from rt_recon.render.model import load_render_model

    began = time.perf_counter()
    if conditions is None:
        conditions = VALIDATION_CONDITIONS if role == "validation" else CONDITIONS
    config = _config(config)
    if config.simulation.participant != "realistic":
        raise SystemExit("bench_imagery needs the realistic participant (its imagery model)")
    model_path = resolve_model_path(config)
    model = load_render_model(model_path, with_text=True)
    held = [prepare_participant(config, s, role, model, model_path) for s in seeds]
    prepared = time.perf_counter() - began
    out: dict[str, Any] = {
        "role": role,
        "seeds": list(seeds),
        "render_seeds": list(render_seeds),
        "machine": machine(),
        "runs": {kind: [h[kind].label for h in held] for kind in RUNS},
        "results": {},
    }
    for label, kind, steps, strength, z in conditions:
        reports = [
            [
                score_run(_with_z(h[kind], z), model, steps, strength, r, batch=True)
                for r in render_seeds
            ]
            for h in held
        ]
        summary = aggregate(reports)
        out["results"][label] = {
            "run": kind,
            "steps": steps,
            "strength": strength,
            "z": z,
            "n_trials": sum(h[kind].n_shown for h in held),
            "summary": summary,
            "table": table(summary, len(held), len(render_seeds)),
        }
        log.info(
            "%s: identification %.1f%%", label, 100 * summary["model"]["identification"]["mean"]
        )
    out["summary_table"] = summary_table(out["results"], len(held), len(render_seeds))
    if role == "validation" and any(label in out["results"] for label in PRESETS):
        out["chosen_preset"] = choose_preset(out["results"])  # chosen here, never on test
    out["window"] = _window(config, model_path, seeds[0])
    out["seconds_prepare"] = prepared
    out["seconds"] = time.perf_counter() - began
    return out


def _window(config, model_path, seed: int) -> dict[str, float]:
    """The decoder's window in TRs and seconds (continuous mode's sliding window)."""
    from rt_recon.apps.demo import ensure_bundle
    from rt_recon.decode.bundle import DecoderBundle

    _, vision = _session(config, seed)
    bundle = DecoderBundle.load(ensure_bundle(vision, model_path, config))
    temporal, tr_s = bundle.temporal_model, bundle.window.tr_s
    return {
        "lag_trs": temporal.lag_trs,
        "n_window": temporal.n_window,
        "period_trs": temporal.period_trs,
        "tr_s": tr_s,
        "lag_s": temporal.lag_trs * tr_s,
        "window_s": temporal.n_window * tr_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_held_out_arguments(parser, role="validation", participant=False)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    result = run(seeds=args.seeds, render_seeds=args.render_seeds, role=args.role)
    print(f"realistic participant, {args.role} runs; {result['machine']}")
    w = result["window"]
    print(
        f"decoder window: lag {w['lag_trs']} TRs ({w['lag_s']:g} s), {w['n_window']} TRs "
        f"({w['window_s']:g} s); continuous mode assumes a trial every {w['period_trs']} TRs"
    )
    print(f"\n{result['summary_table']}")
    if "chosen_preset" in result:
        label, score = result["chosen_preset"]
        print(f"\nimagery preset chosen on these validation runs: {label} ({100 * score:.1f}%)")
    for label, entry in result["results"].items():
        print(f"\n{label}:\n{entry['table']}")
    return finish(result, args.json, f" ({result['seconds_prepare']:.0f} s preparing)")


if __name__ == "__main__":
    raise SystemExit(main())
