"""A volume source for the stream-fault tests, in the test process or as a subprocess.

Volume ``i`` is the run's volume ``i % n`` with ``i`` added to its first voxel, so
every index has its own CRC-32, and it is stamped ``t0 + i * interval`` (LSL
clock): the acquisition schedule, whatever the moment it is pushed.

As a subprocess (``python -m tests.nodes._stream_source BOLD NAME SOURCE_ID T0
SPEED FIRST COUNT``) it waits for an inlet, then pushes ``COUNT`` volumes from
index ``FIRST``, printing ``pushed i`` after each and ``done`` after the last,
and stays up until killed. ``T0`` is the schedule's start, or ``@PATH``: wait
for the file PATH and read it from there (the test writes it once the consumer
is streaming). ``FIRST`` < 0 means "resume on schedule": the first index is
the one due a few intervals after an inlet connected.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pylsl

from rt_recon.acquire.nifti import RecordedRun, load_nifti_run
from rt_recon.protocol import VolumeStreamMeta
from rt_recon.transport.lsl import VolumeOutlet

#: Intervals between the moment a resumed source is connected and its first volume.
RESUME_LEAD = 2


def volume(run: RecordedRun, i: int) -> np.ndarray:
    """Volume ``i`` of the schedule, ``(n_voxels,)`` float32, unique per index."""
    values = np.array(run.volumes[i % len(run.volumes)], dtype=np.float32)
    values[0] += i
    return values


def stream_meta(run: RecordedRun, speed: float) -> VolumeStreamMeta:
    return VolumeStreamMeta(
        shape=run.shape, affine=run.affine, tr_s=run.tr_s, session="faults", run="01", speed=speed
    )


def resume_index(t0: float, interval: float) -> int:
    """The first index due at least :data:`RESUME_LEAD` intervals from now."""
    return math.ceil((pylsl.local_clock() - t0) / interval) + RESUME_LEAD


def push_on_schedule(
    outlet: VolumeOutlet,
    run: RecordedRun,
    t0: float,
    items: Iterable[tuple[int, int]],
    on_push: Callable[[int], None] | None = None,
) -> None:
    """Push ``(volume index, stamp index)`` pairs, each when its stamp is due (at once if late)."""
    interval = outlet.meta.sample_interval
    for index, stamp_index in items:
        stamp = t0 + stamp_index * interval
        while (wait := stamp - pylsl.local_clock()) > 0:
            time.sleep(min(wait, 0.01))
        outlet.push(volume(run, index), stamp, index)
        if on_push is not None:
            on_push(index)


def write_t0(path: Path, t0: float) -> None:
    """Tell a source started with ``@path`` to start its schedule at ``t0`` (atomically)."""
    partial = path.with_suffix(".partial")
    partial.write_text(repr(t0))
    partial.rename(path)


def _read_t0(arg: str) -> float:
    if not arg.startswith("@"):
        return float(arg)
    path = Path(arg[1:])
    while not path.exists():
        time.sleep(0.005)
    return float(path.read_text())


def main(argv: list[str]) -> None:
    bold, name, source_id, t0_arg, speed, first, count = argv
    run = load_nifti_run(bold)
    with VolumeOutlet(stream_meta(run, float(speed)), name, source_id, buffer_trs=16) as outlet:
        if not outlet.wait_for_consumers(60):
            raise SystemExit("no consumer connected within 60 s")
        t0 = _read_t0(t0_arg)
        start = int(first)
        if start < 0:
            start = resume_index(t0, outlet.meta.sample_interval)
        indices = range(start, start + int(count))
        push_on_schedule(
            outlet, run, t0, ((i, i) for i in indices), lambda i: print(f"pushed {i}", flush=True)
        )
        print("done", flush=True)
        while True:  # stay up: the consumer's clock sync needs the outlet until it has read all
            time.sleep(1.0)


if __name__ == "__main__":
    main(sys.argv[1:])
