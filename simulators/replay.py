"""Replay a recorded run over LSL at TR pace, as a scanner would have sent it.

Volumes go out on an ``fMRI`` stream (geometry in its ``desc``), events from
a BIDS ``events.tsv`` on a ``Markers`` stream, each at its scheduled time.
Pacing is by target timestamps (``t0 + i * TR / speed``), not by sleeping a
TR after each push, so lateness never accumulates.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pylsl

from rt_recon.acquire.nifti import RecordedRun
from rt_recon.errors import StreamError
from rt_recon.protocol import VolumeStreamMeta
from rt_recon.transport.lsl import MarkerOutlet, VolumeOutlet

log = logging.getLogger(__name__)

_LINGER_S = 1.0


@dataclass
class ReplayReport:
    n_volumes: int = 0
    n_markers: int = 0
    lateness: list[float] = field(default_factory=list)  # seconds each push was late


def _wait_until(target: float, stop: threading.Event) -> None:
    """Sleep until LSL-clock time ``target``: coarse sleep, then a short spin."""
    while True:
        remaining = target - pylsl.local_clock()
        if remaining <= 0 or stop.is_set():
            return
        if remaining > 0.002:
            stop.wait(remaining - 0.0015)


def _wait_for_consumer(outlet: VolumeOutlet, timeout: float, stop: threading.Event) -> bool:
    """Wait for an inlet in short slices, so a stop request is honoured within 0.2 s."""
    deadline = time.monotonic() + timeout
    while not stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if outlet.wait_for_consumers(min(0.2, remaining)):
            return True
    return False


def _wait_ready(ready: Callable[[], bool] | None, timeout: float, stop: threading.Event) -> bool:
    """Poll ``ready`` (e.g. every consumer reports it is streaming) until True or timeout."""
    deadline = time.monotonic() + timeout
    while ready is not None and not ready():
        if stop.is_set() or time.monotonic() > deadline:
            return False
        stop.wait(0.05)
    return True


def replay(
    run: RecordedRun,
    *,
    name: str,
    source_id: str,
    markers_name: str,
    markers_source_id: str,
    speed: float = 1.0,
    session: str = "replay",
    run_id: str = "01",
    consumer_timeout: float = 60.0,
    stop: threading.Event | None = None,
    buffer_trs: int = 4,
    ready: Callable[[], bool] | None = None,
) -> ReplayReport:
    """Push every volume of ``run`` at TR pace (divided by ``speed``), events on markers.

    Waits up to ``consumer_timeout`` seconds for an inlet (and for ``ready``,
    if given, to return True) before the first volume, so no volume is sent
    to nobody and no consumer misses the start.
    """
    stop = stop or threading.Event()
    meta = VolumeStreamMeta(
        shape=run.shape, affine=run.affine, tr=run.tr, session=session, run=run_id, speed=speed
    )
    report = ReplayReport()
    with VolumeOutlet(meta, name, source_id, buffer_trs=buffer_trs) as outlet:
        markers = MarkerOutlet(markers_name, markers_source_id)
        log.info("waiting for a consumer of %r (source_id %r)", name, source_id)
        if not _wait_for_consumer(outlet, consumer_timeout, stop) or not _wait_ready(
            ready, consumer_timeout, stop
        ):
            markers.close()
            if stop.is_set():
                return report
            raise StreamError(
                f"stream {name!r}: consumers not connected and ready within {consumer_timeout:g} s"
            )
        interval = run.tr / speed
        schedule = [(i * interval, "volume", i) for i in range(len(run.volumes))]
        schedule += [(float(e["onset"]) / speed, "marker", k) for k, e in enumerate(run.events)]
        schedule.sort(key=lambda item: (item[0], item[1] != "marker"))
        t0 = pylsl.local_clock() + 0.05
        markers.push(
            {
                "type": "run_start",
                "run": run_id,
                "n_volumes": len(run.volumes),
                "tr": run.tr,
                "speed": speed,
            },
            t0,
        )
        log.info("replaying %d volumes at %.3f s per TR", len(run.volumes), interval)
        for offset, kind, index in schedule:
            target = t0 + offset
            _wait_until(target, stop)
            if stop.is_set():
                log.info("replay stopped after %d volumes", report.n_volumes)
                break
            now = pylsl.local_clock()
            if kind == "volume":
                outlet.push(run.volumes[index], now)
                report.n_volumes += 1
                report.lateness.append(now - target)
            else:
                event = {"type": "event", "run": run_id, "trial": index, **run.events[index]}
                markers.push(event, now)
                report.n_markers += 1
        else:
            markers.push(
                {"type": "run_end", "run": run_id, "n_volumes": report.n_volumes},
                pylsl.local_clock(),
            )
            # Keep the outlets up a moment: an inlet with clock sync needs the
            # outlet alive to timestamp the samples it still has buffered.
            time.sleep(_LINGER_S)
        markers.close()
    if report.lateness:
        late = np.array(report.lateness) * 1000
        log.info(
            "replay done: %d volumes, lateness median %.2f ms, max %.2f ms",
            report.n_volumes,
            float(np.median(late)),
            float(late.max()),
        )
    return report
