"""Decode one TR at NSD scale: full-rank vs low-rank (target PCA) heads, same run.

Scale from Takagi & Nishimoto's setting: 15,000 voxels in, ``z`` of
4x64x64 (16,384 values) and ``c`` of 77x1024 (78,848 values) out, both heads
reading all voxels. Weights are random (timing does not depend on their
values); a "decode" is what the decoder node does per TR after
preprocessing: project, add to the HRF window, expand (low rank), add the
intercept (``OnlineDecoder.decode``).

The accuracy cost of low rank cannot be read off random weights, so
``--accuracy`` measures it where a ground truth exists: the demo's synthetic
session and embedded model, decoders fitted full rank and at each rank, the
held-out test run decoded and rendered, scored by CV R^2 per head and by
two-way identification (RGB pixels at 32x32).

``--snap`` times what snapping ``c`` to a caption bank adds per TR
(:mod:`rt_recon.decode.caption_bank`), at the embedded model's scale and at NSD's.

    python -m benchmarks.bench_decode [--voxels 15000] [--ranks 32 64 128 256] [--no-full]
                                      [--accuracy [--accuracy-ranks 16 64 128]] [--snap]
"""

from __future__ import annotations

import argparse

import numpy as np
from threadpoolctl import threadpool_limits

from benchmarks._report import Timing, machine, markdown_table, timed_calls, write_json
from rt_recon.decode.bundle import DecoderBundle, DecoderHead, ModelSpec, StreamSpec, WindowSpec
from rt_recon.decode.online import OnlineDecoder
from rt_recon.preprocess import PreprocessSpec

Z_SHAPE, C_SHAPE = (4, 64, 64), (77, 1024)


def _bundle(n_voxels: int, rank: int | None, rng: np.random.Generator) -> DecoderBundle:
    heads = {}
    for name, shape in (("z", Z_SHAPE), ("c", C_SHAPE)):
        n_targets = int(np.prod(shape))
        n_out = n_targets if rank is None else rank
        heads[name] = DecoderHead(
            name=name,
            voxels=np.arange(n_voxels),
            weights=rng.standard_normal((n_voxels, n_out), dtype=np.float32),
            intercept=np.zeros(n_targets, np.float32),
            alphas=np.ones(n_out, np.float32),
            target_shape=shape,
            components=None
            if rank is None
            else rng.standard_normal((rank, n_targets), dtype=np.float32),
        )
    return DecoderBundle(
        heads=heads,
        stream=StreamSpec((n_voxels, 1, 1), n_voxels),
        preprocess=PreprocessSpec(zscore_warmup_trs=4),
        window=WindowSpec((0.26, 0.37, 0.37), lag_trs=6, tr_s=1.5),
        model=ModelSpec("bench", Z_SHAPE, C_SHAPE, 512),
    )


def _time_decode(bundle: DecoderBundle, repeats: int, rng: np.random.Generator) -> list[float]:
    decoder = OnlineDecoder(bundle)
    features = rng.standard_normal(len(decoder.voxels), dtype=np.float32)
    return timed_calls(lambda: decoder.decode(features), repeats)


def run(
    n_voxels: int = 15_000,
    ranks=(32, 64, 128, 256),
    repeats: int = 30,
    full: bool = True,
    threads: int = 1,
) -> dict:
    rng = np.random.default_rng(0)
    rows = []
    with threadpool_limits(threads):  # the decoder node runs with one BLAS thread
        if full:
            bundle = _bundle(n_voxels, None, rng)
            rows.append(
                Timing.of("full rank (baseline)", _time_decode(bundle, max(5, repeats // 5), rng))
            )
            del bundle
        for rank in ranks:
            bundle = _bundle(n_voxels, rank, rng)
            rows.append(
                Timing.of(f"low rank k={rank} per head", _time_decode(bundle, repeats, rng))
            )
    return {
        "voxels": n_voxels,
        "z": Z_SHAPE,
        "c": C_SHAPE,
        "blas_threads": threads,
        "machine": machine(),
        "rows": rows,
        "table": markdown_table(rows, rows[0].name),
    }


#: Caption banks timed by :func:`snap_cost`: (label, c shape, captions, components kept).
SNAP_CASES = (
    ("embedded model: c (16, 64), 30,088 captions, 166 components", (16, 64), 30_088, 166),
    ("NSD scale: c (77, 1024), 10,000 captions, 144 components", C_SHAPE, 10_000, 144),
    ("NSD scale: c (77, 1024), 10,000 captions, 256 components", C_SHAPE, 10_000, 256),
)


def _random_bank(shape, n: int, k: int, rng: np.random.Generator):
    """A :class:`CaptionBank` of the given size with random arrays (the time of a snap does
    not depend on their values; building a real one at NSD scale would need 3 GB)."""
    from rt_recon.decode.caption_bank import CaptionBank

    d = int(np.prod(shape))
    components, _ = np.linalg.qr(rng.standard_normal((d, k), dtype=np.float32))
    scores = rng.standard_normal((n, k), dtype=np.float32)
    scores /= np.linalg.norm(scores, axis=1, keepdims=True)
    embeddings = np.zeros((n, d), np.float16)  # calloc'd: a snap reads one row
    return CaptionBank(embeddings, np.zeros(d, np.float32), components.T.copy(), scores)


def snap_cost(repeats: int = 30, threads: int = 1, cases=SNAP_CASES) -> list[Timing]:
    """Per TR, what snapping ``c`` to a caption bank adds (:meth:`CaptionBank.snap`), one BLAS
    thread, for each of ``cases`` (default :data:`SNAP_CASES`)."""
    rng = np.random.default_rng(0)
    rows = []
    with threadpool_limits(threads):
        for label, shape, n, k in cases:
            bank = _random_bank(shape, n, k, rng)
            c = rng.standard_normal(shape, dtype=np.float32)
            times = timed_calls(lambda bank=bank, c=c: bank.snap(c), repeats)
            rows.append(Timing.of(f"snap c: {label}", times))
    return rows


def accuracy_cost(ranks=(16, 64, 128)) -> dict:
    """Full rank vs low rank on the demo session: CV R^2 per head and identification."""
    from rt_recon.apps.fit import fit_dataset
    from rt_recon.cli import DEFAULT_CONFIG
    from rt_recon.config import load_config
    from rt_recon.evaluate.offline import evaluate_run
    from rt_recon.render.embedded import resolve_model_path
    from rt_recon.render.img2img import Img2ImgRenderer
    from rt_recon.render.model import load_render_model
    from rt_recon.simulators.session import ensure_session

    config = load_config(DEFAULT_CONFIG).resolved()
    dataset = ensure_session(config.simulation, config.paths.cache_dir, config.session.subject)
    model = load_render_model(resolve_model_path(config), with_text=True)
    rc = config.renderer
    renderer = Img2ImgRenderer(model, steps=rc.steps, strength=rc.strength, seed=rc.seed)
    # choices are made on the validation run; the test run is for the final figure only
    held_out = dataset.runs("validation") or dataset.runs("test")
    run = held_out[0]
    rows = []
    for rank in (None, *ranks):
        low_rank = {} if rank is None else {"z": rank, "c": rank}
        bundle = fit_dataset(dataset, model, config.fit.model_copy(update={"low_rank": low_rank}))
        heads = bundle.report["heads"]
        scores = evaluate_run(dataset, run, bundle, renderer).scores
        rows.append(
            {
                "rank": rank,
                "cv_r2": {h: float(e["cv_r2_mean"]) for h, e in heads.items()},
                "variance_kept": {h: e.get("target_variance_kept", 1.0) for h, e in heads.items()},
                "identification": scores.identification,
                "pixcorr": scores.pixcorr,
                "n_trials": scores.n_trials,
            }
        )
    lines = [
        "| decoder | CV R² z * | CV R² c * | target variance kept z / c | identification "
        "| PixCorr |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = "full rank (baseline)" if r["rank"] is None else f"low rank k={r['rank']}"
        kept = " / ".join(f"{r['variance_kept'][h]:.2f}" for h in ("z", "c"))
        lines.append(
            f"| {name} | {r['cv_r2']['z']:.3f} | {r['cv_r2']['c']:.3f} | {kept} | "
            f"{100 * r['identification']:.1f}% | {r['pixcorr']:.3f} |"
        )
    lines.append(
        "\n\\* mean CV R² of what the ridge fits: every target at full rank, the k "
        "principal-component scores at low rank (the trailing scores are mostly noise), "
        "so the identification columns are the comparable ones."
    )
    return {
        "session": str(dataset.root),
        "run": f"{run.role} run {run.run}",
        "targets": {"z": list(model.latent_shape), "c": list(model.cond_shape)},
        "rows": rows,
        "table": "\n".join(lines),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--voxels", type=int, default=15_000)
    parser.add_argument("--ranks", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-full", action="store_true", help="skip the 5.7 GB full-rank case")
    parser.add_argument("--accuracy", action="store_true", help="also measure the accuracy cost")
    parser.add_argument("--accuracy-ranks", type=int, nargs="+", default=[16, 64, 128])
    parser.add_argument("--snap", action="store_true", help="also time snapping c to a bank")
    parser.add_argument("--json")
    args = parser.parse_args()
    result = run(args.voxels, args.ranks, args.repeats, not args.no_full, args.threads)
    print(
        f"decode one TR: {args.voxels} voxels -> z {Z_SHAPE} + c {C_SHAPE}; "
        f"{result['machine']}, {args.threads} BLAS thread(s)"
    )
    print(result["table"])
    if args.snap:
        result["snap"] = snap_cost(args.repeats, args.threads)
        base = [r for r in result["rows"] if r.name.startswith("low rank k=128")][:1]
        result["snap_table"] = markdown_table(base + result["snap"], base[0].name) if base else ""
        print("\nSnapping c to a caption bank, per TR, beside a decode at k=128 (baseline):")
        print(result["snap_table"])
    if args.accuracy:
        result["accuracy"] = accuracy_cost(args.accuracy_ranks)
        print(f"\nAccuracy cost on the demo session (embedded model, {result['accuracy']['run']}):")
        print(result["accuracy"]["table"])
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
