"""The messages the console server sends to its pages, typed, and their JSON schema.

Two kinds travel on the pages' WebSockets (docs/console.md, "For other programs"):

* text: the console state (:class:`ConsoleStateMessage`, ``type`` ``state``, about four
  times a second, console page only) and, on the participant page, :class:`WaitingMessage`
  (``type`` ``waiting``) when there is no picture to show;
* binary: a picture (:mod:`rt_recon.display.frames`) whose JSON meta is a
  :class:`ParticipantPicture` on the participant page, a :class:`ConsolePicture` (the same
  plus its pairing) on the console page;
* on ``/ws/present`` (a training run to present, :mod:`rt_recon.display.presenter`):
  :class:`PresentDesign`, :class:`PresentPong`, :class:`PresentStart`, :class:`PresentOff`.

They are built from these models and only from them, so every message fits its model.
:func:`page_schema` turns the models into one JSON schema document, committed as
``static/schema.json`` (regenerate with ``python -m rt_recon.display.messages``; a test
fails while the committed file is stale). The pages load it and check every property they
read from a message against it (``static/schema.js``): a script that reads a key the server
does not send, or a value of another type than the schema says, is reported in the page
(``window.rtSchema.errors`` and the browser console), and the browser tests fail on it.

Every field of a page model is required: a message always carries every key (``null``
where there is no value), so a page never has to guess whether a key is missing or empty.
The exceptions are a node's counters (:class:`NodeCounters`: only those its heartbeats
carried) and the protocol's own types passed on (:class:`~rt_recon.protocol.Times`,
:class:`~rt_recon.protocol.TrialRef`), which keep the optional keys of the wire.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import models_json_schema

from rt_recon.protocol import NODE_COUNTERS, NodeState, Times, TrialRef, TrialType

log = logging.getLogger(__name__)

#: The committed schema the pages load.
SCHEMA_PATH = Path(__file__).resolve().parent / "static" / "schema.json"

#: The command that rewrites :data:`SCHEMA_PATH` from the models.
REGENERATE = "python -m rt_recon.display.messages"

#: How the console judges a node (:meth:`rt_recon.display.state.NodeHealth.level`).
NodeLevel = Literal["unknown", "ok", "waiting", "failed", "stopped", "reconnecting", "away"]

#: A node's state: what its last heartbeat said, ``never_seen`` before the first.
ShownState = NodeState | Literal["never_seen"]

#: What an alert is about (docs/console.md, "Warnings").
AlertKind = Literal[
    "away",
    "reconnecting",
    "stopped",
    "paused",
    "failed",
    "geometry",
    "quality",
    "stalled",
    "new_series",
    "missed",
    "alignment",
    "disk",
    "malformed",
    "pairing",
    "late",
    "budget",
    "motion",
]

#: Every alert kind, most serious first: the order of the console's warnings
#: (docs/console.md, "Warnings"). First what stops data being decoded or kept (a node failed,
#: a run refused for its geometry, a run whose data quality says it should be stopped, a node
#: stopped, recording paused); then what the operator
#: must look into now (a node gone or silent, the volumes stalled, the disk running out), what
#: changed or was lost in the run (a new series, TRs never decoded, a head far from the
#: decoder bundle's reference) and what cannot be trusted
#: (a pairing that differs, messages dropped); then how well the pictures keep up (late,
#: motion); the stage budgets last: an engineering matter, not the session's.
ALERT_SEVERITY: tuple[AlertKind, ...] = (
    "failed",
    "geometry",
    "quality",
    "stopped",
    "paused",
    "reconnecting",
    "away",
    "stalled",
    "disk",
    "new_series",
    "missed",
    "alignment",
    "pairing",
    "malformed",
    "late",
    "motion",
    "budget",
)


class _PageModel(BaseModel):
    """A page message part: frozen, no keys beyond its fields, every field required."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_serialization_defaults_required=True
    )

    def to_json(self) -> dict[str, Any]:
        """The JSON object sent (the optional keys of passed-on protocol types left out
        where they were absent)."""
        return self.model_dump(mode="json", exclude_unset=True)


def _counters_model() -> type[BaseModel]:
    """Every node's heartbeat counters (:data:`rt_recon.protocol.NODE_COUNTERS`) in one model:
    a counter two nodes share must have one type."""
    merged: dict[str, Any] = {}
    for node, kind in NODE_COUNTERS.items():
        hints = get_type_hints(kind)
        for field in fields(kind):
            annotation = hints[field.name] | None
            if merged.setdefault(field.name, annotation) != annotation:
                raise TypeError(
                    f"counter {field.name!r} of {node} is {annotation}, another node's is "
                    f"{merged[field.name]}: one name, one type"
                )
    return create_model(  # type: ignore[call-overload, no-any-return]
        "NodeCounters",
        __config__=ConfigDict(extra="allow", frozen=True),
        __doc__="A node's heartbeat counters (docs/protocol.md 3.3): only those its last "
        "heartbeat carried; a counter this console does not know is passed on as it came.",
        **{name: (annotation, None) for name, annotation in merged.items()},
    )


NodeCounters = _counters_model()


class NodeView(_PageModel):
    """One node as the console sees it."""

    name: str
    level: NodeLevel
    state: ShownState
    age_s: float | None = Field(description="seconds since last heard (null: never heard)")
    pid: int | None
    uptime_s: float | None
    restarts: int = Field(description="times it came back as a new process (a new pid)")
    volume_age_s: float | None = Field(
        description="seconds since its last volume arrived (heartbeat t - last_volume_t, plus "
        "the time since that heartbeat); null: no volume yet, or a node that reads none"
    )
    counters: NodeCounters  # type: ignore[valid-type]


class VolumeSourceView(_PageModel):
    """The volume stream (the scanner bridge or a replay) as the console finds it on the
    network: resolved by its ``source_id`` every two seconds, without opening it."""

    source_id: str
    level: NodeLevel = Field(description="unknown (not looked yet), ok (found), waiting (not)")
    present: bool | None = Field(description="found at the last look (null: not looked yet)")
    text: str = Field(description="the card's line for the operator")
    host: str | None = Field(description="the host its outlet runs on")
    name: str | None = Field(description="the stream's LSL name")
    run: str | None
    series: str | None = Field(description="the scanner's series number (null: none)")
    series_description: str | None
    shape: list[int] | None = Field(description="[x, y, z] voxels")
    tr_s: float | None = Field(description="the acquisition's TR, seconds")
    speed: float | None = Field(description="replay speed (1 for a scanner)")
    error: str | None = Field(description="why its description cannot be read")
    age_s: float | None = Field(description="seconds since the last look")


class MarkerSourceView(_PageModel):
    """The LSL marker stream as the console's marker input has it."""

    source_id: str
    level: NodeLevel = Field(description="unknown (not looked yet), ok (open), waiting (not)")
    present: bool | None = Field(
        description="the console has the stream open (null: not looked yet)"
    )
    text: str = Field(description="the card's line for the operator")
    markers: int = Field(description="markers received")
    last_age_s: float | None = Field(description="seconds since the last marker arrived")


class Counts(_PageModel):
    """TR and message counters of the session."""

    frames: int
    missed_trs: int
    skipped_trs: int
    late_trs: int
    no_picture_trs: int
    over_budget: dict[str, int] = Field(description="stage -> TRs over its budget")
    malformed: int = Field(description="messages dropped because they broke the protocol")
    pairing_mismatches: int = Field(
        description="scored frames the decoder paired otherwise than the console"
    )


class LatencyPoint(_PageModel):
    """One TR's stage latencies, ms."""

    tr: int
    ms: dict[str, float]


class StageSummary(_PageModel):
    """One stage over the kept frames, ms."""

    stage: str
    n: int
    latest_ms: float
    p50_ms: float
    p95_ms: float
    budget_ms: float | None


class Motion(_PageModel):
    """Framewise displacement per TR, and the threshold, mm."""

    threshold_mm: float
    points: list[tuple[int, float]] = Field(description="[tr, fd_mm]")


class ConfidenceTrace(_PageModel):
    """The decoder's confidence per TR (docs/protocol.md 3.1): how far the decoded latents
    stand above what the decoder gives on noise, 0..1."""

    points: list[tuple[int, float]] = Field(
        description="[tr, confidence] of the kept frames that carry one"
    )


class QualityPoint(_PageModel):
    """One TR's data quality, from its frame's ``quality`` (docs/protocol.md 3.1)."""

    tr: int
    tsnr: dict[str, float | None] = Field(description="ROI (decoder head) -> tSNR over the window")
    global_pct: float | None = Field(description="global signal, % from its running baseline")
    dvars_pct: float | None = Field(description="DVARS, % of the global baseline")
    dvars_z: float | None = Field(description="robust z of DVARS")
    outlier: bool = Field(description="the decoder flagged the volume as an outlier")
    crossed: list[str] = Field(
        description="the measures over their thresholds at this TR: fd, tsnr, global, dvars"
    )


class QualityView(_PageModel):
    """Live data quality per TR and the thresholds it is judged by (``quality`` config)."""

    rois: list[str] = Field(description="the ROIs of the tSNR, in the order first seen")
    window_trs: int = Field(description="TRs in the decoder's sliding window (quality.window_trs)")
    min_tsnr: float
    max_global_pct: float
    max_dvars_z: float
    stop_window_trs: int
    stop_after_trs: int
    crossing_trs: int = Field(
        description="TRs of the current run among its last stop_window_trs that crossed a "
        "threshold (framewise displacement included)"
    )
    points: list[QualityPoint] = Field(description="kept frames with a quality")


class AlignmentView(_PageModel):
    """The current run's head position against the decoder bundle's reference: the decoder's
    ``alignment`` heartbeat counter (docs/protocol.md 3.3) as the run card shows it."""

    text: str = Field(
        description="the run card's line, e.g. 'aligned to the bundle: 3.1 mm, 2.0 deg'"
    )
    amber: bool = Field(description="beyond the decoder's limits, or the fit did not converge")
    tr: int = Field(description="the TR it was measured at")
    translation_mm: float
    rotation_deg: float
    converged: bool
    within_limits: bool = Field(description="within decoder.max_alignment_mm and max_alignment_deg")


class TruthView(_PageModel):
    """The stimulus a reconstruction is paired with (docs/protocol.md 2a)."""

    stimulus_id: int
    caption: str
    onset_tr: int
    scored: bool = Field(
        description="the frame is the one the scoring takes for this trial: onset + lag_trs"
    )
    picture: str | None = Field(
        description="URL of the stimulus picture (null: no dataset, or not in it)"
    )


class Pair(_PageModel):
    """A recent frame and its pairing."""

    tr: int
    seq: int
    truth: TruthView | None
    trial: TrialRef | None = Field(
        description="the decoder's trial (trial mode), as the frame carried it"
    )


class Alert(_PageModel):
    """Something the operator must look at."""

    kind: AlertKind
    text: str


class ConsoleStateMessage(_PageModel):
    """The console state (``/ws/console`` text message, and ``GET /api/state``)."""

    type: Literal["state"]
    session: str | None
    run: str | None = Field(description="the current run: the decoder's, else the newest frame's")
    series: str | None = Field(description="its scanner series number (null: none or unknown)")
    series_description: str | None = Field(
        description="its series description, from the volume stream's metadata"
    )
    runs: int = Field(description="runs so far: the current run is the n-th of the session")
    tr: int | None = Field(description="TR of the newest picture")
    interval_s: float | None = Field(description="seconds between TRs on the wire")
    lag_trs: int | None
    nodes: list[NodeView]
    volume_source: VolumeSourceView | None = Field(
        description="the volume stream's card (null: the console does not look for it)"
    )
    marker_source: MarkerSourceView | None = Field(
        description="the marker stream's card (null: the console does not read it)"
    )
    counts: Counts
    stages: list[str]
    budgets_ms: dict[str, float]
    latency: list[LatencyPoint]
    latency_summary: list[StageSummary]
    motion: Motion
    confidence: ConfidenceTrace
    quality: QualityView
    alignment: AlignmentView | None = Field(
        description="the current run's alignment to the decoder bundle (null: not measured "
        "yet in this run, or a bundle that does not realign)"
    )
    pairs: list[Pair] = Field(description="the last 12 frames")
    warnings: list[Alert] = Field(description="most serious first")
    pictures: bool = Field(description="the server has stimulus pictures (console.dataset)")
    feedback: Literal["real", "yoked", "blinded"] = Field(
        description="the session's feedback condition (the config's feedback section); "
        "blinded: set by a study file, not shown",
    )


class WaitingMessage(_PageModel):
    """No picture to show (``/ws/participant`` text message)."""

    type: Literal["waiting"]
    reason: NodeLevel | None = Field(
        description="the renderer's level; null before it was ever heard"
    )


class ParticipantPicture(_PageModel):
    """The JSON meta of a picture on ``/ws/participant`` (:mod:`rt_recon.display.frames`)."""

    tr: int
    seq: int
    width: int
    height: int
    times: Times = Field(description="the frame's stage times (docs/protocol.md 3.5)")
    crossfade_ms: float = Field(
        description="the participant display crossfades into this picture over this long "
        "(console.crossfade_ms; 0: at once); the console page draws it at once"
    )
    confidence: float | None = Field(
        description="the frame's confidence, 0..1 (docs/protocol.md 3.1; null: none)"
    )
    fade_below: float | None = Field(
        description="the participant display fades a picture whose confidence is below this "
        "toward the fixation screen, opacity confidence / fade_below "
        "(console.confidence_fade_below; null: never)",
    )


class ConsolePicture(ParticipantPicture):
    """The JSON meta of a picture on ``/ws/console``: the participant's, and its pairing."""

    run: str
    lag_trs: int
    latency_ms: dict[str, float]
    fd: float | None = Field(description="framewise displacement, mm")
    truth: TruthView | None
    trial: TrialRef | None


class PresentTrial(_PageModel):
    """One trial of a run to present (:class:`PresentDesign`)."""

    trial: int
    onset: float = Field(description="seconds from the run's start")
    duration: float = Field(
        description="seconds the picture is up (a cue row: the cue; imagery: the imagining)"
    )
    trial_type: TrialType
    stimulus_id: int | None = Field(description="null for a blank or cue row")
    caption: str | None = Field(description="the picture's caption; a cue row: the cue's words")
    picture: str | None = Field(
        description="the picture's URL on this server; null where none is shown (blank, cue, "
        "imagery)"
    )


class PresentDesign(_PageModel):
    """A training run for the participant page to play (``/ws/present``, ``rt-recon present``)."""

    type: Literal["design"]
    run: str
    start_on: Literal["key", "volume"]
    trigger_key: str = Field(description="KeyboardEvent.key that starts the run")
    response_keys: list[str] = Field(description="KeyboardEvent.key values of responses")
    lead_out_s: float
    total_s: float = Field(description="seconds from the start to the end of the lead-out")
    trials: list[PresentTrial]


class PresentPong(_PageModel):
    """The answer to the page's clock ``ping`` (``/ws/present``)."""

    type: Literal["pong"]
    id: int = Field(description="the ping's id")
    t: float = Field(description="the server's LSL clock when it answered, seconds")


class PresentStart(_PageModel):
    """The scanner's first volume: the run starts (``/ws/present``, ``start_on`` volume)."""

    type: Literal["start"]
    t: float = Field(description="acquisition time of volume 0, LSL clock, seconds")


class PresentOff(_PageModel):
    """No run for this page (``/ws/present``): none loaded (``off``), or another page plays
    it (``busy``)."""

    type: Literal["off", "busy"]


#: Schema names of the messages, as the pages ask for them.
MESSAGES: dict[str, type[_PageModel]] = {
    "state": ConsoleStateMessage,
    "waiting": WaitingMessage,
    "participant_picture": ParticipantPicture,
    "console_picture": ConsolePicture,
    "present_design": PresentDesign,
    "present_pong": PresentPong,
    "present_start": PresentStart,
    "present_off": PresentOff,
}


def page_schema() -> dict[str, Any]:
    """One JSON schema document for every page message: ``messages`` names each message's
    definition in ``$defs``."""
    refs, definitions = models_json_schema(
        [(model, "serialization") for model in MESSAGES.values()],
        ref_template="#/$defs/{model}",
    )
    return {
        "title": "rt_recon console page messages",
        "description": f"Generated from rt_recon/display/messages.py by `{REGENERATE}`; "
        "do not edit. docs/console.md describes the messages.",
        "messages": {name: refs[(model, "serialization")] for name, model in MESSAGES.items()},
        **definitions,
    }


def schema_text() -> str:
    """:func:`page_schema` as the text of :data:`SCHEMA_PATH`."""
    return json.dumps(page_schema(), indent=2, sort_keys=True) + "\n"


def write_schema(path: Path = SCHEMA_PATH) -> Path:
    """Write the schema the pages load; returns the path."""
    path.write_text(schema_text())
    return path


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.info("wrote %s", write_schema(Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_PATH))
