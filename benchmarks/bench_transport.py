"""LSL transport of one volume: our push_chunk/pull_chunk into preallocated buffers
versus plain pylsl push_sample/pull_sample, in the same run, on loopback.

Latency is measured from just before the push to just after the pull returns
with the volume, one volume in flight at a time.

    python -m benchmarks.bench_transport [--voxels 160000] [--repeats 50] [--json out.json]
"""

from __future__ import annotations

import argparse
import time
import uuid

import numpy as np
import pylsl

from benchmarks._report import Timing, machine, markdown_table, write_json
from rt_recon.protocol import VolumeStreamMeta
from rt_recon.transport.lsl import VolumeInlet, VolumeOutlet


def _ours(n_voxels: int, repeats: int, volume: np.ndarray) -> list[float]:
    meta = VolumeStreamMeta(shape=(n_voxels, 1, 1), affine=np.eye(4), tr_s=1.0)
    source = f"bench_{uuid.uuid4().hex[:8]}"
    out = []
    with VolumeOutlet(meta, "bench", source) as outlet, VolumeInlet.resolve(source, 10) as inlet:
        outlet.wait_for_consumers(10)
        for _ in range(repeats + 3):
            start = time.perf_counter()
            outlet.push(volume, pylsl.local_clock())
            stamp = inlet.pull(timeout=5)
            out.append(time.perf_counter() - start)
            assert stamp is not None and inlet.values[0] == volume[0]
    return out[3:]


def _plain(n_voxels: int, repeats: int, volume: np.ndarray) -> list[float]:
    source = f"bench_{uuid.uuid4().hex[:8]}"
    info = pylsl.StreamInfo("plain", "fMRI", n_voxels, 1.0, "float32", source)
    outlet = pylsl.StreamOutlet(info)
    inlet = pylsl.StreamInlet(
        pylsl.resolve_byprop("source_id", source, timeout=10)[0], max_buflen=4
    )
    inlet.open_stream(timeout=10)
    outlet.wait_for_consumers(10)
    values = volume.tolist()
    out = []
    for _ in range(repeats + 3):
        start = time.perf_counter()
        outlet.push_sample(values)
        sample, _ = inlet.pull_sample(timeout=5)
        out.append(time.perf_counter() - start)
        assert sample is not None and sample[0] == volume[0]
    inlet.close_stream()
    return out[3:]


def run(n_voxels: int = 160_000, repeats: int = 50) -> dict:
    volume = np.random.default_rng(0).normal(size=n_voxels).astype(np.float32)
    rows = [
        Timing.of(
            "plain pylsl push_sample/pull_sample (baseline)", _plain(n_voxels, repeats, volume)
        ),
        Timing.of("rt_recon push_chunk/pull_chunk, preallocated", _ours(n_voxels, repeats, volume)),
    ]
    return {
        "voxels": n_voxels,
        "machine": machine(),
        "rows": rows,
        "table": markdown_table(rows, rows[0].name),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--voxels", type=int, default=160_000)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--json", help="write the results as JSON here")
    args = parser.parse_args()
    result = run(args.voxels, args.repeats)
    print(
        f"LSL transport, one volume of {args.voxels} float32 voxels, loopback; {result['machine']}"
    )
    print(result["table"])
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
