"""A recording read back as runs to stream again (``rt-recon replay``, ``simulate replay``).

Volumes are the ones recorded, in order, with their recorded timestamps;
events are the recorded trial markers, their onsets rebuilt in acquisition
seconds from the run's first volume's timestamp (recordings of a sped-up replay
are slowed back by the recorded speed). The stream geometry comes from each
segment's ``stream`` attribute.

A session recorded in segments (:mod:`rt_recon.record.segments`) is read as
**parts**, in segment order: a part is one segment, with the segments after it
on the same grid joined to it (a recorder restarted after a crash writes the next
segment on the grid it had: the same run going on). A segment on another grid
than the one before it (a run on another grid) begins the next part. So the
session ``7 | 2 | 8`` (series 7, series 2 on another grid, series 8 on series 7's
grid) is three parts, replayed in that order, each as its own run on its own
grid: a decoder whose bundle fits series 7's grid refuses part 2 and decodes
parts 1 and 3, as it did live. A part that joins segments carries each volume's
acquisition time (``RecordedRun.times``), so a replay keeps the gaps between
them (the recorder's time down) and the events stay on their volumes.

A part is named by the run its first segment recorded (its ``stream`` attribute's
``run``, the scanner series for a bridge's stream): :func:`recorded_parts` lists
them, and :func:`recorded_run` reads one. Several runs on one grid in one segment
(two series of the same geometry, one after the other) stay one part for a replay;
:func:`presented_runs` cuts a part into the runs a presenter's ``run_start`` markers
delimit (the training runs of a visit, for the fit).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rt_recon.acquire.nifti import RecordedRun
from rt_recon.errors import DataError
from rt_recon.record.segments import SessionReader

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordedPart:
    """Consecutive segments of a session on one grid (see the module doc).

    Attributes:
        label: the run its first segment recorded (``stream["run"]``).
        segments: their numbers (1-based), in order.
        shape: ``(x, y, z)`` of their grid.
        n_volumes: volumes recorded in them.
    """

    label: str
    segments: tuple[int, ...]
    shape: tuple[int, int, int]
    n_volumes: int


def _grid(stream: dict) -> tuple[list, list]:
    return list(stream["shape"]), [round(float(a), 4) for a in stream["affine"]]


def _streams(path: str | Path, reading: SessionReader) -> list[dict]:
    streams = [segment.attr("stream") for segment in reading.segments]
    for segment_path, stream in zip(reading.paths, streams, strict=True):
        if stream is None:
            raise DataError(
                f"{segment_path}: the recording has no stream attribute (recorded before v1?)"
            )
    return streams


def _groups(streams: list[dict]) -> list[list[int]]:
    """Segment indices (0-based) of each part: a new part at each change of grid."""
    groups: list[list[int]] = []
    for i, stream in enumerate(streams):
        if groups and _grid(stream) == _grid(streams[groups[-1][-1]]):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def recorded_parts(path: str | Path) -> list[RecordedPart]:
    """The parts of the session recorded at ``path`` (its first segment), in order."""
    with SessionReader(path) as reading:
        streams = _streams(path, reading)
        return [
            RecordedPart(
                label=str(streams[group[0]].get("run")),
                segments=tuple(i + 1 for i in group),
                shape=tuple(int(s) for s in streams[group[0]]["shape"]),  # type: ignore[arg-type]
                n_volumes=sum(reading.segments[i].count("volumes") for i in group),
            )
            for group in _groups(streams)
        ]


def recorded_run(path: str | Path, part: str | None = None) -> RecordedRun:
    """One part of the session recorded at ``path`` as a run: the part whose label is
    ``part``, or the first (the others named in a warning).

    Raises:
        DataError: no part has that label, two have it, or the part holds no volumes.
    """
    read = _read_part(path, part)
    return _as_run(read, read.values, read.stamps, read.markers, joined=read.joined)


def presented_runs(path: str | Path, part: str | None = None) -> list[tuple[str, RecordedRun]]:
    """One part of the session at ``path`` as the runs a presenter's markers delimit:
    ``(run label, run)`` in order.

    Several runs of one grid are recorded in one part (the bridge's series follow one
    another on the same stream geometry). A presenter (``rt-recon present``, or any that
    follows docs/protocol.md) sends a ``run_start`` marker at each run's start: the part
    is cut at those markers' stamps, each run taking the volumes from its ``run_start``
    to the next one's and the trial markers in between (the volumes before the first
    ``run_start`` go with the first run). A part with fewer than two ``run_start``
    markers is one run, named as :func:`recorded_run` names it.
    """
    read = _read_part(path, part)
    starts = [
        (float(stamp), str(event.get("run", "")))
        for event, stamp in read.markers
        if event.get("type") == "run_start"
    ]
    if len(starts) < 2:
        return [(read.label, _as_run(read, read.values, read.stamps, read.markers, read.joined))]
    runs = []
    cuts = [t for t, _ in starts[1:]]
    bounds = [-np.inf, *cuts, np.inf]
    for (_, label), lo, hi in zip(starts, bounds[:-1], bounds[1:], strict=True):
        keep = (read.stamps >= lo) & (read.stamps < hi)
        markers = [(e, t) for e, t in read.markers if lo <= t < hi]
        if not keep.any():
            raise DataError(
                f"{path}: run {label!r} (presenter's run_start at {lo:.3f}) has no volumes "
                "recorded before the next run started"
            )
        runs.append(
            (label, _as_run(read, read.values[keep], read.stamps[keep], markers, read.joined))
        )
    return runs


@dataclass
class _Part:
    label: str
    stream: dict
    values: np.ndarray
    stamps: np.ndarray
    markers: list
    joined: bool  # segments joined: keep the volumes' own times


def _read_part(path: str | Path, part: str | None) -> _Part:
    with SessionReader(path) as reading:
        streams = _streams(path, reading)
        groups = _groups(streams)
        labels = [str(streams[group[0]].get("run")) for group in groups]
        if part is None:
            index = 0
            if len(groups) > 1:
                log.warning(
                    "%s holds %d parts (runs on their own grids): %s; reading the first. "
                    "`rt-recon replay` replays them all; `--series LABEL` picks one",
                    path, len(groups), ", ".join(_describe(labels, groups, streams)),
                )  # fmt: skip
        elif labels.count(part) == 1:
            index = labels.index(part)
        else:
            found = "no part" if part not in labels else "more than one part"
            raise DataError(
                f"{path}: {found} recorded run {part!r}; its parts are "
                f"{', '.join(_describe(labels, groups, streams))}"
            )
        kept = groups[index]
        parts = [reading.segments[i].volumes() for i in kept]
        markers = [m for i in kept for m in reading.segments[i].markers()]
    values = np.concatenate([v for v, _ in parts])
    if len(values) == 0:
        raise DataError(f"{path}: run {labels[index]!r} of the recording holds no volumes")
    stamps = np.concatenate([t for _, t in parts]).astype(np.float64)
    return _Part(labels[index], streams[kept[0]], values, stamps, markers, len(kept) > 1)


def _as_run(
    read: _Part, values: np.ndarray, stamps: np.ndarray, markers: list, joined: bool
) -> RecordedRun:
    """Volumes and markers as a run: event onsets in acquisition seconds from its first
    volume (slowed back by the recorded replay speed)."""
    stream = read.stream
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
        times=(stamps - start) * speed if joined else None,
    )


def _describe(labels: list[str], groups: list[list[int]], streams: list[dict]) -> list[str]:
    """``run '7' (segment 1, 74x74x36)`` per part."""
    out = []
    for label, group in zip(labels, groups, strict=True):
        numbers = ", ".join(str(i + 1) for i in group)
        shape = "x".join(str(s) for s in streams[group[0]]["shape"])
        plural = "s" if len(group) > 1 else ""
        out.append(f"run {label!r} (segment{plural} {numbers}, {shape})")
    return out
