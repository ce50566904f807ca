"""The LSL side of the protocol: the volume stream, the marker stream, the decoded summary.

A volume stream (type ``fMRI``) carries one volume per sample; its
``desc/rt_recon`` element describes the geometry once (docs/protocol.md 1).
Markers (type ``Markers``) carry one JSON object per sample
(:mod:`rt_recon.protocol._markers`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pylsl

from rt_recon._liblsl import quiet_liblsl
from rt_recon.errors import ProtocolError
from rt_recon.protocol._framing import PROTOCOL_NAME, PROTOCOL_VERSION

quiet_liblsl()  # before anything below touches liblsl

VOLUME_STREAM_TYPE = "fMRI"
MARKER_STREAM_TYPE = "Markers"

#: Voxel order of a flattened volume: Fortran order over (x, y, z), i.e. x
#: varies fastest, as in a NIfTI file on disk.
VOXEL_ORDER = "xyz-fortran"

#: How a volume stream is paced (see :attr:`VolumeStreamMeta.pace`).
PACES = ("realtime", "asap")

#: The value of the index channel in the sample that ends a run (docs/protocol.md 1).
END_OF_RUN = -1

#: The largest acquisition index an index channel carries (exact in int16 and float32).
MAX_INDEX = 32767


@dataclass(frozen=True, eq=False)
class VolumeStreamMeta:
    """What a volume stream says about itself in its ``desc``.

    Attributes:
        shape: volume shape ``(x, y, z)`` in voxels.
        affine: ``(4, 4)`` voxel-to-world matrix, RAS+ millimetres.
        tr_s: repetition time in seconds (of the acquisition, not of the replay); ``tr``
            in the ``desc``.
        session: session identifier.
        run: run identifier: a scanner bridge's run is one series (its number); a
            consumer that sees another ``run`` on a stream starts a new run.
        series: the scanner's series number ("" when there is no scanner series).
        series_description: the series' description (protocol name), "" if unknown.
        index_channel: the sample's last channel carries the volume's acquisition
            index within its series (0-based); :data:`END_OF_RUN` there ends the run.
            False for a producer without one: consumers then count TRs from stamps.
        mask_id: ``"full"`` when every voxel is sent, else the id of the mask
            whose voxels (in :data:`VOXEL_ORDER`) are the channels.
        n_channels: voxel values per sample (of the volume or of the mask), the index
            channel not included (see :attr:`stream_channels`).
        speed: replay speed (1.0 for a scanner); samples arrive every ``tr_s / speed`` s.
        channel_format: ``"float32"`` or ``"int16"``.
        pace: ``"realtime"`` (a scanner, or a replay by target timestamps: a gap of
            k sample intervals means k - 1 TRs never arrived) or ``"asap"`` (a replay
            as fast as its consumer takes volumes, with back-pressure: nothing is
            dropped, so every new volume is the next TR whatever the gap).
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    tr_s: float
    session: str = "unknown"
    run: str = "unknown"
    series: str = ""
    series_description: str = ""
    index_channel: bool = True
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
        if not (self.tr_s > 0 and self.speed > 0):
            raise ProtocolError(f"tr_s and speed must be positive, found {self.tr_s}, {self.speed}")
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
    def stream_channels(self) -> int:
        """Channels of one LSL sample: the voxel values, then the index channel if any."""
        return self.n_channels + int(self.index_channel)

    def same_grid(self, other: VolumeStreamMeta) -> bool:
        """The same voxels: shape, affine (to 1e-3 mm), mask and channel count."""
        return (
            self.shape == other.shape
            and self.mask_id == other.mask_id
            and self.n_channels == other.n_channels
            and bool(np.allclose(self.affine, other.affine, atol=1e-3))
        )

    def describe_grid(self) -> str:
        """``74x74x36 voxels of 3.0x3.0x3.0 mm`` (for messages naming a grid)."""
        zooms = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        return (
            "x".join(str(s) for s in self.shape)
            + " voxels of "
            + "x".join(f"{z:.2f}".rstrip("0").rstrip(".") for z in zooms)
            + " mm"
        )

    @property
    def sample_interval(self) -> float:
        """Seconds between samples on the wire (``tr_s / speed``)."""
        return self.tr_s / self.speed

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
        name, VOLUME_STREAM_TYPE, meta.stream_channels, 1.0 / meta.sample_interval, fmt, source_id
    )
    desc = info.desc().append_child(PROTOCOL_NAME)
    values = {
        "protocol_version": str(PROTOCOL_VERSION),
        "shape": ",".join(str(s) for s in meta.shape),
        "voxel_order": VOXEL_ORDER,
        "affine": ",".join(repr(float(v)) for v in meta.affine.ravel()),
        "tr": repr(float(meta.tr_s)),
        "speed": repr(float(meta.speed)),
        "pace": meta.pace,
        "mask_id": meta.mask_id,
        "session": meta.session,
        "run": meta.run,
        "series": meta.series,
        "series_description": meta.series_description,
    }
    if meta.index_channel:
        values["index_channel"] = "last"
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
        tr_s = float(value("tr"))
        speed = float(value("speed"))
    except ValueError as exc:
        raise ProtocolError(f"stream {info.name()!r}: malformed geometry in desc: {exc}") from None
    fmt = {pylsl.cf_float32: "float32", pylsl.cf_int16: "int16"}.get(info.channel_format())
    if fmt is None:
        raise ProtocolError(
            f"stream {info.name()!r}: channel format {info.channel_format()} is not float32/int16"
        )
    index_channel = node.child_value("index_channel")
    if index_channel not in ("", "last"):
        raise ProtocolError(
            f"stream {info.name()!r}: desc/{PROTOCOL_NAME}/index_channel is {index_channel!r}; "
            "expected 'last' or absent"
        )
    has_index = index_channel == "last"
    return VolumeStreamMeta(
        shape=shape,  # type: ignore[arg-type]
        affine=affine,
        tr_s=tr_s,
        session=value("session"),
        run=value("run"),
        series=node.child_value("series"),  # optional: "" when absent
        series_description=node.child_value("series_description"),
        index_channel=has_index,
        mask_id=value("mask_id"),
        n_channels=info.channel_count() - int(has_index),
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
    "confidence",
    "global_pct",
    "dvars_z",
    "outlier",
)
DECODED_STREAM_TYPE = "rt_recon_decoded"


def make_decoded_stream_info(name: str, source_id: str, sample_interval: float) -> pylsl.StreamInfo:
    """The decoder's per-TR summary stream: one float64 sample of :data:`DECODED_CHANNELS`
    per TR, stamped with the volume's acquisition time. Motion channels are NaN
    when the decoder does no motion correction, ``confidence`` when the bundle has no
    confidence null, the data-quality channels while their window fills."""
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
