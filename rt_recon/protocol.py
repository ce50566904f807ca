"""Every wire format of rt_recon, in one place (described for humans in docs/protocol.md).

Two wires:

* **LSL** carries volumes (stream type ``fMRI``, one sample = one volume) and
  events (stream type ``Markers``, one JSON object per sample). The volume
  stream's ``desc/rt_recon`` element describes the geometry once.
* **ZeroMQ** PUB/SUB carries latents, frames and status as multipart
  messages ``[topic, header, *buffers]``: the header is UTF-8 JSON, each
  buffer a raw C-order array whose dtype and shape the header lists.

No pickle anywhere: a consumer in any language can read both from the doc.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pylsl

from rt_recon._liblsl import quiet_liblsl
from rt_recon.errors import ProtocolError

quiet_liblsl()  # before anything below touches liblsl

PROTOCOL_NAME = "rt_recon"
PROTOCOL_VERSION = 1

VOLUME_STREAM_TYPE = "fMRI"
MARKER_STREAM_TYPE = "Markers"

#: Voxel order of a flattened volume: Fortran order over (x, y, z), i.e. x
#: varies fastest, as in a NIfTI file on disk.
VOXEL_ORDER = "xyz-fortran"

#: ZeroMQ topics (the first frame of every message).
TOPIC_LATENTS = "latents"
TOPIC_FRAME = "frame"
TOPIC_STATUS = "status"
TOPIC_CONTROL = "control"  # request and reply on a node's control socket (REQ/REP)

#: dtypes a buffer may have on the ZeroMQ wire (numpy names, little-endian).
WIRE_DTYPES = frozenset({"uint8", "int16", "uint16", "int32", "float16", "float32", "float64"})

#: Default upper bound on one message's buffers, in bytes.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

#: Named timestamps a message can carry in ``header["times"]``, in pipeline order.
#: All are seconds on the LSL clock (``pylsl.local_clock()``).
TIME_KEYS = (
    "acquired",  # the volume's LSL timestamp: acquisition time
    "received",  # decoder pulled the volume from LSL
    "preprocessed",  # decoder finished preprocessing
    "decoded",  # decoder finished applying the decoders
    "sent",  # decoder handed the latents message to ZeroMQ
    "render_received",  # renderer took the latents message off its socket
    "rendered",  # renderer finished diffusion and VAE decode
    "published",  # renderer handed the frame to ZeroMQ
)

#: Latency stages reported per TR: (name, start key, end key).
STAGES = (
    ("lsl_transport", "acquired", "received"),
    ("preprocess", "received", "preprocessed"),
    ("decode", "preprocessed", "decoded"),
    ("zmq_latents", "sent", "render_received"),
    ("render", "render_received", "rendered"),
    ("end_to_end", "acquired", "published"),
)


# --------------------------------------------------------------------------- LSL


#: How a volume stream is paced (see :attr:`VolumeStreamMeta.pace`).
PACES = ("realtime", "asap")


@dataclass(frozen=True, eq=False)
class VolumeStreamMeta:
    """What a volume stream says about itself in its ``desc``.

    Attributes:
        shape: volume shape ``(x, y, z)`` in voxels.
        affine: ``(4, 4)`` voxel-to-world matrix, RAS+ millimetres.
        tr: repetition time in seconds (of the acquisition, not of the replay).
        session: session identifier.
        run: run identifier.
        mask_id: ``"full"`` when every voxel is sent, else the id of the mask
            whose voxels (in :data:`VOXEL_ORDER`) are the channels.
        n_channels: values per sample (voxels of the volume or of the mask).
        speed: replay speed (1.0 for a scanner); samples arrive every ``tr / speed`` s.
        channel_format: ``"float32"`` or ``"int16"``.
        pace: ``"realtime"`` (a scanner, or a replay by target timestamps: a gap of
            k sample intervals means k - 1 TRs never arrived) or ``"asap"`` (a replay
            as fast as its consumer takes volumes, with back-pressure: nothing is
            dropped, so every new volume is the next TR whatever the gap).
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    tr: float
    session: str = "unknown"
    run: str = "unknown"
    mask_id: str = "full"
    n_channels: int = 0
    speed: float = 1.0
    channel_format: str = "float32"
    pace: str = "realtime"

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or any(int(s) <= 0 for s in self.shape):
            raise ProtocolError(f"volume shape must be three positive ints, found {self.shape}")
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ProtocolError(f"affine must be 4x4, found shape {affine.shape}")
        object.__setattr__(self, "affine", affine)
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if self.n_channels == 0:
            object.__setattr__(self, "n_channels", self.n_voxels)
        if self.mask_id == "full" and self.n_channels != self.n_voxels:
            raise ProtocolError(
                f"a full-volume stream needs {self.n_voxels} channels for shape {self.shape}, "
                f"found {self.n_channels}"
            )
        if not (self.tr > 0 and self.speed > 0):
            raise ProtocolError(f"tr and speed must be positive, found {self.tr}, {self.speed}")
        if self.pace not in PACES:
            raise ProtocolError(f"pace must be one of {PACES}, found {self.pace!r}")
        if self.channel_format not in ("float32", "int16"):
            raise ProtocolError(
                f"channel_format must be float32 or int16, found {self.channel_format!r}"
            )

    @property
    def n_voxels(self) -> int:
        return math.prod(self.shape)

    @property
    def sample_interval(self) -> float:
        """Seconds between samples on the wire (``tr / speed``)."""
        return self.tr / self.speed

    def flatten(self, volume: np.ndarray) -> np.ndarray:
        """``(x, y, z)`` volume → ``(n_voxels,)`` vector in :data:`VOXEL_ORDER`."""
        if volume.shape != self.shape:
            raise ProtocolError(f"volume shape {volume.shape} does not match stream {self.shape}")
        return np.ravel(volume, order="F")

    def unflatten(self, vector: np.ndarray) -> np.ndarray:
        """``(n_voxels,)`` vector → ``(x, y, z)`` volume (a view where possible)."""
        return np.reshape(vector, self.shape, order="F")


def make_volume_stream_info(meta: VolumeStreamMeta, name: str, source_id: str) -> pylsl.StreamInfo:
    """Build the LSL ``StreamInfo`` of a volume stream (no per-channel labels)."""
    fmt = pylsl.cf_float32 if meta.channel_format == "float32" else pylsl.cf_int16
    info = pylsl.StreamInfo(
        name, VOLUME_STREAM_TYPE, meta.n_channels, 1.0 / meta.sample_interval, fmt, source_id
    )
    desc = info.desc().append_child(PROTOCOL_NAME)
    values = {
        "protocol_version": str(PROTOCOL_VERSION),
        "shape": ",".join(str(s) for s in meta.shape),
        "voxel_order": VOXEL_ORDER,
        "affine": ",".join(repr(float(v)) for v in meta.affine.ravel()),
        "tr": repr(float(meta.tr)),
        "speed": repr(float(meta.speed)),
        "pace": meta.pace,
        "mask_id": meta.mask_id,
        "session": meta.session,
        "run": meta.run,
    }
    for key, value in values.items():
        desc.append_child_value(key, value)
    return info


def parse_volume_stream_info(info: pylsl.StreamInfo) -> VolumeStreamMeta:
    """Read a :class:`VolumeStreamMeta` back from a resolved stream's full info."""
    if info.type() != VOLUME_STREAM_TYPE:
        raise ProtocolError(
            f"stream {info.name()!r} has type {info.type()!r}, expected {VOLUME_STREAM_TYPE!r}"
        )
    node = info.desc().child(PROTOCOL_NAME)
    if node.empty():
        raise ProtocolError(
            f"stream {info.name()!r} has no desc/{PROTOCOL_NAME} element; "
            "is it an rt_recon volume stream (protocol >= 1)?"
        )

    def value(key: str) -> str:
        text = node.child_value(key)
        if text == "":
            raise ProtocolError(f"stream {info.name()!r}: desc/{PROTOCOL_NAME}/{key} is missing")
        return text

    version = int(value("protocol_version"))
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"stream {info.name()!r} speaks protocol version {version}, "
            f"this rt_recon speaks {PROTOCOL_VERSION}"
        )
    if value("voxel_order") != VOXEL_ORDER:
        raise ProtocolError(
            f"stream {info.name()!r} voxel order {value('voxel_order')!r}, expected {VOXEL_ORDER!r}"
        )
    try:
        shape = tuple(int(s) for s in value("shape").split(","))
        affine = np.array([float(v) for v in value("affine").split(",")]).reshape(4, 4)
        tr = float(value("tr"))
        speed = float(value("speed"))
    except ValueError as exc:
        raise ProtocolError(f"stream {info.name()!r}: malformed geometry in desc: {exc}") from None
    fmt = {pylsl.cf_float32: "float32", pylsl.cf_int16: "int16"}.get(info.channel_format())
    if fmt is None:
        raise ProtocolError(
            f"stream {info.name()!r}: channel format {info.channel_format()} is not float32/int16"
        )
    return VolumeStreamMeta(
        shape=shape,  # type: ignore[arg-type]
        affine=affine,
        tr=tr,
        session=value("session"),
        run=value("run"),
        mask_id=value("mask_id"),
        n_channels=info.channel_count(),
        speed=speed,
        channel_format=fmt,
        pace=node.child_value("pace") or "realtime",  # optional: older sources are realtime
    )


#: Channels of the decoder's per-TR output stream, in order.
DECODED_CHANNELS = (
    "tr",
    "warming_up",
    "tx_mm",
    "ty_mm",
    "tz_mm",
    "rx_rad",
    "ry_rad",
    "rz_rad",
    "fd_mm",
    "z_mean",
    "z_std",
    "c_mean",
    "c_std",
)
DECODED_STREAM_TYPE = "rt_recon_decoded"


def make_decoded_stream_info(name: str, source_id: str, sample_interval: float) -> pylsl.StreamInfo:
    """The decoder's per-TR summary stream: one float64 sample of :data:`DECODED_CHANNELS`
    per TR, stamped with the volume's acquisition time. Motion channels are NaN
    when the decoder does no motion correction."""
    info = pylsl.StreamInfo(
        name,
        DECODED_STREAM_TYPE,
        len(DECODED_CHANNELS),
        1.0 / sample_interval,
        "double64",
        source_id,
    )
    desc = info.desc()
    desc.append_child(PROTOCOL_NAME).append_child_value("protocol_version", str(PROTOCOL_VERSION))
    channels = desc.append_child("channels")
    for label in DECODED_CHANNELS:
        channel = channels.append_child("channel")
        channel.append_child_value("label", label)
    return info


def make_marker_stream_info(name: str, source_id: str) -> pylsl.StreamInfo:
    """An irregular-rate string stream; each sample is one JSON event object."""
    info = pylsl.StreamInfo(name, MARKER_STREAM_TYPE, 1, pylsl.IRREGULAR_RATE, "string", source_id)
    info.desc().append_child(PROTOCOL_NAME).append_child_value(
        "protocol_version", str(PROTOCOL_VERSION)
    )
    return info


def encode_marker(event: Mapping[str, Any]) -> str:
    return json.dumps(dict(event), separators=(",", ":"), allow_nan=False)


def decode_marker(text: str) -> dict[str, Any]:
    try:
        event = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"marker is not JSON ({exc}): {text[:80]!r}") from None
    if not isinstance(event, dict):
        raise ProtocolError(f"marker must be a JSON object, found {type(event).__name__}")
    return event


# ---------------------------------------------------------------------- ZeroMQ


@dataclass
class Message:
    """A decoded ZeroMQ message: topic, JSON header and named arrays (read-only views)."""

    topic: str
    header: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def times(self) -> dict[str, float]:
        return self.header.setdefault("times", {})


def encode_message(
    topic: str, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None
) -> list[Any]:
    """Frames ``[topic, header, *buffers]`` ready for ``socket.send_multipart(..., copy=False)``.

    The header gets ``protocol``, ``version`` and a ``buffers`` list
    (``name``, ``dtype``, ``shape`` per array); arrays are sent as their raw
    C-order bytes without copying.
    """
    arrays = arrays or {}
    specs = []
    buffers = []
    for name, array in arrays.items():
        arr = np.ascontiguousarray(array)
        dtype = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        if dtype.name not in WIRE_DTYPES:
            raise ProtocolError(
                f"array {name!r} has dtype {arr.dtype}, expected one of {sorted(WIRE_DTYPES)}"
            )
        arr = arr.astype(dtype.newbyteorder("<"), copy=False)
        specs.append({"name": name, "dtype": dtype.name, "shape": list(arr.shape)})
        buffers.append(arr)
    full_header = {"protocol": PROTOCOL_NAME, "version": PROTOCOL_VERSION, **header}
    full_header["buffers"] = specs
    try:
        header_bytes = json.dumps(full_header, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"header is not JSON-serialisable: {exc}") from None
    return [topic.encode(), header_bytes, *buffers]


def _frame_bytes(frame: Any) -> memoryview:
    buffer = getattr(frame, "buffer", frame)  # zmq.Frame exposes .buffer
    return memoryview(buffer)


def decode_message(frames: Sequence[Any], max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Message:
    """Parse and validate ``[topic, header, *buffers]``; raise :class:`ProtocolError` if malformed.

    The arrays are zero-copy, read-only views of the received frames.
    """
    if len(frames) < 2:
        raise ProtocolError(f"expected at least 2 frames (topic, header), found {len(frames)}")
    total = sum(_frame_bytes(f).nbytes for f in frames)
    if total > max_bytes:
        raise ProtocolError(f"message of {total} bytes exceeds the limit of {max_bytes} bytes")
    try:
        topic = bytes(_frame_bytes(frames[0])).decode()
        header = json.loads(bytes(_frame_bytes(frames[1])))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"topic/header is not UTF-8 JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"header must be a JSON object, found {type(header).__name__}")
    if header.get("protocol") != PROTOCOL_NAME or header.get("version") != PROTOCOL_VERSION:
        raise ProtocolError(
            f"expected protocol {PROTOCOL_NAME!r} version {PROTOCOL_VERSION}, found "
            f"{header.get('protocol')!r} version {header.get('version')!r}"
        )
    specs = header.get("buffers", [])
    if not isinstance(specs, list) or len(specs) != len(frames) - 2:
        n_specs = len(specs) if isinstance(specs, list) else "no"
        raise ProtocolError(
            f"header lists {n_specs} buffers but the message carries {len(frames) - 2}"
        )
    arrays: dict[str, np.ndarray] = {}
    for spec, frame in zip(specs, frames[2:], strict=True):
        arrays[_check_spec_name(spec)] = _array_from_frame(spec, frame)
    return Message(topic=topic, header=header, arrays=arrays)


def _check_spec_name(spec: Any) -> str:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ProtocolError(f"buffer spec must be an object with a name, found {spec!r}")
    return spec["name"]


def _array_from_frame(spec: dict[str, Any], frame: Any) -> np.ndarray:
    name = spec["name"]
    dtype_name = spec.get("dtype")
    shape = spec.get("shape")
    if dtype_name not in WIRE_DTYPES:
        raise ProtocolError(
            f"buffer {name!r}: dtype {dtype_name!r} is not one of {sorted(WIRE_DTYPES)}"
        )
    if not (isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape)):
        raise ProtocolError(
            f"buffer {name!r}: shape must be a list of non-negative ints, found {shape!r}"
        )
    dtype = np.dtype(dtype_name).newbyteorder("<")
    view = _frame_bytes(frame)
    expected = math.prod(shape) * dtype.itemsize
    if view.nbytes != expected:
        raise ProtocolError(
            f"buffer {name!r}: dtype {dtype_name} shape {shape} needs {expected} bytes, "
            f"found {view.nbytes}"
        )
    return np.frombuffer(view, dtype=dtype).reshape(shape)


def stage_latencies(times: Mapping[str, float]) -> dict[str, float]:
    """Per-stage latencies in seconds for the :data:`STAGES` whose two ends are present."""
    return {
        name: times[end] - times[start]
        for name, start, end in STAGES
        if start in times and end in times
    }
