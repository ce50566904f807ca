"""Fit in the break: 8 training runs of 150 TRs at a brain of about 100,000 voxels.

The visit's break is a few minutes: the decoders must be fitted from the training runs
in about a minute. The realistic synthetic participant on a (64, 76, 48) grid of 1.5 mm
voxels (233,472 voxels, ~42% of them brain), 8 training runs of 46 trials = 150 TRs each
(TR 1.5 s), is fitted for the embedded render model as ``rt-recon fit`` does
(:func:`rt_recon.apps.fit.fit_from_inputs`: read the runs, encode the pictures, preprocess,
fit), three ways, each timed from reading the first run to the bundle in memory:

* **plain ridge, atlas masks** (the baseline: the schema's default recipe, one canonical
  HRF, no denoising, every mask voxel);
* **shipped recipe, atlas masks** (``fit.recipe`` of configs/demo.yaml: HRF library,
  6 noise PCs, LSS trial estimates, voxel selection);
* **shipped recipe, no masks** (a brain mask from the mean EPI, each head's voxels
  chosen by cross-validated encoding: rt_recon/decode/auto_roi.py).

The session is generated once into ``--cache`` (minutes; not timed), and ``--touch-gib``
GiB of memory are written once before the first fit (:func:`benchmarks._report.touch_memory`:
a fresh VM backs memory on first touch at about 7 s per GiB). Each case runs
``--repeats`` times (default 1: a fit takes a minute or more on 2 cores); the median is
reported with the ratio against the baseline.

    python -m benchmarks.bench_fit [--repeats 1] [--cache /tmp/rt_recon_bench_fit] [--json OUT]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from benchmarks._report import Timing, machine, markdown_table, touch_memory, write_json
from rt_recon.apps.fit import fit_from_inputs
from rt_recon.apps.fit_inputs import FitInputs
from rt_recon.cli import DEFAULT_CONFIG
from rt_recon.config import load_config
from rt_recon.dataset import Dataset
from rt_recon.decode.recipe import DecoderRecipe
from rt_recon.render.embedded import resolve_model
from rt_recon.render.model import load_render_model
from rt_recon.simulators.session import ensure_session

log = logging.getLogger(__name__)

GRID, VOXEL_MM, N_RUNS, TRIALS = (64, 76, 48), 1.5, 8, 46  # 6 + 46 * 3 + 6 = 150 TRs
BASELINE = "plain ridge, atlas masks"


def _session(cache: Path) -> Dataset:
    config = load_config(DEFAULT_CONFIG)
    sim = config.simulation.model_copy(
        update={
            "grid": GRID,
            "voxel_size_mm": VOXEL_MM,
            "n_train_runs": N_RUNS,
            "trials_per_run": TRIALS,
        }
    )
    return ensure_session(sim, cache, config.session.subject)


def run(
    repeats: int = 1, cache: Path = Path("/tmp/rt_recon_bench_fit"), touch_gib: float = 6.0
) -> dict:
    config = load_config(DEFAULT_CONFIG)
    start = time.perf_counter()
    dataset = _session(cache)
    generate_s = time.perf_counter() - start
    touched_s = touch_memory(touch_gib)  # a fresh VM's first touch is not the fit's cost
    log.info("touched %.1f GiB of memory first in %.1f s", touch_gib, touched_s)
    model = load_render_model(resolve_model(config.renderer.model), with_text=True)
    shipped = DecoderRecipe(**config.fit.recipe.model_dump())
    cases = {
        BASELINE: (DecoderRecipe(), True),
        f"{shipped.name}, atlas masks": (shipped, True),
        f"{shipped.name}, no masks (voxels chosen)": (shipped, False),
    }
    rows, details = [], {}
    for name, (recipe, masks) in cases.items():
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            inputs = FitInputs.from_dataset(dataset)
            if not masks:
                inputs = dataclasses.replace(inputs, masks={})
            fitted = fit_from_inputs(inputs, model, config.fit, recipe=recipe)
            times.append(time.perf_counter() - t0)
        bundle = fitted.bundle
        details[name] = {
            "voxels": {h: len(head.voxels) for h, head in bundle.heads.items()},
            "cv_r2_mean": {h: e["cv_r2_mean"] for h, e in bundle.report["heads"].items()},
        }
        rows.append(Timing.of(name, times))
        log.info("%s: %.1f s", name, np.median(times))
    first = dataset.runs("train")[0]
    return {
        "machine": machine(),
        "grid": GRID,
        "voxel_size_mm": VOXEL_MM,
        "runs": N_RUNS,
        "trs_per_run": first.n_trs,
        "brain_voxels": _brain_voxels(dataset),
        "session_generation_s": generate_s,
        "memory_touched": {"gib": touch_gib, "s": touched_s},
        "rows": rows,
        "details": details,
        "table": markdown_table(rows, BASELINE),
    }


def _brain_voxels(dataset: Dataset) -> int:
    import nibabel as nib

    return int(np.count_nonzero(np.asarray(nib.load(dataset.mask_path("brain")).dataobj)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/rt_recon_bench_fit"))
    parser.add_argument(
        "--touch-gib", type=float, default=6.0,
        help="GiB of memory written once before the fits (a fresh VM's first touch is slow)",
    )  # fmt: skip
    parser.add_argument("--json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    result = run(args.repeats, args.cache, args.touch_gib)
    print(
        f"fit of {result['runs']} runs x {result['trs_per_run']} TRs, grid {result['grid']} "
        f"({result['brain_voxels']} brain voxels), embedded model; {result['machine']}; "
        f"session generated in {result['session_generation_s']:.0f} s (not timed below); "
        f"{result['memory_touched']['gib']:g} GiB touched first in "
        f"{result['memory_touched']['s']:.1f} s"
    )
    print(result["table"])
    for name, detail in result["details"].items():
        print(f"  {name}: voxels {detail['voxels']}, CV R2 mean {detail['cv_r2_mean']}")
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
