"""Shared helpers: timing summaries, machine description, JSON + markdown output."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass
class Timing:
    name: str
    n: int
    median_ms: float
    p95_ms: float
    min_ms: float

    @classmethod
    def of(cls, name: str, seconds: list[float]) -> Timing:
        ms = np.asarray(seconds) * 1000.0
        return cls(
            name, len(ms), float(np.median(ms)), float(np.percentile(ms, 95)), float(ms.min())
        )


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def markdown_table(rows: list[Timing], baseline: str) -> str:
    """Rows with a ratio column against the row named ``baseline`` (baseline / row)."""
    base = next(r for r in rows if r.name == baseline)
    lines = ["| case | n | median ms | p95 ms | speed-up vs baseline |", "|---|---|---|---|---|"]
    for r in rows:
        ratio = base.median_ms / r.median_ms if r.median_ms > 0 else float("inf")
        lines.append(f"| {r.name} | {r.n} | {r.median_ms:.3f} | {r.p95_ms:.3f} | {ratio:.1f}x |")
    return "\n".join(lines)


def write_json(path: str | Path, payload: dict) -> None:
    def default(obj):
        return asdict(obj) if hasattr(obj, "__dataclass_fields__") else str(obj)

    Path(path).write_text(json.dumps(payload, indent=2, default=default))


def finish(result: dict, json_path: str | Path | None, note: str = "") -> int:
    """A held-out benchmark's last lines: its seconds (and ``note``), then ``--json``'s file;
    main()'s exit code."""
    print(f"\n{result['seconds']:.0f} s{note}")
    if json_path:
        write_json(json_path, result)
    return 0


def timed_calls(call, repeats: int, warmup: int = 3) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``call()`` after ``warmup`` untimed ones."""
    out = []
    for i in range(repeats + warmup):
        start = time.perf_counter()
        call()
        if i >= warmup:
            out.append(time.perf_counter() - start)
    return out


def touch_memory(gib: float) -> float:
    """Write ``gib`` GiB once and free it; returns the seconds it took.

    A freshly booted virtual machine (this project's CI and development machines are
    Firecracker VMs) backs guest memory on its first touch: measured 7.4 s per GiB on the
    2-core development machine, against 0.16 s per GiB once touched. A benchmark whose
    process allocates a few GiB would time that first touch rather than its own work;
    touching the memory first times the work as on a machine whose memory has been used.
    """
    start = time.perf_counter()
    block = np.ones(int(gib * 2**30) // 8)
    del block
    return time.perf_counter() - start


def add_held_out_arguments(
    parser: argparse.ArgumentParser, *, role: str = "test", participant: bool = True
) -> None:
    """The options of the benchmarks that score held-out runs: ``--seeds`` (participants),
    ``--render-seeds``, ``--role`` (``role`` by default), ``--json`` and, where the
    benchmark takes any participant, ``--participant``."""
    if participant:
        parser.add_argument("--participant", choices=["easy", "realistic"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--render-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--role", choices=["test", "validation"], default=role)
    parser.add_argument("--json")
