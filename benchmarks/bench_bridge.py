"""Scanner bridge latency and replay pacing, each beside a baseline run in the same process.

1. Bridge latency: the 155-volume Siemens run (../shared/data/siemens_trio_mosaic_run)
   written by the export simulator at ``--speed`` times TR pace, read by the
   bridge, received by an LSL inlet. Per volume: writer closed the file ->
   volume at the inlet (the whole path), and the bridge's own file complete ->
   LSL push. Baseline: the same bridge polling the folder and waiting for the
   file size to settle (what a folder-polling real-time tool does); ours:
   inotify close-write events.
2. Replay pacing: ``--pacing-trs`` volumes at TR 0.5 s, timestamps at the
   inlet against the ideal schedule; baseline: ``sleep(TR)`` after each push.
3. Conversion: one mosaic file read into a volume (pydicom + nibabel CSA).

    python -m benchmarks.bench_bridge [--speed 10] [--pacing-trs 100] [--json out.json]
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import pylsl

from benchmarks._report import Timing, machine, markdown_table, write_json
from rt_recon.acquire.bridge import BridgeOptions, ScannerBridge
from rt_recon.acquire.formats import read_file
from rt_recon.acquire.nifti import RecordedRun
from rt_recon.nodes.replay import replay
from rt_recon.protocol import VolumeStreamMeta
from rt_recon.simulators.scanner_export import export_series
from rt_recon.transport.lsl import VolumeInlet, VolumeOutlet

RUN = Path(__file__).resolve().parents[2] / "shared" / "data" / "siemens_trio_mosaic_run" / "dicom"


def _bridge_case(mode: str, speed: float, n_volumes: int) -> dict:
    """Export -> bridge -> inlet once; per-volume latencies in seconds."""
    with TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        source = tmp_path / "source"
        source.mkdir()
        for path in sorted(RUN.glob("*.dcm"))[:n_volumes]:
            (source / path.name).symlink_to(path)
        watch = tmp_path / "export"
        watch.mkdir()
        source_id = f"bench_{uuid.uuid4().hex[:8]}"
        options = BridgeOptions(
            name="bench_bridge",
            source_id=source_id,
            speed=speed,
            watch_mode=mode,  # type: ignore[arg-type]
            settle=0.25,
            poll_interval=0.05,
            consumer_wait=30,
        )
        bridge = ScannerBridge(watch, options)
        stop = threading.Event()
        out: dict = {}
        bridge_thread = threading.Thread(target=lambda: out.update(report=bridge.run(stop)))
        bridge_thread.start()
        bridge.watching.wait(10)
        export_thread = threading.Thread(
            target=lambda: out.update(export=export_series(source, watch, speed=speed))
        )
        export_thread.start()
        received: dict[int, float] = {}
        with VolumeInlet.resolve(source_id, 60) as inlet:
            for k in range(n_volumes):
                if inlet.pull(timeout=30) is None:
                    break
                received[k + 1] = pylsl.local_clock()
        export_thread.join()
        stop.set()
        bridge_thread.join()
    report, export = out["report"], out["export"]
    closed = export.closed_at()
    steady = [v for v in report.streamed if not v.queued]
    return {
        "end_to_end": [received[v.index] - closed[v.index] for v in steady if v.index in received],
        "bridge": [v.pushed_at - v.complete_at for v in steady],
        "streamed": len(report.streamed),
        "issues": [str(i) for i in report.issues],
    }


def _pacing(n: int, tr_s: float, naive: bool) -> dict:
    """Inlet timestamps of an n-TR replay against the schedule (ours or sleep(TR))."""
    run = RecordedRun(
        volumes=np.zeros((n, 64), np.float32), shape=(4, 4, 4), affine=np.eye(4), tr_s=tr_s
    )
    source_id = f"bench_{uuid.uuid4().hex[:8]}"
    ids = {"name": "bench_replay", "source_id": source_id}

    def naive_replay() -> None:
        meta = VolumeStreamMeta(shape=run.shape, affine=run.affine, tr_s=tr_s)
        with VolumeOutlet(meta, **ids) as outlet:
            outlet.wait_for_consumers(20)
            time.sleep(0.2)
            for volume in run.volumes:
                outlet.push(volume, pylsl.local_clock())
                time.sleep(tr_s)  # the sleep(TR) loop: every push's lateness adds up
            time.sleep(1.0)

    def ours() -> None:
        replay(run, markers_name="bench_m", markers_source_id=source_id + "_m", **ids)

    thread = threading.Thread(target=naive_replay if naive else ours)
    thread.start()
    stamps = []
    with VolumeInlet.resolve(source_id, 20) as inlet:
        for _ in range(n):
            stamp = inlet.pull(timeout=5)
            if stamp is None:
                break
            stamps.append(stamp)
    thread.join()
    stamps_arr = np.array(stamps)
    deviation = stamps_arr - stamps_arr[0] - np.arange(len(stamps_arr)) * tr_s
    slope = np.polyfit(np.arange(len(stamps_arr)), stamps_arr, 1)[0]
    return {
        "n": len(stamps_arr),
        "median_abs_ms": float(np.median(np.abs(deviation)) * 1000),
        "p95_abs_ms": float(np.percentile(np.abs(deviation), 95) * 1000),
        "max_abs_ms": float(np.abs(deviation).max() * 1000),
        "final_ms": float(deviation[-1] * 1000),
        "drift_ms_per_tr": float((slope - tr_s) * 1000),
    }


def _conversion(repeats: int) -> list[float]:
    files = sorted(RUN.glob("*.dcm"))[:repeats]
    out = []
    for path in files:
        start = time.perf_counter()
        read_file(path)
        out.append(time.perf_counter() - start)
    return out


def run(speed: float = 10.0, n_volumes: int = 155, pacing_trs: int = 100) -> dict:
    if not RUN.is_dir():
        raise SystemExit(f"needs the shared scanner data: {RUN} not found")
    poll = _bridge_case("poll", speed, n_volumes)
    events = _bridge_case("events", speed, n_volumes)
    end_to_end = [
        Timing.of("poll + settle 0.25 s (baseline), writer closed -> inlet", poll["end_to_end"]),
        Timing.of("inotify close-write (ours), writer closed -> inlet", events["end_to_end"]),
    ]
    bridge_only = [
        Timing.of("poll + settle 0.25 s (baseline), noticed -> LSL push", poll["bridge"]),
        Timing.of("inotify close-write (ours), file complete -> LSL push", events["bridge"]),
    ]
    pacing = {
        "sleep(TR) after each push (baseline)": _pacing(pacing_trs, 0.5, naive=True),
        "target timestamps (ours)": _pacing(pacing_trs, 0.5, naive=False),
    }
    conversion = Timing.of("read + convert one 74x74x36 mosaic", _conversion(50))
    return {
        "machine": machine(),
        "speed": speed,
        "volumes": {"poll": poll["streamed"], "events": events["streamed"]},
        "issues": poll["issues"] + events["issues"],
        "end_to_end": end_to_end,
        "bridge": bridge_only,
        "pacing": pacing,
        "conversion": conversion,
        "tables": {
            "end_to_end": markdown_table(end_to_end, end_to_end[0].name),
            "bridge": markdown_table(bridge_only, bridge_only[0].name),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--speed", type=float, default=10.0, help="export speed (x TR pace)")
    parser.add_argument("--volumes", type=int, default=155)
    parser.add_argument("--pacing-trs", type=int, default=100)
    parser.add_argument("--json", help="write the results as JSON here")
    args = parser.parse_args()
    result = run(args.speed, args.volumes, args.pacing_trs)
    print(
        f"Scanner bridge, Siemens 74x74x36 mosaics at {args.speed:g}x TR pace; {result['machine']}"
    )
    print(f"volumes streamed: {result['volumes']}; issues: {result['issues'] or 'none'}\n")
    print("Writer closed the file -> volume at the LSL inlet")
    print(result["tables"]["end_to_end"])
    print("\nInside the bridge: file found complete -> LSL push")
    print(result["tables"]["bridge"])
    print(f"\nReplay pacing, {args.pacing_trs} TRs at TR 0.5 s, inlet timestamps vs schedule")
    print("| pacing | n | median abs ms | p95 abs ms | max abs ms | last ms | drift ms/TR |")
    print("|---|---|---|---|---|---|---|")
    for name, p in result["pacing"].items():
        print(
            f"| {name} | {p['n']} | {p['median_abs_ms']:.2f} | {p['p95_abs_ms']:.2f} | "
            f"{p['max_abs_ms']:.2f} | {p['final_ms']:.2f} | {p['drift_ms_per_tr']:.3f} |"
        )
    c = result["conversion"]
    print(f"\nConversion: {c.name}: median {c.median_ms:.2f} ms, p95 {c.p95_ms:.2f} ms (n={c.n})")
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
