"""XDF recordings (LabRecorder) of an rt_recon session, read back as a run for replay.

The recording must hold an rt_recon volume stream (type ``fMRI``, geometry
in ``desc/rt_recon`` as docs/protocol.md describes) and may hold a
``Markers`` stream. pyxdf reads the file; the volumes keep their recorded
timing (``times``: seconds from the first volume, converted back to the
acquisition's own pace when the recorded stream was itself a replay at
``speed`` != 1), and every marker that is not a replay's own ``run_start``
/ ``run_end`` becomes an event at its recorded time.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyxdf

from rt_recon.acquire.nifti import RecordedRun
from rt_recon.errors import DataError
from rt_recon.protocol import (
    END_OF_RUN,
    MARKER_STREAM_TYPE,
    PROTOCOL_NAME,
    VOLUME_STREAM_TYPE,
    VOXEL_ORDER,
)

log = logging.getLogger(__name__)


def _first(value: Any) -> Any:
    """pyxdf keeps every XML element as a list: the first item (or None)."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _geometry(stream: dict, path: Path) -> dict[str, str]:
    info = stream["info"]
    name = _first(info.get("name"))
    desc = _first(info.get("desc")) or {}
    node = _first(desc.get(PROTOCOL_NAME)) if isinstance(desc, dict) else None
    if not isinstance(node, dict):
        raise DataError(
            f"{path.name}: stream {name!r} has no desc/{PROTOCOL_NAME} element; expected an "
            "rt_recon volume stream recorded with its geometry (docs/protocol.md)"
        )
    return {key: str(_first(value)) for key, value in node.items()}


def _pick(streams: list[dict], kind: str, name: str | None, path: Path) -> dict | None:
    matches = [
        s
        for s in streams
        if _first(s["info"].get("type")) == kind
        and (name is None or _first(s["info"].get("name")) == name)
    ]
    if len(matches) > 1:
        names = [_first(s["info"].get("name")) for s in matches]
        raise DataError(f"{path.name}: several {kind} streams {names}; choose one by name")
    return matches[0] if matches else None


def _event(text: str, onset: float) -> dict | None:
    try:
        event = json.loads(text)
    except json.JSONDecodeError:
        return {"onset": onset, "duration": 0.0, "trial_type": text}
    if not isinstance(event, dict):
        return {"onset": onset, "duration": 0.0, "trial_type": text}
    if event.get("type") in ("run_start", "run_end"):
        return None  # the replay sends its own
    event = {k: v for k, v in event.items() if k not in ("type", "run", "trial")}
    event["onset"] = onset
    event.setdefault("duration", 0.0)
    return event


def load_xdf_run(path: str | Path, stream: str | None = None) -> RecordedRun:
    """The volume stream (named ``stream``, or the only ``fMRI`` one) and markers of an XDF file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"recording not found: {path} (expected an .xdf file)")
    try:
        streams, _ = pyxdf.load_xdf(str(path), dejitter_timestamps=False)
    except Exception as exc:  # pyxdf raises many types on damaged files
        raise DataError(f"{path.name}: not a readable XDF file: {exc}") from None
    volumes_stream = _pick(streams, VOLUME_STREAM_TYPE, stream, path)
    if volumes_stream is None:
        found = [(_first(s["info"].get("name")), _first(s["info"].get("type"))) for s in streams]
        raise DataError(
            f"{path.name}: no {VOLUME_STREAM_TYPE} stream"
            + (f" named {stream!r}" if stream else "")
            + f"; found {found}"
        )
    geometry = _geometry(volumes_stream, path)
    if geometry.get("voxel_order") != VOXEL_ORDER:
        raise DataError(
            f"{path.name}: voxel order {geometry.get('voxel_order')!r}, expected {VOXEL_ORDER!r}"
        )
    if geometry.get("mask_id", "full") != "full":
        raise DataError(
            f"{path.name}: the recorded stream carries mask {geometry['mask_id']!r}, not whole "
            "volumes; only full-volume streams can be replayed"
        )
    try:
        shape = tuple(int(v) for v in geometry["shape"].split(","))
        affine = np.array([float(v) for v in geometry["affine"].split(",")]).reshape(4, 4)
        tr_s = float(geometry["tr"])
        recorded_speed = float(geometry.get("speed", "1") or 1)
    except (KeyError, ValueError) as exc:
        raise DataError(f"{path.name}: malformed geometry in the stream's desc: {exc}") from None
    data = np.asarray(volumes_stream["time_series"], dtype=np.float32)
    stamps = np.asarray(volumes_stream["time_stamps"], dtype=np.float64)
    if data.ndim != 2 or len(data) == 0:
        raise DataError(f"{path.name}: the volume stream holds no samples")
    if geometry.get("index_channel") == "last":  # the acquisition index; -1 ends a run
        keep = data[:, -1] != END_OF_RUN
        data, stamps = data[keep, :-1], stamps[keep]
        if len(data) == 0:
            raise DataError(f"{path.name}: the volume stream holds no volumes")
    if data.shape[1] != int(np.prod(shape)):
        raise DataError(
            f"{path.name}: {data.shape[1]} channels for a volume of shape {shape} "
            f"({int(np.prod(shape))} voxels)"
        )
    start = stamps[0]
    events = []
    markers = _pick(streams, MARKER_STREAM_TYPE, None, path)
    if markers is not None:
        for sample, stamp in zip(markers["time_series"], markers["time_stamps"], strict=True):
            event = _event(str(sample[0]), float(stamp - start) * recorded_speed)
            if event is not None:
                events.append(event)
    log.info("%s: %d volumes of %s, %d events", path.name, len(data), shape, len(events))
    return RecordedRun(
        volumes=np.ascontiguousarray(data),
        shape=shape,  # type: ignore[arg-type]
        affine=affine,
        tr_s=tr_s,
        events=events,
        times=(stamps - start) * recorded_speed,
    )
