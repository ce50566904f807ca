"""A recording read back as a run to stream again (``rt-recon replay``, ``simulate replay``).

Volumes are the ones recorded, in order, with their recorded timestamps;
events are the recorded trial markers, their onsets rebuilt in acquisition
seconds from the first volume's timestamp (recordings of a sped-up replay
are slowed back by the recorded speed). The stream geometry comes from the
recording's ``stream`` attribute.

A session recorded in segments (:mod:`rt_recon.record.segments`) is
replayed as one run made of the segments on the **first segment's grid**,
in order: a recorder restart's segments join the first, and a segment on
another grid (a run the decoder refused) is left out with a warning naming
it, with its markers. When segments are joined, the run carries each
volume's acquisition time (``RecordedRun.times``), so the replay keeps the
gaps between them (the recorder's time down) and the events stay on their
volumes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from rt_recon.acquire.nifti import RecordedRun
from rt_recon.errors import DataError
from rt_recon.record.segments import SessionReader

log = logging.getLogger(__name__)


def _grid(stream: dict) -> tuple[list, list]:
    return list(stream["shape"]), [round(float(a), 4) for a in stream["affine"]]


def recorded_run(path: str | Path) -> RecordedRun:
    with SessionReader(path) as reading:
        streams = [segment.attr("stream") for segment in reading.segments]
        if streams[0] is None:
            raise DataError(f"{path}: the recording has no stream attribute (recorded before v1?)")
        stream = streams[0]
        kept = [i for i, s in enumerate(streams) if s is not None and _grid(s) == _grid(stream)]
        for i, s in enumerate(streams):
            if i not in kept:
                log.warning(
                    "%s: not replayed: its grid (shape %s) is not the first segment's (shape "
                    "%s)", reading.paths[i], None if s is None else s.get("shape"),
                    stream["shape"],
                )  # fmt: skip
        parts = [reading.segments[i].volumes() for i in kept]
        markers = [m for i in kept for m in reading.segments[i].markers()]
    values = np.concatenate([v for v, _ in parts])
    stamps = np.concatenate([s for _, s in parts])
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
        times=(stamps - start) * speed if len(kept) > 1 else None,
    )
