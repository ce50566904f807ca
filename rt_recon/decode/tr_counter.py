"""TR indices of a run's volumes (docs/protocol.md 1, "TR index").

Two sources, one result (:class:`TrStep`):

* :class:`IndexedTrCounter`: the volume carries its acquisition index within its
  series (the stream's index channel): that index is the TR. What never arrived
  is the gap between indices, from 0 at the start of the run; a repeated index
  is a duplicate and a lower one out of order.
* :class:`TrCounter`: a stream without an index channel (an outside producer):
  the first volume is TR 0 and a gap of k sample intervals between timestamps is
  k TRs.

Pure (no I/O): the decoder node feeds each volume's index or timestamp and CRC-32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rt_recon.errors import StreamError


@dataclass(frozen=True)
class TrStep:
    """What :meth:`TrCounter.update` made of one volume's timestamp."""

    tr: int | None  # its TR index; None: not assigned one (``rejected`` says why)
    missed: int = 0  # TRs that never arrived between the last assigned one and this one
    rejected: Literal["duplicate", "out_of_order"] | None = None
    dt: float = 0.0  # seconds (LSL clock) since the last volume that was assigned a TR


class TrCounter:
    """TR index from timestamps: the first volume is 0; a gap of k intervals advances by k.

    A volume stamped less than ``duplicate_below`` intervals from the last
    assigned one (either side) is a duplicate if it carries the same data
    (the same CRC-32), or if no CRC is given; one stamped earlier than that,
    or earlier and with other data, is out of order. Neither is assigned a
    TR nor moves the count. A volume with other data stamped just after the
    last one is the next TR: an ``asap`` replay stamps volumes with their push
    time, which can be any time after the last one (rt_recon/nodes/replay.py).

    With ``sequential`` (a stream paced ``asap``, which drops nothing), every
    volume that is neither a duplicate nor out of order is the next TR,
    whatever the gap: gaps there are the consumer's own stalls, not lost TRs.

    Args:
        interval: seconds between volumes on the wire (the TR divided by the replay speed).
        duplicate_below: the duplicate window, in intervals (0 < value <= 0.5).
        sequential: count one TR per accepted volume instead of reading gaps.
    """

    def __init__(self, interval: float, duplicate_below: float = 0.5, sequential: bool = False):
        if interval <= 0 or not 0 < duplicate_below <= 0.5:
            raise StreamError(
                f"TrCounter needs a sample interval > 0 s and 0 < duplicate_below <= 0.5, "
                f"found {interval} s and {duplicate_below}"
            )
        self.interval = interval
        self.duplicate_below = duplicate_below
        self.sequential = sequential
        self._last: tuple[int, float, int | None] | None = None  # (TR, timestamp, CRC)

    def update(self, timestamp: float, crc: int | None = None) -> TrStep:
        """The TR of a volume stamped ``timestamp`` (seconds, LSL clock) whose data have
        CRC-32 ``crc`` (None: judge by the timestamp alone)."""
        if self._last is None:
            self._last = (0, timestamp, crc)
            return TrStep(0)
        index, last, last_crc = self._last
        dt = timestamp - last
        steps = dt / self.interval
        if abs(steps) < self.duplicate_below and (crc is None or crc == last_crc):
            return TrStep(None, rejected="duplicate", dt=dt)
        if steps < 0:
            return TrStep(None, rejected="out_of_order", dt=dt)
        step = 1 if self.sequential else max(1, round(steps))
        self._last = (index + step, timestamp, crc)
        return TrStep(index + step, missed=step - 1, dt=dt)


class IndexedTrCounter:
    """TR index from the volume's own acquisition index (0-based, within its series).

    The first volume of a run with index ``k > 0`` reports ``k`` missed TRs
    (volumes 0 .. k - 1 never reached this consumer); an index seen before is a
    duplicate, a lower one out of order (its TR was already reported missed).
    """

    def __init__(self) -> None:
        self._last: int | None = None

    @property
    def last(self) -> int | None:
        """The last index that was assigned a TR (None before the first)."""
        return self._last

    def update(self, index: int) -> TrStep:
        if index < 0:
            raise StreamError(f"an acquisition index is >= 0, found {index}")
        last = self._last
        if last is not None and index == last:
            return TrStep(None, rejected="duplicate")
        if last is not None and index < last:
            return TrStep(None, rejected="out_of_order")
        self._last = index
        return TrStep(index, missed=index - (-1 if last is None else last) - 1)
