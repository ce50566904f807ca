"""Per-stage latency over a session, from the times in frame and latents headers.

Budgets are the session's own (``config.budgets_ms()``: CPU or GPU preset with
the config's overrides), so a GPU session is judged by GPU budgets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from rt_recon.protocol import STAGES, stage_latencies


@dataclass(frozen=True)
class StageSummary:
    stage: str
    n: int
    p50_ms: float
    p95_ms: float
    max_ms: float
    budget_ms: float | None


def stage_samples(times: Iterable[Mapping[str, float]]) -> dict[str, list[float]]:
    """Milliseconds per stage of :data:`~rt_recon.protocol.STAGES`, one value per TR."""
    samples: dict[str, list[float]] = {name: [] for name, _, _ in STAGES}
    for entry in times:
        for name, seconds in stage_latencies(entry).items():
            samples[name].append(seconds * 1000.0)
    return samples


def summarise(
    times: Iterable[Mapping[str, float]], budgets: Mapping[str, float]
) -> list[StageSummary]:
    """One row per stage of :data:`~rt_recon.protocol.STAGES` present in ``times``, beside
    its budget in ms (``budgets``: the session's, ``SessionConfig.budgets_ms()``)."""
    rows = []
    for name, values in stage_samples(times).items():
        if not values:
            continue
        arr = np.asarray(values)
        rows.append(
            StageSummary(
                name,
                len(arr),
                float(np.median(arr)),
                float(np.percentile(arr, 95)),
                float(arr.max()),
                budgets.get(name),
            )
        )
    return rows


def format_table(rows: list[StageSummary]) -> str:
    """A plain-text table: stage, n, p50, p95, max, budget (ms)."""
    lines = [f"{'stage':<15}{'n':>6}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}{'budget':>9}"]
    for r in rows:
        budget = f"{r.budget_ms:g}" if r.budget_ms is not None else "-"
        flag = "  over" if r.budget_ms is not None and r.p95_ms > r.budget_ms else ""
        lines.append(
            f"{r.stage:<15}{r.n:>6}{r.p50_ms:>10.2f}{r.p95_ms:>10.2f}"
            f"{r.max_ms:>10.2f}{budget:>9}{flag}"
        )
    return "\n".join(lines)
