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

    Raises:
        StreamError: the stream ended before its first volume.
    """
    while not stop.is_set():
        try:
            inlet = VolumeInlet.resolve(source_id, retry_s, buffer_trs=2)
        except StreamError:
            log.info("waiting for the volume stream %r (the scanner's run)", source_id)
            continue
        try:
            while not stop.is_set():
                stamp = inlet.pull(timeout=0.1)
                if stamp is not None:
                    index = inlet.index
                    tr = inlet.meta.tr_s
                    start = stamp - (index or 0) * tr
                    log.info(
                        "scanner start: volume %s of run %s at %.4f (LSL), run start %.4f",
                        index,
                        inlet.meta.run,
                        stamp,
                        start,
                    )
                    return ScannerStart(start, index, stamp, tr, inlet.meta.run)
                if inlet.ended is not None:
                    raise StreamError(
                        f"volume stream {source_id!r} ended ({inlet.ended}) before its first volume"
                    )
        finally:
            inlet.close()
    return None
