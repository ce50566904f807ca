"""LSL volume and marker streams with preallocated numpy buffers.

A volume goes out with ``push_chunk`` of a C-contiguous ``(1, n_channels)``
array and comes in with ``pull_chunk(dest_obj=...)`` into a preallocated
buffer: the list-based ``push_sample``/``pull_sample`` path converts every
element and is ~80x slower for 160k voxels (see benchmarks/bench_transport.py).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
import pylsl
from pylsl.util import LostError as LslLostError
from pylsl.util import TimeoutError as LslTimeoutError

from rt_recon._liblsl import quiet_liblsl
from rt_recon.errors import StreamError
from rt_recon.protocol import (
    DECODED_CHANNELS,
    END_OF_RUN,
    MAX_INDEX,
    Marker,
    VolumeStreamMeta,
    decode_marker,
    encode_marker,
    make_decoded_stream_info,
    make_marker_stream_info,
    make_volume_stream_info,
    parse_volume_stream_info,
)

log = logging.getLogger(__name__)


class VolumeSource(Protocol):
    """What a node reads volumes from: a :class:`VolumeInlet`, or a test's list of volumes."""

    meta: VolumeStreamMeta
    values: np.ndarray  # (n_channels,) the volume the last pull() returned the stamp of
    index: int | None  # its acquisition index (None: the stream has no index channel)
    ended: str | None  # why the stream ended ("end of run" / "lost"); None while it flows

    def pull(self, timeout: float) -> float | None:
        """The next volume's LSL timestamp (its data in :attr:`values`), or None."""
        ...

    def close(self) -> None: ...


class MarkerSource(Protocol):
    """What a node reads marker events from: a :class:`MarkerInlet`, or a test's list."""

    def pull(self, timeout: float) -> tuple[Marker, float] | None: ...

    def pull_text(self, timeout: float) -> tuple[str, float] | None: ...

    def close(self) -> None: ...


class VolumeOutlet:
    """Pushes flattened volumes (``(n_channels,)``, :data:`~rt_recon.protocol.VOXEL_ORDER`),
    each with its acquisition index in the index channel, and the sample that ends a run."""

    def __init__(self, meta: VolumeStreamMeta, name: str, source_id: str, buffer_trs: int = 4):
        quiet_liblsl()
        self.meta = meta
        self._dtype = np.dtype(meta.channel_format)
        self._chunk = np.zeros((1, meta.stream_channels), dtype=self._dtype)
        self._next_index = 0
        max_buffered = max(1, math.ceil(buffer_trs * meta.sample_interval))
        info = make_volume_stream_info(meta, name, source_id)
        self._outlet: pylsl.StreamOutlet | None = pylsl.StreamOutlet(
            info, chunk_size=1, max_buffered=max_buffered
        )

    @property
    def uid(self) -> str:
        """The stream's LSL uid (unique per outlet: a consumer's heartbeat names the outlet
        its inlet is on with it)."""
        return str(self._require().get_info().uid())

    def wait_for_consumers(self, timeout: float) -> bool:
        """Block until an inlet is connected (True) or ``timeout`` seconds pass (False)."""
        return bool(self._require().wait_for_consumers(timeout))

    def push(self, values: np.ndarray, timestamp: float, index: int | None = None) -> None:
        """Push one volume, ``(n_channels,)``, stamped with its acquisition time (LSL clock).

        ``index``: its acquisition index within the series (0-based); None: the one after
        the last pushed (from 0).
        """
        n = self.meta.n_channels
        if values.shape != (n,):
            raise StreamError(
                f"push(): expected a flattened volume of shape ({n},), found {values.shape}"
            )
        index = self._next_index if index is None else int(index)
        if self.meta.index_channel and not 0 <= index <= MAX_INDEX:
            raise StreamError(
                f"push(): an acquisition index is 0..{MAX_INDEX} (the index channel), found {index}"
            )
        self._chunk[0, :n] = values  # one copy, casting to the stream's format
        if self.meta.index_channel:
            self._chunk[0, n] = index
        self._require().push_chunk(self._chunk, timestamp)
        self._next_index = index + 1

    def end_run(self, timestamp: float | None = None) -> None:
        """Push the sample that ends the run (index channel :data:`END_OF_RUN`, zeros)."""
        if not self.meta.index_channel:
            return
        self._chunk[0] = 0
        self._chunk[0, -1] = END_OF_RUN
        self._require().push_chunk(
            self._chunk, pylsl.local_clock() if timestamp is None else timestamp
        )

    def _require(self) -> pylsl.StreamOutlet:
        if self._outlet is None:
            raise StreamError("the volume outlet is closed")
        return self._outlet

    def close(self) -> None:
        self._outlet = None  # liblsl destroys the outlet when the handle goes

    def __enter__(self) -> VolumeOutlet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resolve_stream(
    prop: str, value: str, timeout: float, exclude_uid: str | None = None
) -> pylsl.StreamInfo:
    """Resolve one stream whose ``prop`` (``name``, ``source_id``, ``type``) equals ``value``
    (and whose uid is not ``exclude_uid``: a stream that ended but whose outlet lingers)."""
    quiet_liblsl()
    deadline = time.monotonic() + timeout
    while True:
        found = pylsl.resolve_byprop(
            prop, value, minimum=1, timeout=max(deadline - time.monotonic(), 0.0)
        )
        found = [info for info in found if exclude_uid is None or info.uid() != exclude_uid]
        if found or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    if not found:
        raise StreamError(
            f"no LSL stream with {prop}={value!r} found within {timeout:g} s; "
            "is the scanner bridge or replay running on this network?"
        )
    if len(found) > 1:
        log.warning("%d streams have %s=%r; using the first", len(found), prop, value)
    return found[0]


class VolumeInlet:
    """Pulls volumes into one preallocated ``(1, stream channels)`` buffer.

    ``pull()`` returns the timestamp (LSL clock of this machine, corrected
    with LSL's clock offset when the stream comes from another host) and
    leaves the values in :attr:`values` and the acquisition index in
    :attr:`index` until the next pull.

    The inlet does not reconnect by itself: when the producer sends the end of
    its run, or its outlet goes away, ``pull()`` returns None from then on and
    :attr:`ended` says which. The node then resolves the stream again and reads
    its ``desc``: the same ``run`` continues (a restarted bridge), another one
    begins a new run.
    """

    def __init__(self, info: pylsl.StreamInfo, buffer_trs: int = 4, open_timeout: float = 10.0):
        quiet_liblsl()
        # A provisional meta check on the resolved (short) info, then the full info.
        inlet = pylsl.StreamInlet(
            info,
            max_buflen=max(1, math.ceil(buffer_trs / max(info.nominal_srate(), 1e-9))),
            # No silent reconnection: a new outlet may be another run (see the class doc).
            recover=False,
            processing_flags=pylsl.proc_clocksync,
        )
        try:
            full_info = inlet.info(timeout=open_timeout)
        except LslTimeoutError:
            raise StreamError(
                f"stream {info.name()!r} was found but its header did not arrive "
                f"within {open_timeout:g} s"
            ) from None
        self.meta = parse_volume_stream_info(full_info)
        self.uid = full_info.uid()
        self.source_id = full_info.source_id()
        self.buffer_trs = buffer_trs
        self._inlet: pylsl.StreamInlet | None = inlet
        self._buffer = np.zeros((1, self.meta.stream_channels), dtype=self.meta.channel_format)
        self.index: int | None = None
        self.ended: str | None = None
        # The first clock-sync estimate takes a few round trips: get it before
        # opening the data feed, so a source that starts pushing as soon as we
        # connect does not find us busy.
        try:
            inlet.time_correction(timeout=open_timeout)
        except LslTimeoutError:
            log.warning("no clock offset from %r yet; timestamps may be late", info.name())
        inlet.open_stream(timeout=open_timeout)

    @classmethod
    def resolve(
        cls,
        source_id: str,
        timeout: float,
        buffer_trs: int = 4,
        on_wait: Callable[[], None] | None = None,
        exclude_uid: str | None = None,
    ) -> VolumeInlet:
        """Find the stream with ``source_id`` (not the one with uid ``exclude_uid``) and open
        it; ``on_wait`` runs about once a second."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                info = resolve_stream(
                    "source_id", source_id, min(1.0, max(remaining, 0.05)), exclude_uid
                )
            except StreamError:
                if remaining <= 1.0:
                    raise StreamError(
                        f"no LSL stream with source_id={source_id!r} found within {timeout:g} s; "
                        "is the scanner bridge or replay running on this network?"
                    ) from None
                if on_wait is not None:
                    on_wait()
                continue
            return cls(info, buffer_trs=buffer_trs)

    def next_stream(
        self, timeout: float, on_wait: Callable[[], None] | None = None
    ) -> VolumeInlet | None:
        """Once this stream has ended: the stream now under its ``source_id`` (another
        outlet: this one's may linger after its end), opened alike; None if none appears
        within ``timeout`` seconds."""
        try:
            return VolumeInlet.resolve(
                self.source_id, timeout, self.buffer_trs, on_wait=on_wait, exclude_uid=self.uid
            )
        except StreamError:
            return None

    @property
    def values(self) -> np.ndarray:
        """The last pulled volume, ``(n_channels,)`` (overwritten by the next pull)."""
        return self._buffer[0, : self.meta.n_channels]

    def pull(self, timeout: float) -> float | None:
        """Pull the next volume into :attr:`values`; its timestamp, or None on timeout and
        once the stream has :attr:`ended`."""
        if self._inlet is None:
            raise StreamError("pull() requires an open inlet; this one is closed")
        if self.ended is not None:
            return None
        try:
            _, stamps = self._inlet.pull_chunk(
                timeout=timeout, max_samples=1, dest_obj=self._buffer
            )
        except (LslTimeoutError, LslLostError):  # the outlet is gone
            self.ended = "lost"
            return None
        if not stamps:
            return None
        if self.meta.index_channel:
            index = int(self._buffer[0, -1])
            if index == END_OF_RUN:
                self.ended = "end of run"
                return None
            self.index = index
        return float(stamps[0])

    def close(self) -> None:
        if self._inlet is not None:
            self._inlet.close_stream()
            self._inlet = None

    def __enter__(self) -> VolumeInlet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DecodedOutlet:
    """The decoder's per-TR summary (:data:`~rt_recon.protocol.DECODED_CHANNELS`) on LSL."""

    def __init__(self, name: str, source_id: str, sample_interval: float):
        quiet_liblsl()
        info = make_decoded_stream_info(name, source_id, sample_interval)
        self._outlet: pylsl.StreamOutlet | None = pylsl.StreamOutlet(info)
        self._sample = np.zeros((1, len(DECODED_CHANNELS)), dtype=np.float64)

    def push(self, values: dict[str, float], timestamp: float) -> None:
        """``values`` by channel label; missing channels are sent as NaN."""
        if self._outlet is None:
            raise StreamError("the decoded-summary outlet is closed")
        self._sample[0] = [values.get(label, np.nan) for label in DECODED_CHANNELS]
        self._outlet.push_chunk(self._sample, timestamp)

    def close(self) -> None:
        self._outlet = None


class MarkerOutlet:
    """Pushes events as JSON strings on an irregular-rate ``Markers`` stream."""

    def __init__(self, name: str, source_id: str):
        quiet_liblsl()
        self._outlet = pylsl.StreamOutlet(make_marker_stream_info(name, source_id))

    def wait_for_consumers(self, timeout: float) -> bool:
        return bool(self._outlet.wait_for_consumers(timeout))

    def push(self, event: Marker | Mapping[str, Any], timestamp: float) -> None:
        """Send one event stamped ``timestamp`` (LSL clock)."""
        self._outlet.push_sample([encode_marker(event)], timestamp)

    def close(self) -> None:
        self._outlet = None  # type: ignore[assignment]


class MarkerInlet:
    """Pulls JSON events from a ``Markers`` stream: as validated :class:`Marker` objects
    (:meth:`pull`), or as the text that arrived (:meth:`pull_text`, for the recorder, which
    keeps every marker as sent, well-formed or not)."""

    def __init__(self, info: pylsl.StreamInfo, recover: bool = True):
        """``recover``: reconnect silently to a marker outlet that comes back (liblsl's
        default); False: a lost outlet ends this inlet (:attr:`lost`), for a reader that
        must say the stream is gone (the console)."""
        quiet_liblsl()
        self._inlet = pylsl.StreamInlet(
            info, recover=recover, processing_flags=pylsl.proc_clocksync
        )
        self._inlet.open_stream(timeout=10.0)
        #: True once the outlet is gone (``recover=False`` only): nothing more will arrive.
        self.lost = False

    @classmethod
    def find(cls, source_id: str, timeout: float = 2.0) -> MarkerInlet | None:
        """The marker stream with ``source_id``, or None when none is found within
        ``timeout`` seconds (a session may have no markers)."""
        try:
            return cls(resolve_stream("source_id", source_id, timeout))
        except StreamError:
            return None

    def pull_text(self, timeout: float) -> tuple[str, float] | None:
        """The next sample's text and timestamp, or None if none arrives within ``timeout`` s."""
        if self.lost:
            return None
        try:
            sample, stamp = self._inlet.pull_sample(timeout=timeout)
        except LslTimeoutError:  # clock sync failed: the outlet is gone
            return None
        except LslLostError:  # recover=False and the outlet is gone
            self.lost = True
            return None
        if sample is None:
            return None
        return sample[0], float(stamp)

    def pull(self, timeout: float) -> tuple[Marker, float] | None:
        """The next event and its timestamp, or None if none arrives within ``timeout`` s.

        Raises:
            ProtocolError: the sample is no valid marker (it is consumed).
        """
        got = self.pull_text(timeout)
        if got is None:
            return None
        return decode_marker(got[0]), got[1]

    def close(self) -> None:
        self._inlet.close_stream()
