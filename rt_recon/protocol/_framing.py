"""The ZeroMQ framing every rt_recon message shares: ``[topic, header, *buffers]``.

The header is UTF-8 JSON with ``protocol``, ``version`` and ``buffers`` (one
``{"name", "dtype", "shape"}`` per buffer frame, in order); each buffer is a
raw C-order little-endian array. What a header means beyond that is the job
of the typed messages (:mod:`rt_recon.protocol._messages`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rt_recon.errors import ProtocolError

PROTOCOL_NAME = "rt_recon"
PROTOCOL_VERSION = 1

#: ZeroMQ topics (the first frame of every message).
TOPIC_LATENTS = "latents"
TOPIC_FRAME = "frame"
TOPIC_STATUS = "status"
TOPIC_CONTROL = "control"  # request and reply on a node's control socket (REQ/REP)

#: Header keys the framing adds to every message (not part of any message's own fields).
FRAMING_KEYS = frozenset({"protocol", "version", "buffers"})

#: dtypes a buffer may have on the ZeroMQ wire (numpy names, little-endian).
WIRE_DTYPES = frozenset({"uint8", "int16", "uint16", "int32", "float16", "float32", "float64"})

#: Default upper bound on one message's buffers, in bytes.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


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


def decode_message(
    frames: Sequence[Any],
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    require_framing: bool = True,
) -> Message:
    """Parse and validate ``[topic, header, *buffers]``; raise :class:`ProtocolError` if malformed.

    The arrays are zero-copy, read-only views of the received frames. With
    ``require_framing=False`` (control requests, docs/protocol.md 3.7) a header
    may leave out ``protocol``/``version``/``buffers``; where present they must
    still be right.
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
    bare = not require_framing and "protocol" not in header and "version" not in header
    if not bare and (
        header.get("protocol") != PROTOCOL_NAME or header.get("version") != PROTOCOL_VERSION
    ):
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
