"""Soak: a long accelerated session through the node processes, memory sampled over time.

A recorded run is replayed ``--loops`` times back to back as fast as the
decoder takes it (``simulate replay --loop N --asap``) through recorder,
renderer and decoder processes, as ``rt-recon demo`` runs them. Every
latents message is collected; each node's resident memory (RSS) is sampled
every ``sample_s`` seconds. Reported: TRs decoded and lost, frames rendered,
and RSS over time per node with its growth after warm-up (median of the last
tenth of the samples minus the median of the tenth around the middle of the run:
the first half is warm-up, in which allocators, caches and torch's kernels settle).

    python -m benchmarks.bench_soak [--loops 25] [--json out.json]

The default replays the demo's 120-TR test run 25 times (3,000 TRs) with the
embedded model; tests/nodes/test_soak.py runs the same harness on the small
test session.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

from benchmarks._report import machine, write_json
from rt_recon.apps.pipeline import PipelineResult, pipeline_overrides, run_pipeline
from rt_recon.config import SessionConfig
from rt_recon.dataset import RunFiles
from rt_recon.nodes.supervisor import Supervisor

NODES = ("decoder", "renderer", "recorder", "replay")


@dataclass
class MemoryTrace:
    """RSS samples per node: ``samples[name]`` is a list of ``(seconds, MiB)``."""

    sample_s: float
    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    _start: float = field(default_factory=time.monotonic)
    _last: float = -1e9

    def __call__(self, supervisor: Supervisor) -> None:
        now = time.monotonic()
        if now - self._last < self.sample_s:
            return
        self._last = now
        for name, child in supervisor.children.items():
            try:
                rss = psutil.Process(child.process.pid).memory_info().rss / 2**20
            except psutil.Error:  # exited between the check and the read
                continue
            self.samples.setdefault(name, []).append((now - self._start, rss))

    def growth_mib(self, name: str) -> float:
        """Growth over the second half: median RSS of the last tenth of the samples minus
        that of the tenth around the middle (the first half is warm-up)."""
        rss = np.array([mib for _, mib in self.samples[name]])
        tenth = max(1, len(rss) // 10)
        middle = len(rss) // 2 - tenth // 2
        return float(np.median(rss[-tenth:]) - np.median(rss[middle : middle + tenth]))

    def table(self, points: int = 6) -> str:
        """Markdown: RSS of each node at ``points`` moments spread over the run, and growth."""
        names = [n for n in NODES if n in self.samples]
        longest = max(names, key=lambda n: len(self.samples[n]))
        times = [t for t, _ in self.samples[longest]]
        picks = np.linspace(0, len(times) - 1, points).round().astype(int)
        head = "| node | " + " | ".join(f"{times[i]:.0f} s" for i in picks) + " | growth |"
        lines = [head, "|---" * (points + 2) + "|"]
        for name in names:
            series = self.samples[name]
            values = [series[min(i, len(series) - 1)][1] for i in picks]
            cells = " | ".join(f"{v:.0f}" for v in values)
            lines.append(f"| {name} (MiB) | {cells} | {self.growth_mib(name):+.1f} |")
        return "\n".join(lines)


@dataclass
class SoakResult:
    pipeline: PipelineResult
    memory: MemoryTrace
    n_trs: int
    seconds: float

    @property
    def decoded_trs(self) -> list[int]:
        return [int(h["tr"]) for h in self.pipeline.latents]

    @property
    def lost_trs(self) -> int:
        return self.n_trs - len(set(self.decoded_trs))


def soak(
    config: SessionConfig,
    config_path: Path,
    run: RunFiles,
    loops: int,
    sample_s: float = 0.5,
) -> SoakResult:
    """Replay ``run`` ``loops`` times (asap) through the nodes of ``config``; sample RSS.

    ``config`` must carry :func:`~rt_recon.apps.pipeline.pipeline_overrides`
    ``(asap=True, frame_paced=False)`` (the decoder sets the pace, as documented)
    and be written to ``config_path``.
    """
    n_trs = run.n_trs * loops
    source = [str(run.bold), "--events", str(run.events)]
    source += ["--loop", str(loops), "--asap"]
    memory = MemoryTrace(sample_s)
    start = time.monotonic()
    result = run_pipeline(config, config_path, source, n_trs, monitor=memory, frame_paced=False)
    return SoakResult(result, memory, n_trs, time.monotonic() - start)


def run(loops: int = 25, output: Path | None = None) -> dict:
    from rt_recon.apps.demo import prepare
    from rt_recon.cli import DEFAULT_CONFIG
    from rt_recon.config import load_config

    output = output or Path(tempfile.mkdtemp(prefix="rt_recon_soak_"))
    config = (
        load_config(DEFAULT_CONFIG)
        .with_overrides({"paths.output_dir": str(output), "renderer.write_png": False})
        .resolved()
    )
    node_config, dataset, config_path = prepare(config)
    node_config = node_config.with_overrides(pipeline_overrides(asap=True, frame_paced=False))
    config_path.write_text(node_config.to_json())  # what the children read
    result = soak(node_config, config_path, dataset.runs("test")[0], loops)
    return {
        "machine": machine(),
        "n_trs": result.n_trs,
        "seconds": result.seconds,
        "decoded": len(result.decoded_trs),
        "lost": result.lost_trs,
        "frames": len(result.pipeline.frames),
        "stale_skipped": result.pipeline.skipped_frames,
        "growth_mib": {n: result.memory.growth_mib(n) for n in result.memory.samples},
        "rss_mib": result.memory.samples,
        "table": result.memory.table(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loops", type=int, default=25)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--json")
    args = parser.parse_args()
    r = run(args.loops, args.output)
    print(
        f"soak: {r['n_trs']} TRs in {r['seconds']:.0f} s ({r['machine']}): {r['decoded']} "
        f"decoded, {r['lost']} lost, {r['frames']} frames ({r['stale_skipped']} stale latents "
        "skipped by the renderer, as it should)"
    )
    print(r["table"])
    if args.json:
        write_json(args.json, r)


if __name__ == "__main__":
    main()
