"""Reconstruction accuracy against noise: the embedded default's SNR curve.

For each SNR: generate a synthetic session, fit the decoders for the
embedded model, decode and render the held-out test run offline (the same
objects as the live nodes), and score two-way identification in pixel space;
beside it, the split-half reliability of single-trial voxel responses.
Every other setting is configs/demo.yaml's.

    python -m training.snr_curve --out docs/embedded [--snrs 0.1 0.2 0.5 1.0]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from rt_recon.apps.fit import fit_dataset
from rt_recon.cli import DEFAULT_CONFIG
from rt_recon.config import SessionConfig, load_config
from rt_recon.evaluate.offline import evaluate_run
from rt_recon.render.embedded import EMBEDDED_DIR
from rt_recon.render.img2img import Img2ImgRenderer
from rt_recon.render.model import load_render_model
from rt_recon.simulators.reliability import split_half_reliability
from rt_recon.simulators.session import generate_session

log = logging.getLogger("snr_curve")


def measure(snr: float, model, work: Path, demo: SessionConfig) -> dict:
    """One point of the curve, with every other setting as in configs/demo.yaml."""
    sim = demo.simulation.model_copy(update={"snr": snr})
    dataset = generate_session(sim, work / f"snr-{snr:g}")
    bundle = fit_dataset(dataset, model, demo.fit)
    rc = demo.renderer
    renderer = Img2ImgRenderer(model, steps=rc.steps, strength=rc.strength, seed=rc.seed)
    evaluation = evaluate_run(dataset, dataset.runs("test")[0], bundle, renderer)
    reliability = split_half_reliability(sim, demo.fit)
    roi = np.concatenate([reliability["ev"], reliability["hv"]])
    return {
        "snr": snr,
        "identification": evaluation.scores.identification,
        "pixcorr": evaluation.scores.pixcorr,
        "n_trials": evaluation.scores.n_trials,
        "reliability_median_roi": float(np.median(roi)),
        "reliability_median_ev": float(np.median(reliability["ev"])),
        "reliability_median_hv": float(np.median(reliability["hv"])),
        "cv_r2": {h: e["cv_r2_mean"] for h, e in bundle.report["heads"].items()},
    }


def plot(rows: list[dict], path: Path, default_snr: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    snr = [r["snr"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot(snr, [100 * r["identification"] for r in rows], "o-", label="two-way identification")
    ax.axhline(50, color="grey", lw=0.8, ls=":", label="chance")
    ax.axvline(default_snr, color="k", lw=0.8, ls="--", label="default SNR")
    ax.set_xscale("log")
    ax.set_xlabel("SNR (stimulus-driven BOLD std / noise std)")
    ax.set_ylabel("identification, % (RGB pixels 32x32)")
    ax.set_ylim(40, 101)
    ax2 = ax.twinx()
    ax2.plot(
        snr,
        [r["reliability_median_roi"] for r in rows],
        "s--",
        color="tab:orange",
        label="split-half reliability (median ROI voxel)",
    )
    ax2.set_ylabel("single-trial reliability r")
    ax2.set_ylim(-0.05, 1.0)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/embedded"))
    parser.add_argument(
        "--snrs", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0, 2.0]
    )
    args = parser.parse_args()
    demo = load_config(DEFAULT_CONFIG)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    model = load_render_model(EMBEDDED_DIR, with_text=True)
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for snr in args.snrs:
            rows.append(measure(snr, model, Path(tmp), demo))
            log.info("%s", rows[-1])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "accuracy_vs_snr.json").write_text(
        json.dumps({"rows": rows, "seconds": time.perf_counter() - start}, indent=2)
    )
    plot(rows, args.out / "accuracy_vs_snr.png", demo.simulation.snr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
