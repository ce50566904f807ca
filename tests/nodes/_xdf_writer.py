"""Write XDF files as LabRecorder does (the XDF 1.0 chunk format), for replay tests.

Only what the tests need: a file header, stream headers (the stream's real
LSL header XML, as ``pylsl.StreamInfo.as_xml()`` gives it), one samples
chunk per sample with its timestamp, and stream footers. pyxdf reads these
back; nothing here is used by the library.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

_FORMATS = {"float32": "<f4", "double64": "<f8", "int16": "<i2", "int32": "<i4"}


def _varlen(n: int) -> bytes:
    if n < 256:
        return struct.pack("<BB", 1, n)
    if n < 2**32:
        return struct.pack("<BI", 4, n)
    return struct.pack("<BQ", 8, n)


def _chunk(tag: int, content: bytes) -> bytes:
    body = struct.pack("<H", tag) + content
    return _varlen(len(body)) + body


class XdfWriter:
    def __init__(self, path: Path):
        self._fh = path.open("wb")
        self._fh.write(b"XDF:")
        header = b'<?xml version="1.0"?><info><version>1.0</version></info>'
        self._fh.write(_chunk(1, header))
        self._streams: dict[int, dict] = {}

    def add_stream(self, stream_id: int, header_xml: str, channel_format: str, n_channels: int):
        self._streams[stream_id] = {"format": channel_format, "n": n_channels, "stamps": []}
        self._fh.write(_chunk(2, struct.pack("<I", stream_id) + header_xml.encode()))

    def add_sample(self, stream_id: int, stamp: float, values) -> None:
        stream = self._streams[stream_id]
        body = struct.pack("<I", stream_id) + _varlen(1) + struct.pack("<Bd", 8, stamp)
        if stream["format"] == "string":
            for text in values:
                raw = str(text).encode()
                body += _varlen(len(raw)) + raw
        else:
            array = np.asarray(values, dtype=_FORMATS[stream["format"]]).reshape(stream["n"])
            body += array.tobytes()
        self._fh.write(_chunk(3, body))
        stream["stamps"].append(stamp)

    def close(self) -> None:
        for stream_id, stream in self._streams.items():
            stamps = stream["stamps"]
            footer = (
                '<?xml version="1.0"?><info>'
                f"<first_timestamp>{stamps[0] if stamps else 0}</first_timestamp>"
                f"<last_timestamp>{stamps[-1] if stamps else 0}</last_timestamp>"
                f"<sample_count>{len(stamps)}</sample_count></info>"
            )
            self._fh.write(_chunk(6, struct.pack("<I", stream_id) + footer.encode()))
        self._fh.close()
