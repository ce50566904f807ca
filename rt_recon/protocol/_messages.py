"""The typed messages on the ZeroMQ wire: latents, frame, status, control (docs/protocol.md 3).

Each message type is built and read here, and only here: a producer builds
the typed object and encodes it, a consumer decodes and validates it, and
docs/protocol.md's field tables are held equal to these types by a test.

Every header carries the framing keys (``protocol``, ``version``,
``buffers``; :mod:`rt_recon.protocol._framing`) and ``schema``, the version
of its message type's fields (absent: 1). A consumer refuses a schema newer
than the one it reads; it ignores keys it does not know (adding a key does
not change a schema).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rt_recon.errors import ProtocolError
from rt_recon.protocol._framing import (
    FRAMING_KEYS,
    TOPIC_CONTROL,
    TOPIC_FRAME,
    TOPIC_LATENTS,
    TOPIC_STATUS,
    Message,
    encode_message,
)
from rt_recon.protocol._stages import stage_latencies

#: Header key of a message type's schema version.
SCHEMA_KEY = "schema"


def _problems(exc: ValidationError) -> str:
    """One clause per bad field: where, what was expected, what was found."""
    clauses = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(header)"
        found = "missing" if e["type"] == "missing" else f"found {e.get('input')!r}"
        clauses.append(f"{where}: {e['msg']} ({found})")
    return "; ".join(clauses)


class _Header(BaseModel):
    """A JSON header: strict types, unknown keys ignored, a schema version."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)
    SCHEMA: ClassVar[int] = 1
    KIND: ClassVar[str] = "header"

    @classmethod
    def from_json(cls, header: Mapping[str, Any]) -> Self:
        """Validate a decoded header; ProtocolError naming every bad field."""
        schema = header.get(SCHEMA_KEY, 1)
        if not isinstance(schema, int) or schema > cls.SCHEMA:
            raise ProtocolError(
                f"{cls.KIND} schema {schema!r}: this rt_recon reads schema {cls.SCHEMA} or older"
            )
        try:
            return cls.model_validate({k: v for k, v in header.items() if k not in FRAMING_KEYS})
        except ValidationError as exc:
            raise ProtocolError(f"malformed {cls.KIND} header: {_problems(exc)}") from None

    def to_json(self) -> dict[str, Any]:
        """The header's own keys (the framing adds ``protocol``, ``version``, ``buffers``)."""
        return {SCHEMA_KEY: self.SCHEMA, **self.model_dump(mode="json", exclude_none=True)}

    def encode(self) -> list[Any]:
        """A header-only message (status, control) as frames for ``send_multipart``."""
        topic = getattr(self, "TOPIC", None)
        if topic is None:
            raise ProtocolError(f"a {self.KIND} header is part of a message, not one")
        return encode_message(topic, self.to_json())


# ----------------------------------------------------------------------- latents, frame


class Times(_Header):
    """Stage times of one TR, seconds on the LSL clock (docs/protocol.md 3.5)."""

    KIND: ClassVar[str] = "times"

    acquired: float
    received: float | None = None
    preprocessed: float | None = None
    decoded: float | None = None
    sent: float | None = None
    render_received: float | None = None
    rendered: float | None = None
    published: float | None = None

    def latencies(self) -> dict[str, float]:
        """Seconds per stage whose two ends are present."""
        return stage_latencies(self.model_dump(exclude_none=True))

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class TrialRef(_Header):
    """The trial a TR's estimate is of (trial mode)."""

    KIND: ClassVar[str] = "trial"

    index: int = Field(ge=0)
    stimulus_id: int | None
    onset_tr: int
    complete: bool


class DataQuality(_Header):
    """One TR's data quality as the decoder measured it on its realigned voxels before the
    temporal stages (docs/protocol.md 3.1; :mod:`rt_recon.preprocess.quality`)."""

    KIND: ClassVar[str] = "quality"

    tsnr: dict[str, float | None]
    global_pct: float | None = None
    dvars_pct: float | None = None
    dvars_z: float | None = None
    outlier: bool = False
    outliers: int = Field(default=0, ge=0)
    window_trs: int = Field(default=0, ge=0)


class TrHeader(_Header):
    """What every per-TR message says of its TR (the latents' and the frame's common part)."""

    seq: int = Field(ge=0)
    tr: int = Field(ge=0)
    missed_before: int = Field(default=0, ge=0)
    warming_up: bool = False
    volume_crc32: int = Field(ge=0, le=0xFFFFFFFF)
    session: str
    run: str
    model_fingerprint: str
    lag_trs: int = Field(ge=0)
    mode: Literal["trial", "continuous"]
    trial: TrialRef | None = None
    motion: list[float] | None = Field(default=None, min_length=6, max_length=6)
    fd: float | None = None
    spike: bool = False
    quality: DataQuality | None = None
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    times: Times


class LatentsHeader(TrHeader):
    """Header of a ``latents`` message (decoder -> renderer, docs/protocol.md 3.1)."""

    KIND: ClassVar[str] = "latents"


class Interpolation(_Header):
    """What an interpolated frame is (docs/protocol.md 3.2): rendered from the latents a
    fraction ``t`` of the way from TR ``from_tr``'s to its own TR's, between the two TRs'
    own frames (``renderer.interpolate_fps``)."""

    KIND: ClassVar[str] = "interpolated"

    from_tr: int = Field(ge=0)
    t: float = Field(gt=0.0, lt=1.0)


class FrameHeader(TrHeader):
    """Header of a ``frame`` message (renderer -> displays, docs/protocol.md 3.2): the latents'
    fields passed on, the renderer's count of stale latents skipped, and the render times.

    A TR's own frame has ``interpolated`` None and goes out as schema 1, as before; a frame
    rendered between two TRs' frames (``interpolated`` set) goes out as schema 2, so a
    consumer that reads schema 1 refuses it instead of taking it for its TR's picture.
    """

    KIND: ClassVar[str] = "frame"
    SCHEMA: ClassVar[int] = 2

    skipped_total: int = Field(default=0, ge=0)
    interpolated: Interpolation | None = None

    @classmethod
    def from_latents(
        cls, latents: LatentsHeader, skipped_total: int, render_received: float, rendered: float,
        published: float, interpolated: Interpolation | None = None,
    ) -> FrameHeader:  # fmt: skip
        times = latents.times.model_copy(
            update={
                "render_received": render_received,
                "rendered": rendered,
                "published": published,
            }
        )
        return cls(
            **{name: getattr(latents, name) for name in TrHeader.model_fields if name != "times"},
            skipped_total=skipped_total,
            times=times,
            interpolated=interpolated,
        )

    def to_json(self) -> dict[str, Any]:
        """Schema 1 for a TR's own frame (what every consumer reads), 2 for an interpolated one."""
        return {**super().to_json(), SCHEMA_KEY: 1 if self.interpolated is None else self.SCHEMA}


def is_interpolated(header: Mapping[str, Any]) -> bool:
    """True for the header (a decoded JSON object, as recorded) of a frame rendered between
    two TRs' own frames: not a TR's picture (never scored, timed or counted as one)."""
    return header.get("interpolated") is not None


def _float_array(name: str, value: np.ndarray, ndim: int) -> np.ndarray:
    if not np.issubdtype(value.dtype, np.floating) or value.ndim != ndim:
        raise ProtocolError(
            f"buffer {name!r} must be a {ndim}-d float array, "
            f"found {value.dtype} {list(value.shape)}"
        )
    return value


@dataclass(frozen=True)
class Latents:
    """A ``latents`` message: header, ``z`` ``(C, h, w)`` and ``c`` ``(L, D)`` float32."""

    TOPIC: ClassVar[str] = TOPIC_LATENTS

    header: LatentsHeader
    z: np.ndarray
    c: np.ndarray

    def encode(self) -> list[Any]:
        """Frames for ``send_multipart``."""
        return encode_message(self.TOPIC, self.header.to_json(), {"z": self.z, "c": self.c})

    @classmethod
    def from_message(cls, message: Message) -> Latents:
        """Validate a decoded message; ProtocolError when it is no latents message."""
        _check_topic(message, cls.TOPIC)
        _check_buffers(message, ("z", "c"))
        return cls(
            LatentsHeader.from_json(message.header),
            _float_array("z", message.arrays["z"], 3),
            _float_array("c", message.arrays["c"], 2),
        )


@dataclass(frozen=True)
class Frame:
    """A ``frame`` message: header and ``image`` ``(H, W, 3)`` uint8 RGB."""

    TOPIC: ClassVar[str] = TOPIC_FRAME

    header: FrameHeader
    image: np.ndarray

    def encode(self) -> list[Any]:
        return encode_message(self.TOPIC, self.header.to_json(), {"image": self.image})

    @classmethod
    def from_message(cls, message: Message) -> Frame:
        _check_topic(message, cls.TOPIC)
        _check_buffers(message, ("image",))
        image = message.arrays["image"]
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ProtocolError(
                f"buffer 'image' must be (H, W, 3) uint8, found {image.dtype} {list(image.shape)}"
            )
        return cls(FrameHeader.from_json(message.header), image)


def _check_topic(message: Message, topic: str) -> None:
    if message.topic != topic:
        raise ProtocolError(f"expected a {topic!r} message, found topic {message.topic!r}")


def _check_buffers(message: Message, names: tuple[str, ...]) -> None:
    missing = [n for n in names if n not in message.arrays]
    if missing:
        raise ProtocolError(
            f"{message.topic} message needs buffers {list(names)}, found {sorted(message.arrays)}"
        )


# ------------------------------------------------------------------------------- status

#: Seconds between heartbeats: every node sends at least one per period, in every state.
HEARTBEAT_PERIOD_S = 1.0

#: A node silent this long (three heartbeat periods) is away.
AWAY_AFTER_S = 3 * HEARTBEAT_PERIOD_S

NodeState = Literal[
    "starting",
    "waiting_for_subscribers",
    "waiting_for_stream",
    "streaming",
    "refused",
    "paused",
    "running",
    "write_failed",
    "stopped",
]

#: States in which a node's inlet is open on its stream (the recorder's ``paused``: open,
#: taking volumes without recording them, until the operator starts recording again).
INLET_OPEN_STATES = frozenset({"streaming", "refused", "paused"})

#: States that mean "doing its job".
WORKING_STATES = frozenset({"running", "streaming"})

#: States that mean "up, but cannot do its job" (the recorder once its disk is full, the
#: decoder on a run whose grid is not its bundle's).
FAILED_STATES = frozenset({"write_failed", "refused"})


@dataclass(frozen=True)
class RunAlignment:
    """How far the current run's head sits from the decoder bundle's reference: the rigid
    alignment of the run's first decoded volume (docs/protocol.md 3.3, ``alignment``)."""

    tr: int  # the TR it was measured at (the run's first decoded TR)
    translation_mm: float  # length of the translation, mm
    rotation_deg: float  # angle of the rotation, degrees
    params: list[float]  # [tx, ty, tz, pitch, roll, yaw], mm and rad (SPM convention, as motion)
    converged: bool  # the fit met its stopping rule
    limit_mm: float  # decoder.max_alignment_mm
    limit_deg: float  # decoder.max_alignment_deg
    within_limits: bool  # translation_mm <= limit_mm and rotation_deg <= limit_deg


@dataclass
class DecoderCounters:
    """The decoder's heartbeat counters (every state carries all of them)."""

    source_id: str | None = None  # the volume stream it reads
    stream_uid: str | None = None  # the LSL uid of the outlet its inlet is on now
    run: str | None = None  # the run (series) of that stream now; None before the first
    series: str | None = None  # its scanner series number ("" without one)
    runs: int = 0  # runs begun (a new series is a new run)
    tr: int = -1  # the last TR decoded in this run (-1: none yet)
    volumes: int = 0  # received, whatever became of them
    last_volume_t: float | None = None  # when the last one arrived (LSL clock, as ``t``)
    published: int = 0  # latents messages sent
    skipped: int = 0  # assigned a TR but not decodable (NaN values, wrong shape)
    missed: int = 0  # TRs that never arrived
    duplicates: int = 0  # the last volume again (its stamp and data): not assigned a TR
    out_of_order: int = 0  # volumes stamped before the last one: not assigned a TR
    refused: int = 0  # volumes of a run whose grid is not the bundle's (not decoded)
    error: str | None = None  # why the current run is refused (state refused), both grids named
    bad_markers: int = 0  # marker samples that were no valid marker (dropped, logged)
    alignment: RunAlignment | None = None  # the current run's, once its first TR is decoded


@dataclass
class RendererCounters:
    """The renderer's heartbeat counters."""

    tr: int = -1  # the TR of the last frame published
    rendered: int = 0
    skipped_stale: int = 0  # latents dropped because a newer one was waiting
    rejected: int = 0  # latents that do not fit the model (shapes, NaN)
    foreign_model: int = 0  # latents decoded for another render model (fingerprint)
    malformed: int = 0  # messages that broke the protocol
    png_failed: int = 0  # frames published but not saved as PNG (disk full, ...)
    interpolated: int = 0  # frames published between two TRs' own (renderer.interpolate_fps)


@dataclass
class RecorderCounters:
    """The recorder's heartbeat counters."""

    source_id: str | None = None
    stream_uid: str | None = None  # the LSL uid of the outlet its inlet is on now
    run: str | None = None  # the run (series) of the volume stream it records now
    series: str | None = None  # its scanner series number ("" without one)
    path: str | None = None  # the recording file
    volumes: int = 0
    last_volume_t: float | None = None  # when the last volume arrived (LSL clock, as ``t``)
    markers: int = 0
    latents: int = 0
    frames: int = 0
    interpolated: int = 0  # frames rendered between two TRs' own: taken, not recorded
    status: int = 0
    rejected: int = 0  # messages that do not fit the recording
    unrecorded: int = 0  # items taken after a failed write (disk full), not recorded
    paused: int = 0  # items taken while the operator had stopped recording
    disk_free_mb: float | None = None
    disk_minutes_left: float | None = None  # at the file's growth over the last 30 s
    disk_low: bool = False  # under recorder.low_disk_mb or low_disk_minutes
    error: str | None = None  # why the file cannot be written (state write_failed)
    errno: int | None = None


#: Counters each node's heartbeats carry, by node name.
NODE_COUNTERS: dict[str, type] = {
    "decoder": DecoderCounters,
    "renderer": RendererCounters,
    "recorder": RecorderCounters,
}

_STATUS_BASE = ("node", "pid", "state", "seq", "t", "uptime_s")


class Status(_Header):
    """A heartbeat (docs/protocol.md 3.3): header only, counters flat beside the base keys."""

    KIND: ClassVar[str] = "status"
    TOPIC: ClassVar[str] = TOPIC_STATUS

    node: str = Field(min_length=1)
    pid: int = Field(ge=0)
    state: NodeState
    seq: int = Field(ge=0)
    t: float
    uptime_s: float = Field(ge=0)
    counters: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_json(cls, header: Mapping[str, Any]) -> Status:
        own = {k: v for k, v in header.items() if k not in FRAMING_KEYS and k != SCHEMA_KEY}
        base = {k: own.pop(k) for k in _STATUS_BASE if k in own}
        return super().from_json({SCHEMA_KEY: header.get(SCHEMA_KEY, 1), **base, "counters": own})

    def to_json(self) -> dict[str, Any]:
        base = self.model_dump(mode="json", exclude={"counters"})
        return {SCHEMA_KEY: self.SCHEMA, **base, **self.counters}


def counters_json(counters: Any) -> dict[str, Any]:
    """A node's counters dataclass as the flat dict a heartbeat carries."""
    return asdict(counters)


def counter_names(node: str) -> tuple[str, ...]:
    """The counter keys of ``node``'s heartbeats (empty for a node without a counters type)."""
    kind = NODE_COUNTERS.get(node)
    return tuple(f.name for f in fields(kind)) if kind is not None else ()


# ------------------------------------------------------------------------------ control


class ControlRequest(_Header):
    """A request to a node's control socket (docs/protocol.md 3.7)."""

    KIND: ClassVar[str] = "control request"
    TOPIC: ClassVar[str] = TOPIC_CONTROL

    command: str = Field(min_length=1)
    by: str = "unknown"


class ControlReply(_Header):
    """A node's answer: ``ok``, and ``error`` when not; node-specific fields beside."""

    model_config = ConfigDict(frozen=True, extra="allow", strict=True)
    KIND: ClassVar[str] = "control reply"
    TOPIC: ClassVar[str] = TOPIC_CONTROL

    ok: bool
    error: str | None = None
    recording: bool | None = None  # the recorder: whether it records now

    def to_json(self) -> dict[str, Any]:
        return {SCHEMA_KEY: self.SCHEMA, **self.model_dump(mode="json", exclude_none=True)}
