"""A recording read back as a run to stream again (``rt-recon replay``, ``simulate replay``).

Volumes are the ones recorded, in order, with their recorded timestamps;
events are the recorded trial markers, their onsets rebuilt in acquisition
seconds from the first volume's timestamp (recordings of a sped-up replay
are slowed back by the recorded speed). The stream geometry comes from the
recording's ``stream`` attribute.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rt_recon.acquire.nifti import RecordedRun
from rt_recon.errors import DataError
from rt_recon.record.recording import RecordingReader


def recorded_run(path: str | Path) -> RecordedRun:
    with RecordingReader(path) as reading:
        stream = reading.attr("stream")
        values, stamps = reading.volumes()
        markers = reading.markers()
    if stream is None:
        raise DataError(f"{path}: the recording has no stream attribute (recorded before v1?)")
    if len(values) == 0:
        raise DataError(f"{path}: the recording holds no volumes")
    speed = float(stream.get("speed", 1.0))
    start = float(stamps[0])
    events = []
    for event, stamp in markers:
        if event.get("type", "event") != "event":
            continue
        replayed = {k: v for k, v in event.items() if k not in ("type", "run", "trial")}
        replayed["onset"] = round((stamp - start) * speed, 6)
        replayed.setdefault("duration", 0.0)
        events.append(replayed)
    return RecordedRun(
        volumes=np.ascontiguousarray(values, dtype=np.float32),
        shape=tuple(stream["shape"]),
        affine=np.asarray(stream["affine"], dtype=np.float64).reshape(4, 4),
        tr_s=float(stream["tr"]),
        events=events,
    )
