"""Marker events: one JSON object per sample of the LSL ``Markers`` stream (docs/protocol.md 2).

Stimulus programs in any language send these, so a marker is read
leniently (numbers may come as strings from a TSV, unknown keys are kept,
``type`` may be left out) but checked: a field of the wrong kind is a
:class:`~rt_recon.errors.ProtocolError` naming it. Which markers are trials,
and at which TR they begin, is the trial rule's business
(:mod:`rt_recon.protocol._trials`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rt_recon.errors import ProtocolError

#: The ``type`` of a stimulus event; a marker without ``type`` is one.
EVENT = "event"
RUN_START = "run_start"
RUN_END = "run_end"
#: The ``type`` of a participant's key press in a run's attention task.
RESPONSE = "response"
#: The ``trial_type`` values a presenter sends (``rt-recon present``): a picture, the
#: fixation cross alone (no ``stimulus_id``: no trial), the attention task's repeat; in a
#: cued imagery run the word cue (no ``stimulus_id``: no trial; ``caption`` its text) and
#: the imagining period that follows it (the cued picture's ``stimulus_id``: the trial).
TrialType = Literal["stimulus", "blank", "catch", "cue", "imagery"]
TRIAL_TYPES: tuple[str, ...] = get_args(TrialType)


class Marker(BaseModel):
    """One marker event.

    Attributes:
        type: ``event`` (the default when absent), ``run_start``, ``run_end``, or
            another string a stimulus program chooses.
        run: the run it belongs to.
        trial: the trial's index in its run (events).
        onset, duration: seconds from the start of the run, as in BIDS events.tsv.
        stimulus_id: the picture shown (events); a marker without one is no trial.
        caption, trial_type: as in BIDS events.tsv (a presenter's trial types:
            :data:`TRIAL_TYPES`).
        key, response_time: response: the key pressed, and seconds from the onset of
            trial ``trial`` to the press.
        n_volumes, speed, loop: run_start/run_end: volumes in the run, replay
            speed, replay pass.
        tr_s: run_start: the acquisition's repetition time in seconds (``tr`` on the wire).

    Other keys (further events.tsv columns) are kept as they are.
    """

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)
    SCHEMA: ClassVar[int] = 1

    type: str = EVENT
    run: str | None = None
    trial: int | None = None
    onset: float | None = None
    duration: float | None = Field(default=None, ge=0)
    stimulus_id: int | None = None
    caption: str | None = None
    trial_type: str | None = None
    key: str | None = None
    response_time: float | None = Field(default=None, ge=0)
    n_volumes: int | None = Field(default=None, ge=0)
    tr_s: float | None = Field(default=None, gt=0, alias="tr")
    speed: float | None = Field(default=None, gt=0)
    loop: int | None = Field(default=None, ge=0)

    @field_validator("run", mode="before")
    @classmethod
    def _run_as_text(cls, value: Any) -> Any:
        """A run id may come as a number (``5``) from a stimulus program: keep it as text."""
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return str(value) if number else value

    @field_validator("key", "response_time", mode="before")
    @classmethod
    def _bids_none(cls, value: Any) -> Any:
        """``n/a`` (BIDS: no value; a BIDS events.tsv may have a ``response_time`` column)
        or an empty cell is no value."""
        return None if isinstance(value, str) and value.strip() in ("", "n/a", "N/A") else value

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Marker:
        """Validate a decoded JSON object; ProtocolError naming the bad fields."""
        if not isinstance(obj, Mapping):
            raise ProtocolError(f"marker must be a JSON object, found {type(obj).__name__}")
        try:
            return cls.model_validate(dict(obj))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (found {e.get('input')!r})"
                for e in exc.errors()
            )
            raise ProtocolError(f"marker {dict(obj)!r} is malformed: {problems}") from None

    def to_json(self) -> dict[str, Any]:
        """The JSON object sent on the wire (absent fields left out, ``tr_s`` as ``tr``)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    @property
    def extra(self) -> dict[str, Any]:
        """Keys beyond the named fields (further events.tsv columns)."""
        return dict(self.model_extra or {})


def encode_marker(event: Marker | Mapping[str, Any]) -> str:
    """One marker as the JSON text of an LSL sample."""
    if isinstance(event, Marker):
        event = event.to_json()
    return json.dumps(dict(event), separators=(",", ":"), allow_nan=False)


def decode_marker(text: str) -> Marker:
    """An LSL marker sample back into a :class:`Marker`; ProtocolError when malformed."""
    try:
        event = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"marker is not JSON ({exc}): {text[:80]!r}") from None
    return Marker.from_json(event)
