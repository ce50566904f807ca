"""The binary WebSocket message that carries one picture to a page.

Layout (all little-endian)::

    bytes 0..3     uint32 n: length of the JSON meta
    bytes 4..4+n   UTF-8 JSON meta: a ParticipantPicture or ConsolePicture
                   (rt_recon/display/messages.py): tr, seq, width, height, times, ...
    the rest       the picture, uint8 RGB, row-major, height * width * 3 bytes

Raw RGB, not PNG: the server does no encoding (a frame goes out as soon as
it arrives) and the page copies it into a canvas in about a millisecond.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from rt_recon.display.messages import ParticipantPicture
from rt_recon.errors import ProtocolError

_LENGTH = struct.Struct("<I")


def encode_frame(meta: ParticipantPicture, image: np.ndarray) -> bytes:
    """One binary message from its meta (a :class:`ParticipantPicture` or its console
    subclass) and the ``(H, W, 3)`` uint8 RGB picture it describes."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ProtocolError(
            f"a frame picture must be (H, W, 3) uint8 RGB, found {image.shape} {image.dtype}"
        )
    if (meta.height, meta.width) != image.shape[:2]:
        raise ProtocolError(
            f"picture meta says {meta.width}x{meta.height}, the picture is "
            f"{image.shape[1]}x{image.shape[0]} (width x height)"
        )
    text = json.dumps(meta.to_json(), separators=(",", ":"), allow_nan=False).encode()
    return b"".join((_LENGTH.pack(len(text)), text, np.ascontiguousarray(image).tobytes()))


def decode_frame(payload: bytes) -> tuple[dict[str, Any], np.ndarray]:
    """The JSON meta (as sent) and ``(H, W, 3)`` picture of a message made by
    :func:`encode_frame`."""
    if len(payload) < _LENGTH.size:
        raise ProtocolError(f"a frame message needs at least 4 bytes, found {len(payload)}")
    (n,) = _LENGTH.unpack_from(payload)
    try:
        meta = json.loads(payload[_LENGTH.size : _LENGTH.size + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"frame meta is not UTF-8 JSON: {exc}") from None
    size = (meta.get("width"), meta.get("height")) if isinstance(meta, dict) else (None, None)
    width, height = size
    if not isinstance(width, int) or not isinstance(height, int):
        raise ProtocolError(f"frame meta needs integer width and height, found {meta!r:.200}")
    pixels = memoryview(payload)[_LENGTH.size + n :]
    expected = height * width * 3
    if pixels.nbytes != expected:
        raise ProtocolError(
            f"a {width}x{height} RGB frame needs {expected} bytes, found {pixels.nbytes}"
        )
    return meta, np.frombuffer(pixels, dtype=np.uint8).reshape(height, width, 3)
