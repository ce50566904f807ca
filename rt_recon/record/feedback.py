"""Sham and yoked feedback: which condition a session is in, and the frames a yoked run shows.

A session's condition comes from its config's ``feedback`` section, or, blinded, from a
study file (:func:`resolve_feedback`). A yoked run shows another recording's TR frames,
TR by TR (:class:`YokedFrames`); the decoder and the recorder work as in a real run.

Study file (JSON, never pickle)::

    {"format": "rt_recon-study",
     "sessions": {"sub02-run3": {"condition": "yoked", "yoked_recording": "../sub01/recording.h5"},
                  "sub02-run4": {"condition": "real"}}}

keyed by ``session.id``; a relative ``yoked_recording`` is relative to the study file's folder.
docs/study-designs.md is the user's page.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rt_recon.config import SessionConfig
from rt_recon.errors import ConfigError, DataError
from rt_recon.protocol import is_interpolated
from rt_recon.record.segments import SessionReader

log = logging.getLogger(__name__)

STUDY_FORMAT = "rt_recon-study"
CONDITIONS = ("real", "yoked")


def file_digest(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes."""
    sha = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return f"sha256:{sha.hexdigest()}"


@dataclass(frozen=True)
class Feedback:
    """A session's feedback condition, as the recording stores it (``feedback`` attribute).

    ``yoked_recording``/``yoked_digest``: the recording a yoked run shows, and the sha256 of
    its (first) file; ``blinded``: the condition came from ``study_file`` and the operator's
    config and console do not show it.
    """

    condition: str
    yoked_recording: Path | None = None
    yoked_digest: str | None = None
    blinded: bool = False
    study_file: Path | None = None
    study_digest: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "condition": self.condition,
            "yoked_recording": None if self.yoked_recording is None else str(self.yoked_recording),
            "yoked_digest": self.yoked_digest,
            "blinded": self.blinded,
            "study_file": None if self.study_file is None else str(self.study_file),
            "study_digest": self.study_digest,
        }


def _study_entry(path: Path, session_id: str) -> dict[str, Any]:
    """The study file's entry for ``session_id`` (a ConfigError names the file and the key)."""
    if not path.is_file():
        raise ConfigError(f"feedback.study_file not found: {path}")
    try:
        study = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"feedback.study_file {path}: not valid JSON: {exc}") from None
    if not isinstance(study, dict) or study.get("format") != STUDY_FORMAT:
        raise ConfigError(
            f"feedback.study_file {path}: expected a JSON object with "
            f'"format": "{STUDY_FORMAT}" and "sessions", found {str(study)[:80]!r}'
        )
    sessions = study.get("sessions")
    if not isinstance(sessions, dict) or session_id not in sessions:
        known = sorted(sessions) if isinstance(sessions, dict) else []
        raise ConfigError(
            f"feedback.study_file {path}: no entry for session.id {session_id!r} under "
            f'"sessions" (it has: {", ".join(known) or "none"}); add one, '
            '{"condition": "real"} or {"condition": "yoked", "yoked_recording": PATH}'
        )
    entry = sessions[session_id]
    condition = entry.get("condition") if isinstance(entry, dict) else None
    if condition not in CONDITIONS:
        raise ConfigError(
            f"feedback.study_file {path}: sessions.{session_id}.condition: expected one of "
            f"{', '.join(CONDITIONS)}, found {condition!r}"
        )
    if condition == "yoked" and not isinstance(entry.get("yoked_recording"), str):
        raise ConfigError(
            f"feedback.study_file {path}: sessions.{session_id} is yoked: expected "
            f"a yoked_recording path, found {entry.get('yoked_recording')!r}"
        )
    return entry


def resolve_feedback(config: SessionConfig, digest: bool = True) -> Feedback:
    """The session's true condition: from ``feedback``, or its study file when blinded.

    ``digest``: compute the sha256 of the yoked recording (and of the study file).
    Raises ConfigError for a study file that is missing, not JSON or has no valid entry for
    ``session.id``, and DataError for a yoked recording that is missing.
    """
    fc = config.feedback
    condition, yoked = fc.condition or "real", fc.yoked_recording
    study_digest = None
    if fc.study_file is not None:
        study = Path(fc.study_file).expanduser()
        entry = _study_entry(study, config.session.id)
        condition = entry["condition"]
        yoked = entry.get("yoked_recording") if condition == "yoked" else None
        if yoked is not None:
            yoked = (study.parent / Path(yoked).expanduser()).resolve()
        study_digest = file_digest(study) if digest else None
    yoked_digest = None
    if yoked is not None:
        yoked = Path(yoked)
        if not yoked.is_file():
            raise DataError(
                f"feedback: the yoked recording {yoked} was not found (expected the "
                "recording.h5 of an earlier run, whose frames a yoked run shows)"
            )
        yoked_digest = file_digest(yoked) if digest else None
    return Feedback(
        condition=condition,
        yoked_recording=yoked,
        yoked_digest=yoked_digest,
        blinded=fc.blinded,
        study_file=fc.study_file,
        study_digest=study_digest,
    )


class YokedFrames:
    """The TR frames of a recording's first run, shown TR by TR in a yoked run.

    :meth:`frame` for TR ``k`` is the recorded frame of TR ``k``; where the recording has
    none (a TR it missed, or past its end) the frame of the nearest recorded TR before
    ``k`` is held (its first frame before its first TR). Frames interpolated between TRs
    are never taken.

    Raises DataError when the recording cannot be read, has no TR frame, or its frames are
    not ``image_shape`` (``(H, W, 3)``: this renderer's pictures).
    """

    def __init__(self, path: Path, image_shape: tuple[int, int, int], quiet: bool = False):
        """``quiet``: log nothing (a blinded session: a log line would name the condition)."""
        self.path = Path(path)
        self.quiet = quiet
        try:
            with SessionReader(self.path) as reader:
                headers, images = reader.frames()
        except DataError as exc:
            raise DataError(f"feedback: cannot read the yoked recording: {exc}") from None
        own = [i for i, h in enumerate(headers) if not is_interpolated(h)]
        if not own:
            raise DataError(
                f"feedback: the yoked recording {self.path} has no frames (record a run "
                "with a renderer first: a yoked run shows that run's frames)"
            )
        first_run = (headers[own[0]].get("session"), headers[own[0]].get("run"))
        by_tr: dict[int, int] = {}
        for i in own:
            h = headers[i]
            if (h.get("session"), h.get("run")) == first_run:
                by_tr.setdefault(int(h["tr"]), i)  # a TR's first frame, as first shown
        shape = tuple(images.shape[1:])
        if shape != tuple(image_shape):
            raise DataError(
                f"feedback: the yoked recording {self.path} has frames of {shape}, this "
                f"renderer's are {tuple(image_shape)}: yoke to a recording made with the "
                "same render model"
            )
        self.run = first_run
        self.trs = sorted(by_tr)
        self._images = np.ascontiguousarray(images[[by_tr[t] for t in self.trs]])
        self.held = 0  # frames shown for a TR the recording has no frame of
        self._warned_end = False

    def __len__(self) -> int:
        return len(self.trs)

    def _at(self, tr: int) -> int:
        return max(bisect.bisect_right(self.trs, tr) - 1, 0)

    def source_tr(self, tr: int) -> int:
        """The yoked recording's TR whose frame TR ``tr`` shows."""
        return self.trs[self._at(tr)]

    def frame(self, tr: int) -> np.ndarray:
        """The picture to show for TR ``tr``: ``(H, W, 3)`` uint8."""
        at = self._at(tr)
        source = self.trs[at]
        if source != tr:
            self.held += 1
            if tr > self.trs[-1] and not self._warned_end and not self.quiet:
                self._warned_end = True
                log.warning(
                    "yoked recording %s ends at TR %d: holding its last frame from TR %d on",
                    self.path, self.trs[-1], tr,
                )  # fmt: skip
        return self._images[at]
