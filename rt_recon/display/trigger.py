"""The scanner's start of a run, on the LSL clock: the first volume of the volume stream.

A presenter that opens the stream a little late (the bridge's stream appears with the
series' first volume) still gets the run's start: the volume's acquisition index says how
many TRs came before it, so the start is its stamp less ``index * TR``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from rt_recon.errors import StreamError
from rt_recon.transport.lsl import VolumeInlet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScannerStart:
    """``t``: acquisition time of volume 0 (LSL clock, s); ``index``, ``stamp``: the volume
    actually seen first and its stamp; ``tr_s``: the acquisition's TR; ``run``: the
    stream's run id."""

    t: float
    index: int | None
    stamp: float
    tr_s: float
    run: str


def wait_for_first_volume(
    source_id: str, stop: threading.Event, retry_s: float = 5.0
) -> ScannerStart | None:
    """Wait for the volume stream ``source_id`` (looking again every ``retry_s`` seconds
    until it appears) and for its first volume; None when ``stop`` is set first.

    The stream found may be the previous run's, which the bridge keeps open until the next
    series begins: when it ends before a volume came, the next run's stream is followed
    (a presenter started between two runs starts on the next one).
    """
    inlet: VolumeInlet | None = None
    ended_uid: str | None = None  # the last stream seen to end: never taken again
    try:
        while not stop.is_set():
            if inlet is None:
                try:
                    inlet = VolumeInlet.resolve(
                        source_id, retry_s, buffer_trs=2, exclude_uid=ended_uid
                    )
                except StreamError:
                    log.info("waiting for the volume stream %r (the scanner's run)", source_id)
                    continue
            stamp = inlet.pull(timeout=0.1)
            if stamp is not None:
                index, tr = inlet.index, inlet.meta.tr_s
                start = stamp - (index or 0) * tr
                log.info(
                    "scanner start: volume %s of run %s at %.4f (LSL), run start %.4f",
                    index, inlet.meta.run, stamp, start,
                )  # fmt: skip
                return ScannerStart(start, index, stamp, tr, inlet.meta.run)
            if inlet.ended is not None:
                log.info(
                    "volume stream %r of run %s ended (%s) before a volume: waiting for the "
                    "next run's",
                    source_id, inlet.meta.run, inlet.ended,
                )  # fmt: skip
                ended, inlet = inlet, None
                ended_uid = ended.uid
                inlet = ended.next_stream(retry_s)
                ended.close()
    finally:
        if inlet is not None:
            inlet.close()
    return None
