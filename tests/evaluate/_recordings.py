"""Session recordings written with the recorder's own writer, for the scoring tests.

:func:`write_session` lays out a run as the recorder stores one: a volume per TR
(stamped on a regular LSL grid), a stimulus marker at each trial's onset volume,
and the renderer's frames, each carrying its volume's CRC-32 and ``lag_trs`` as
the decoder's headers do. The frame scored for a trial (``lag_trs`` after its
onset) is the very picture shown, so every scored trial is identified; the
frames of the trials in ``without_frame`` are left out, as a latest-only
renderer skips a TR.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rt_recon.config import SessionConfig
from rt_recon.record.recording import RecordingShapes, RecordingWriter
from tests.display._helpers import frame_header

LAG_TRS = 2
LEAD_IN_TRS = 2
TRIAL_TRS = 2  # a trial every other TR
T0 = 5000.0  # LSL seconds
INTERVAL_S = 1.0
MARKERS_SOURCE_ID = "task_markers_for_scoring"


def scored_tr(trial: int) -> int:
    """The TR whose frame is scored for trial ``trial``."""
    return LEAD_IN_TRS + TRIAL_TRS * trial + LAG_TRS


def write_session(
    path: Path,
    pictures: Sequence[tuple[int, np.ndarray]],
    *,
    without_frame: Iterable[int] = (),
    markers: bool = True,
    other_markers: Sequence[Mapping[str, Any]] = (),
    interpolated: bool = False,
    feedback: Mapping[str, Any] | None = None,
) -> Path:
    """A recording of one run showing ``pictures`` (``(stimulus_id, (H, W, 3) uint8)`` per
    trial, in order). ``without_frame``: trials whose scored frame was never rendered;
    ``markers``: False records no stimulus marker; ``other_markers``: markers that are no
    trial (``run_start`` and such), recorded at the first volume; ``interpolated``: before
    every TR's frame (also one never rendered) a frame interpolated toward it, of the very
    picture its own frame has (or would have), late (a file from another recorder);
    ``feedback``: the ``feedback`` attribute (the condition, docs/study-designs.md)."""
    skip = {scored_tr(k) for k in without_frame}
    scored = {scored_tr(k): picture for k, (_, picture) in enumerate(pictures)}
    onsets = {LEAD_IN_TRS + TRIAL_TRS * k: sid for k, (sid, _) in enumerate(pictures)}
    n_trs = scored_tr(len(pictures) - 1) + 2
    size = pictures[0][1].shape[0]
    grey = np.full((size, size, 3), 128, np.uint8)
    config = SessionConfig.model_validate({"stream": {"markers_source_id": MARKERS_SOURCE_ID}})
    shapes = RecordingShapes(8, (1, 2, 2), (1, 2), (size, size, 3))
    attrs: dict[str, Any] = {"config": config.model_dump(mode="json")}
    if feedback is not None:
        attrs["feedback"] = dict(feedback)
    with RecordingWriter(path, shapes, attrs=attrs) as rec:
        for tr in range(n_trs):
            stamp = T0 + tr * INTERVAL_S
            values = np.arange(8, dtype=np.float32) + tr
            rec.add_volume(values, stamp)
            if tr == 0:
                for marker in other_markers:
                    rec.add_marker(marker, stamp)
            if markers and tr in onsets:
                rec.add_marker({"stimulus_id": onsets[tr], "duration": 1.0}, stamp + 0.01)
            crc = zlib.crc32(values)
            if interpolated and tr > 0:
                between = {"from_tr": tr - 1, "t": 0.5}
                header = frame_header(
                    tr, stamp, lag_trs=LAG_TRS, volume_crc32=crc, interpolated=between,
                    stage_ms={"published": 900.0},
                )  # fmt: skip
                rec.add_frame(header.to_json(), scored.get(tr, grey))
            if tr not in skip:
                header = frame_header(tr, stamp, lag_trs=LAG_TRS, volume_crc32=crc)
                rec.add_frame(header.to_json(), scored.get(tr, grey))
            rec.flush()
    return path
