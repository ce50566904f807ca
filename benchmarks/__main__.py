"""Every benchmark in one command: each stage against its budget, beside its baseline.

    python -m benchmarks [--sections transport zmq ...] [--json out.json] [--docs PATH]

Runs, in one process each after the other (nothing else should load the
machine meanwhile): reconstruction accuracy with its spread over five test
runs and three renderer seeds beside its baselines, today's decoder and the shipped
recipe with and without ``c`` snapped to a caption bank (rendered, on the same runs), vision
vs imagery identification
on the same participants' cued imagery runs (z + c vs c only), the per-TR confidence's
calibration (identification by confidence quintile on the same runs), LSL transport (ours vs
plain pylsl), ZeroMQ latents (ours vs JSON arrays), decode at NSD scale (low
rank vs full rank) and the accuracy cost of low rank, the decoder recipes
side by side with today's decoder (quality on validation runs, per-TR cost at
NSD scale), per-TR preprocessing on the real Siemens run (ours vs a plain
scipy registration), the scanner bridge (inotify vs polling) and replay
pacing (target timestamps vs ``sleep(TR)``), rendering with the embedded
model (ours vs the stock diffusers img2img pipeline, torch vs ONNX Runtime,
1/2/4 steps), and the end-to-end latency of a 100-TR replay through the node
processes. Every baseline runs in the same process run as ours.

Output: a summary table (stage, ours, baseline, ratio, budget, verdict), the
tables of each section, JSON (``--json``) and, with ``--docs``, the same
markdown written between the markers in docs/performance.md. Budgets are the
CPU column of ../shared/DESIGN.md: a stage passes on its median, end to end
on its p95. Sections that need ``../shared/data`` are left out, with a note,
where it is absent.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks._report import Timing, machine, markdown_table, write_json
from rt_recon.config import BUDGET_PRESETS_MS

log = logging.getLogger("benchmarks")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "performance.md"
BEGIN = "<!-- python -m benchmarks: begin (generated, do not edit by hand) -->"
END = "<!-- python -m benchmarks: end -->"


@dataclass
class Stage:
    """One row of the summary: our figure for a stage, its baseline and its budget."""

    stage: str
    ours: str
    ours_ms: float  # the figure the budget is checked on
    baseline: str = "—"
    ratio: float | None = None
    budget_ms: float | None = None

    @property
    def verdict(self) -> str:
        if self.budget_ms is None:
            return "—"
        return "within" if self.ours_ms <= self.budget_ms else "**over**"


@dataclass
class Section:
    name: str
    title: str
    command: str
    body: str
    stages: list[Stage] = field(default_factory=list)
    seconds: float = 0.0
    raw: dict = field(default_factory=dict)


def _ratio(baseline: Timing, ours: Timing) -> float:
    return baseline.median_ms / ours.median_ms if ours.median_ms > 0 else float("inf")


def _ms(t: Timing) -> str:
    return f"{t.median_ms:.2f} ms median (p95 {t.p95_ms:.2f})"


def _row(stage: str, ours: Timing, baseline: Timing | None, budget: float | None) -> Stage:
    return Stage(
        stage,
        _ms(ours),
        ours.median_ms,
        "—" if baseline is None else f"{baseline.name}: {baseline.median_ms:.2f} ms",
        None if baseline is None else _ratio(baseline, ours),
        budget,
    )


# --------------------------------------------------------------------------- sections
def transport() -> Section:
    from benchmarks import bench_transport

    r = bench_transport.run(160_000, repeats=50)
    base, ours = r["rows"]
    return Section(
        "transport",
        "LSL transport of one volume (160,000 float32 voxels, loopback)",
        "python -m benchmarks.bench_transport",
        r["table"] + "\n\nLatency is push start → pull returned with the volume.",
        [_row("LSL transport, 160k voxels", ours, base, BUDGET_PRESETS_MS["cpu"]["lsl_transport"])],
        raw=r,
    )


def zmq_latents() -> Section:
    from benchmarks import bench_zmq

    r = bench_zmq.run(200)
    base, ours = r["rows"]
    return Section(
        "zmq",
        f"ZeroMQ latents message (z 4×64×64 + c 77×1024, {r['bytes']:,} bytes, loopback TCP)",
        "python -m benchmarks.bench_zmq",
        r["table"],
        [
            _row(
                "ZeroMQ latents, NSD-size z + c",
                ours,
                base,
                BUDGET_PRESETS_MS["cpu"]["zmq_latents"],
            )
        ],
        raw=r,
    )


def decode() -> Section:
    from benchmarks import bench_decode

    r = bench_decode.run(15_000, ranks=(32, 64, 128, 256), repeats=30)
    accuracy = bench_decode.accuracy_cost((16, 64, 128))
    snaps = bench_decode.snap_cost()
    base = r["rows"][0]
    best = min(r["rows"][1:], key=lambda t: t.median_ms)
    k128 = next(t for t in r["rows"] if t.name.startswith("low rank k=128"))
    snap_table = markdown_table([k128, *snaps], k128.name)
    body = (
        f"{r['voxels']:,} voxels → z {r['z']} + c {r['c']}, one BLAS thread (as the decoder "
        f"node), random weights:\n\n{r['table']}\n\n"
        "What low rank costs in accuracy, where a ground truth exists: the demo's session "
        "and embedded model (z and c of 1,024 values each, 432 training trials), its "
        f"{accuracy['run']} decoded and rendered (ranks are chosen there, never on the test "
        "run), identification in RGB pixels at 32×32 "
        f"(`python -m benchmarks.bench_decode --accuracy`):\n\n{accuracy['table']}\n\n"
        "What snapping c to a caption bank adds per TR (rt_recon.decode.caption_bank; "
        f"`python -m benchmarks.bench_decode --snap`), beside a decode at k=128:\n\n{snap_table}"
    )
    return Section(
        "decode",
        "Decode one TR at NSD scale: low rank vs full rank",
        "python -m benchmarks.bench_decode --accuracy",
        body,
        [
            _row("decode z + c, low rank k=128", k128, base, BUDGET_PRESETS_MS["cpu"]["decode"]),
            _row(
                f"decode z + c, fastest ({best.name})",
                best,
                base,
                BUDGET_PRESETS_MS["cpu"]["decode"],
            ),
            *[_row(f"added per TR: {t.name}", t, None, None) for t in snaps],
        ],
        raw={**r, "accuracy": accuracy, "snap": snaps},
    )


def preprocess() -> Section | None:
    if not (SHARED_DATA / "siemens_trio_mosaic_run").is_dir():
        return None
    from benchmarks import bench_preprocess

    r = bench_preprocess.run(n_volumes=80, n_baseline=3)
    rows = {t.name: t for t in r["rows"]}
    base = r["rows"][0]
    motion = next(t for n, t in rows.items() if n.startswith("ours: motion correction (estimate"))
    chain = next(t for n, t in rows.items() if n.startswith("whole chain, brain mask"))
    budget = BUDGET_PRESETS_MS["cpu"]["preprocess"]
    return Section(
        "preprocess",
        f"Preprocessing per TR, real Siemens Trio run 74×74×36 ({r['volumes']} volumes)",
        "python -m benchmarks.bench_preprocess",
        f"{r['table']}\n\nAgreement with SPM's real-time realignment (OpenNFT), "
        f"relative to volume 1:\n\n{r['accuracy_table']}",
        [
            _row("motion correction, one 74×74×36 volume", motion, base, budget),
            _row("whole preprocessing chain, brain mask", chain, base, budget),
        ],
        raw=r,
    )


def bridge() -> Section | None:
    if not (SHARED_DATA / "siemens_trio_mosaic_run").is_dir():
        return None
    from benchmarks import bench_bridge

    r = bench_bridge.run(speed=10.0, n_volumes=60, pacing_trs=100)
    base, ours = r["bridge"]
    (naive_name, naive), (_, paced) = r["pacing"].items()
    lines = [
        "| pacing | n | median abs ms | p95 abs ms | max abs ms | last ms | drift ms/TR |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, p in r["pacing"].items():
        lines.append(
            f"| {name} | {p['n']} | {p['median_abs_ms']:.2f} | {p['p95_abs_ms']:.2f} | "
            f"{p['max_abs_ms']:.2f} | {p['final_ms']:.2f} | {p['drift_ms_per_tr']:.3f} |"
        )
    c = r["conversion"]
    body = (
        f"Export simulator at 10x TR pace, volumes streamed {r['volumes']}, "
        f"issues: {r['issues'] or 'none'}.\n\nWriter closed the file → volume at the LSL "
        f"inlet:\n\n{r['tables']['end_to_end']}\n\nInside the bridge, file found complete → "
        f"LSL push:\n\n{r['tables']['bridge']}\n\nReplay pacing, 100 TRs at TR 0.5 s, inlet "
        "timestamps against the schedule:\n\n" + "\n".join(lines) + "\n\n"
        f"Conversion: {c.name}: median {c.median_ms:.2f} ms, p95 {c.p95_ms:.2f} ms (n={c.n})."
    )
    drift = Stage(
        "replay pacing, |timestamp − schedule| over 100 TRs",
        f"{paced['median_abs_ms']:.2f} ms median, last {paced['final_ms']:.2f} ms",
        paced["median_abs_ms"],
        f"{naive_name}: last {naive['final_ms']:.1f} ms",
        None,
    )
    return Section(
        "bridge",
        "Scanner bridge latency and replay pacing (Siemens 74×74×36 mosaics)",
        "python -m benchmarks.bench_bridge",
        body,
        [_row("bridge, file complete → LSL push", ours, base, None), drift],
        raw=r,
    )


def render() -> Section:
    from benchmarks import bench_render

    parts, stages = [], []
    for steps in (1, 2, 4):
        r = bench_render.run(steps=steps, strength=1.0, repeats=20, onnx=True)
        parts.append(f"**{steps} step(s)** ({r['unet_calls']} UNet calls):\n\n{r['table']}")
        base, ours = r["rows"][0], r["rows"][1]
        stages.append(
            _row(
                f"render, embedded model 64², {steps} step(s)",
                ours,
                base,
                BUDGET_PRESETS_MS["cpu"]["render"],
            )
        )
    return Section(
        "render",
        "Render one frame of the embedded model (64², CPU, strength 1)",
        "python -m benchmarks.bench_render --steps N --onnx",
        f"{r['torch_threads']} torch threads; the demo runs 4 steps at strength 0.5 "
        "(2 UNet calls).\n\n" + "\n\n".join(parts),
        stages,
    )


def end_to_end() -> Section:
    from benchmarks import bench_e2e

    r = bench_e2e.run(speed=4.0)
    lines = ["| stage | n | p50 ms | p95 ms | max ms | budget ms |", "|---|---|---|---|---|---|"]
    stages = []
    for s in r["rows"]:
        budget = "—" if s.budget_ms is None else f"{s.budget_ms:g}"
        lines.append(
            f"| {s.stage} | {s.n} | {s.p50_ms:.2f} | {s.p95_ms:.2f} | {s.max_ms:.1f} | {budget} |"
        )
    e2e = next(s for s in r["rows"] if s.stage == "end_to_end")
    stages.append(
        Stage(
            f"end to end p95, {r['n_trs']}-TR replay (volume timestamp → frame published)",
            f"{e2e.p95_ms:.1f} ms p95 (p50 {e2e.p50_ms:.1f})",
            e2e.p95_ms,
            budget_ms=BUDGET_PRESETS_MS["cpu"]["end_to_end"],
        )
    )
    body = (
        f"The demo's session and embedded model through recorder, renderer and decoder "
        f"processes, {r['n_trs']} TRs of TR {r['tr_s']} s replayed at {r['speed']:g}x; "
        f"{r['frames']} frames, {r['stale_skipped']} stale latents skipped. Per-stage times "
        "from the frame headers (LSL clock):\n\n" + "\n".join(lines)
    )
    return Section(
        "e2e",
        "End to end over a replay through the node processes",
        "python -m benchmarks.bench_e2e",
        body,
        stages,
        raw=r,
    )


def decoders() -> Section:
    from benchmarks import bench_decoders

    r = bench_decoders.run("realistic", seeds=(0,))  # docs/performance.md: six seeds
    rows = {row["recipe"]: row for row in r["timing"]["rows"]}
    today = rows["today (baseline)"]
    best = rows.get(r["best_name"], today)
    budgets = BUDGET_PRESETS_MS["cpu"]
    body = (
        f"Synthetic session ({r['participant']} participant, seed 0; the six-seed figures are "
        f"under 'Decoders side by side'), embedded model, best "
        f"combination: {r['best_name']}.\n\n{r['table']}\n\nRendered, today vs best:\n\n"
        f"{r['rendered']['table']}\n\nPer-TR cost at NSD scale:\n\n{r['timing']['table']}"
    )
    return Section(
        "decoders",
        "Decoders side by side (recipes against today's decoder)",
        "python -m benchmarks.bench_decoders --participant realistic --seeds 0",
        body,
        [
            _row(
                f"preprocess, {r['best_name']} decoder",
                best["preprocess"],
                today["preprocess"],
                budgets["preprocess"],
            ),
            _row(
                f"decode, {r['best_name']} decoder",
                best["decode"],
                today["decode"],
                budgets["decode"],
            ),
        ],
        raw=r,
    )


def accuracy() -> Section:
    from benchmarks import bench_accuracy

    r = bench_accuracy.run()  # 5 test runs (participant seeds 0-4) x 3 renderer seeds
    ((key, entry),) = r["results"].items()
    missing = "".join(
        f"\n\n{name}: not available ({why})" for name, why in entry["not_available"].items()
    )
    body = (
        f"{r['participant']} participant, its test runs ({', '.join(r['runs'])}; "
        f"{sum(r['n_trials'])} trials), renderer {key}, seeds "
        f"{', '.join(map(str, r['render_seeds']))}; figures of docs/metrics.md, each "
        f"beside its baselines:\n\n{entry['table']}{missing}"
    )
    return Section(
        "accuracy",
        "Reconstruction accuracy over runs and renderer seeds, beside baselines",
        "python -m benchmarks.bench_accuracy",
        body,
        [],
        raw=r,
    )


def snap() -> Section:
    from benchmarks import bench_snap

    r = bench_snap.run(role="test")  # chosen on --role validation: docs/performance.md
    body = (
        f"{r['participant']} participant, its test runs, renderer {r['renderer']}: today's "
        "decoder, the shipped recipe, each with c snapped to the render model's caption bank "
        f"(rt_recon.decode.caption_bank), scored by the headline metric:\n\n{bench_snap.table(r)}"
    )
    return Section(
        "snap",
        "Rendered decoders side by side: today's, the shipped recipe, each with c snapped",
        "python -m benchmarks.bench_snap --role test",
        body,
        [],
        raw=r,
    )


def confidence() -> Section:
    from benchmarks import bench_confidence

    r = bench_confidence.run()  # 5 test runs (participant seeds 0-4) x 3 renderer seeds
    entry = r["results"][r["used"]]
    nsd = r["cost"]["nsd"]
    body = (
        f"{r['participant']} participant, its test runs ({', '.join(r['runs'])}; "
        f"{sum(r['n_trials'])} trials), renderer seeds {', '.join(map(str, r['render_seeds']))}; "
        f"the confidence on heads {r['used']} at each trial's scored TR, and its per-trial "
        f"two-way identification (metric-net features, mean over renderer seeds):\n\n"
        f"{entry['table']}"
    )
    return Section(
        "confidence",
        "Per-TR confidence: identification by confidence quintile",
        "python -m benchmarks.bench_confidence",
        body,
        [
            Stage(
                "confidence per TR (NSD scale, z and c)",
                f"{nsd['median_ms']:.3f} ms",
                nsd["median_ms"],
            )
        ],
        raw=r,
    )


def imagery() -> Section:
    from benchmarks import bench_imagery

    r = bench_imagery.run(role="test")  # 5 test runs x 3 renderer seeds, every condition
    w = r["window"]
    body = (
        "The realistic participant's vision-fitted decoders on its cued imagery test runs "
        '(the same pictures as its vision test runs; docs/study-designs.md, "Imagery"); '
        f"continuous mode's window: lag {w['lag_trs']} TRs ({w['lag_s']:g} s), "
        f"{w['n_window']} TRs ({w['window_s']:g} s):\n\n{r['summary_table']}"
    )
    return Section(
        "imagery",
        "Imagery: vision vs imagery identification, z + c vs c only",
        "python -m benchmarks.bench_imagery --role test",
        body,
        [],
        raw=r,
    )


SECTIONS: dict[str, Callable[[], Section | None]] = {
    "accuracy": accuracy,
    "snap": snap,
    "imagery": imagery,
    "confidence": confidence,
    "transport": transport,
    "zmq": zmq_latents,
    "decode": decode,
    "decoders": decoders,
    "preprocess": preprocess,
    "bridge": bridge,
    "render": render,
    "e2e": end_to_end,
}


# --------------------------------------------------------------------------- report
def summary_table(sections: list[Section]) -> str:
    lines = [
        "| stage | ours | baseline (same run) | speed-up | budget | |",
        "|---|---|---|---|---|---|",
    ]
    for section in sections:
        for s in section.stages:
            ratio = "—" if s.ratio is None else f"{s.ratio:.1f}x"
            budget = "—" if s.budget_ms is None else f"≤ {s.budget_ms:g} ms"
            lines.append(
                f"| {s.stage} | {s.ours} | {s.baseline} | {ratio} | {budget} | {s.verdict} |"
            )
    return "\n".join(lines)


def markdown(sections: list[Section], skipped: list[str], total_s: float) -> str:
    date = datetime.date.today().isoformat()
    parts = [
        f"## All stages (`python -m benchmarks`, {date})",
        "",
        f"{machine()}, CPU only; {total_s / 60:.1f} min for the whole command. Budgets: the CPU "
        "column of DESIGN.md (stages on their median, end to end on its p95).",
        "",
        summary_table(sections),
    ]
    if skipped:
        parts += ["", f"Left out (no ../shared/data here): {', '.join(skipped)}."]
    for section in sections:
        parts += [
            "",
            f"### {section.title}",
            "",
            f"`{section.command}` ({section.seconds:.0f} s)",
            "",
            section.body,
        ]
    return "\n".join(parts)


def write_docs(path: Path, text: str) -> None:
    """Replace the generated block of ``path`` (between the markers), or append one."""
    block = f"{BEGIN}\n{text}\n{END}"
    old = path.read_text() if path.is_file() else "# Performance\n"
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        new = head + block + rest.split(END, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--json", type=Path, help="write every figure as JSON here")
    parser.add_argument(
        "--docs", type=Path, nargs="?", const=DOCS, help=f"write the tables into {DOCS.name}"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    sections, skipped = [], []
    for name in args.sections:
        began = time.perf_counter()
        print(f"[{name}] running ...", flush=True)
        section = SECTIONS[name]()
        if section is None:
            skipped.append(name)
            print(f"[{name}] left out: {SHARED_DATA} is absent", flush=True)
            continue
        section.seconds = time.perf_counter() - began
        sections.append(section)
        print(f"[{name}] {section.seconds:.0f} s", flush=True)
    total = time.perf_counter() - start
    text = markdown(sections, skipped, total)
    print("\n" + text)
    if args.json:
        write_json(
            args.json,
            {
                "machine": machine(),
                "seconds": total,
                "sections": {s.name: {"stages": s.stages, "raw": s.raw} for s in sections},
            },
        )
    if args.docs:
        write_docs(args.docs, text)
        print(f"\nwrote {args.docs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
