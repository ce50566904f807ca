"""The binary WebSocket message that carries one picture to a page.

Layout (all little-endian)::

    bytes 0..3     uint32 n: length of the JSON header
    bytes 4..4+n   UTF-8 JSON header: {"tr", "seq", "width", "height", ...}
    the rest       the picture, uint8 RGB, row-major, height * width * 3 bytes

Raw RGB, not PNG: the server does no encoding (a frame goes out as soon as
it arrives) and the page copies it into a canvas in about a millisecond.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from rt_recon.errors import ProtocolError

_LENGTH = struct.Struct("<I")


def encode_frame(header: Mapping[str, Any], image: np.ndarray) -> bytes:
    """One binary message from a ``(H, W, 3)`` uint8 RGB picture and a header."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ProtocolError(
            f"a frame picture must be (H, W, 3) uint8 RGB, found {image.shape} {image.dtype}"
        )
    height, width = int(image.shape[0]), int(image.shape[1])
    meta = json.dumps(
        {**header, "width": width, "height": height}, separators=(",", ":"), allow_nan=False
    ).encode()
    return b"".join((_LENGTH.pack(len(meta)), meta, np.ascontiguousarray(image).tobytes()))


def decode_frame(payload: bytes) -> tuple[dict[str, Any], np.ndarray]:
    """The header and ``(H, W, 3)`` picture of a message made by :func:`encode_frame`."""
    if len(payload) < _LENGTH.size:
        raise ProtocolError(f"a frame message needs at least 4 bytes, found {len(payload)}")
    (n,) = _LENGTH.unpack_from(payload)
    try:
        header = json.loads(payload[_LENGTH.size : _LENGTH.size + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"frame header is not UTF-8 JSON: {exc}") from None
    pixels = memoryview(payload)[_LENGTH.size + n :]
    expected = int(header["height"]) * int(header["width"]) * 3
    if pixels.nbytes != expected:
        raise ProtocolError(
            f"a {header['width']}x{header['height']} RGB frame needs {expected} bytes, "
            f"found {pixels.nbytes}"
        )
    image = np.frombuffer(pixels, dtype=np.uint8).reshape(header["height"], header["width"], 3)
    return header, image
