"""End to end: a 100-TR (or longer) replay through recorder, renderer and decoder processes.

The demo's session (synthetic data, embedded model, decoders fitted and
cached as ``rt-recon demo`` does) replayed at ``--speed`` times real time;
per-stage latency from every frame's header (volume timestamp -> frame
published, LSL clock), p50/p95/max against the CPU budget.

    python -m benchmarks.bench_e2e [--speed 4] [--output /tmp/rt_recon_bench_e2e]
                                   [--set renderer.device=cuda --set renderer.dtype=float16]

``--set KEY=VALUE`` overrides a config key (the value read as YAML), e.g. the renderer on a
GPU for benchmarks/gpu_suite.sh.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import yaml

from benchmarks._report import machine, write_json
from rt_recon.apps.demo import prepare
from rt_recon.apps.pipeline import run_pipeline
from rt_recon.cli import DEFAULT_CONFIG
from rt_recon.config import load_config
from rt_recon.evaluate.latency import format_table


def run(
    speed: float = 4.0, output: Path | None = None, overrides: dict[str, Any] | None = None
) -> dict:
    output = output or Path(tempfile.mkdtemp(prefix="rt_recon_bench_e2e_"))
    config = (
        load_config(DEFAULT_CONFIG)
        .with_overrides(
            {
                "replay.speed": speed,
                "paths.output_dir": str(output),
                "renderer.write_png": False,
                **(overrides or {}),
            }
        )
        .resolved()
    )
    node_config, dataset, config_path = prepare(config)
    test = dataset.runs("test")[0]
    source = [str(test.bold), "--events", str(test.events)]
    result = run_pipeline(node_config, config_path, source, test.n_trs)
    rows = result.latency
    return {
        "machine": machine(),
        "renderer": {"device": config.renderer.device, "dtype": config.renderer.dtype},
        "overrides": overrides or {},
        "n_trs": test.n_trs,
        "tr_s": test.tr_s,
        "speed": speed,
        "frames": len(result.frames),
        "stale_skipped": result.skipped_frames,
        "rows": rows,
        "table": format_table(rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--speed", type=float, default=4.0)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--json")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, value read as YAML (repeatable)",
    )
    args = parser.parse_args()
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key] = yaml.safe_load(value)
    result = run(args.speed, args.output, overrides)
    print(
        f"end to end over {result['n_trs']} TRs (TR {result['tr_s']} s at {args.speed}x): "
        f"{result['frames']} frames, {result['stale_skipped']} stale latents skipped; "
        f"renderer on {result['renderer']['device']} ({result['renderer']['dtype']}); "
        f"{result['machine']}"
    )
    print(result["table"])
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
