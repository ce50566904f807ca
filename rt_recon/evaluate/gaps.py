"""Which TRs of a recorded session have no latents, and why (docs/reliability.md).

A TR is *flagged* as not decoded in two places, which say different things:

* live, on the decoder's next latents message: ``missed_before`` counts the TRs
  before it that this decoder process never got. A restarted decoder knows
  nothing of its predecessor, so its first message says ``missed_before`` =
  its first TR, although the process before it decoded most of those.
* in the recording, exactly: within a run the latents' TRs (each its volume's
  acquisition index) leave a gap, and the decoder's heartbeats, recorded as
  ``status`` entries with the process id, say whether a new decoder process
  began between the two latents around the gap.

:func:`decoding_gaps` reads the second: one :class:`DecodingGap` per stretch of
TRs without latents inside a run (and before its first latents), with its cause:

``decoder restart``
    the decoder process changed between the latents around the gap (it crashed
    and ``rt-recon run`` restarted it): the TRs of its downtime;
``not recorded``
    the same process published latents there (their ``seq`` jumps) but the
    recording lacks them (the recorder was down);
``not received``
    the volumes never reached the decoder (``missed_before`` on the next latents);
``not decodable``
    the decoder got the volumes but could not decode them (a NaN volume: skipped).

TRs after a run's last latents are not reported: the recording does not keep
the volumes' acquisition indices, so how many followed is unknown here.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rt_recon.record.segments import SessionReader

Cause = Literal["decoder restart", "not recorded", "not received", "not decodable"]


@dataclass(frozen=True)
class DecodingGap:
    """TRs ``first_tr .. last_tr`` of run ``run`` without latents, and why.

    ``pids``: the decoder processes heard around the gap (two or more for a restart,
    in the order they ran; empty when the recording holds no decoder heartbeat).
    """

    run: str
    first_tr: int
    last_tr: int
    cause: Cause
    pids: tuple[int, ...] = ()

    @property
    def n_trs(self) -> int:
        return self.last_tr - self.first_tr + 1

    @property
    def trs(self) -> str:
        """``TR 7`` or ``TRs 61-68``."""
        if self.first_tr == self.last_tr:
            return f"TR {self.first_tr}"
        return f"TRs {self.first_tr}-{self.last_tr}"

    def describe(self) -> str:
        """One line for an operator, e.g. ``decoder down: TRs 61-68 of run 7 not decoded
        (decoder restart: pid 4242 -> pid 4311)``."""
        where = f"{self.trs} of run {self.run}"
        if self.cause == "decoder restart":
            pids = "".join(f"{' -> ' if i else ': '}pid {pid}" for i, pid in enumerate(self.pids))
            return f"decoder down: {where} not decoded (decoder restart{pids})"
        if self.cause == "not recorded":
            return f"{where}: latents decoded but not recorded (the recorder was down)"
        if self.cause == "not received":
            return f"{where} not decoded: the volumes never reached the decoder"
        return f"{where} not decoded: the decoder could not decode the volumes (skipped)"


class _DecoderProcesses:
    """Which decoder process was running when: its heartbeats (``status`` entries with
    ``node`` decoder, a ``pid`` and ``t`` on the LSL clock), in time order."""

    def __init__(self, status: Iterable[dict[str, Any]]):
        beats = sorted(
            (float(s["t"]), int(s["pid"]))
            for s in status
            if s.get("node") == "decoder" and _number(s.get("t")) and _number(s.get("pid"))
        )
        self._times = [t for t, _ in beats]
        self._pids = [pid for _, pid in beats]

    def between(self, start: float | None, end: float) -> tuple[int, ...]:
        """The processes that ran from ``start`` to ``end`` (LSL clock), in order: the last
        one heard at or before ``start``, every one heard in between and the first one heard
        at or after ``end`` (each sent a message at one of those ends)."""
        if not self._times:
            return ()
        lo = 0 if start is None else max(bisect.bisect_right(self._times, start) - 1, 0)
        hi = bisect.bisect_left(self._times, end)
        pids: list[int] = []
        for pid in self._pids[lo : min(hi + 1, len(self._pids))]:
            if not pids or pids[-1] != pid:
                pids.append(pid)
        return tuple(pids)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _sent(header: dict[str, Any]) -> float | None:
    """When the decoder sent these latents (LSL clock): ``times.sent``, else ``received``."""
    times = header.get("times") or {}
    for key in ("sent", "received"):
        if _number(times.get(key)):
            return float(times[key])
    return None


def decoding_gaps(
    latents: Sequence[dict[str, Any]], status: Iterable[dict[str, Any]] = ()
) -> list[DecodingGap]:
    """The stretches of TRs without latents in a session, in recording order.

    Args:
        latents: the recorded latents headers, in arrival order
            (``SessionReader.latents_headers()``).
        status: the recorded ``status`` entries (``SessionReader.status()``): the decoder's
            heartbeats among them tell a restart from the other causes.
    """
    processes = _DecoderProcesses(status)
    gaps: list[DecodingGap] = []
    last_of_run: dict[tuple[Any, Any], dict[str, Any]] = {}
    previous: dict[str, Any] | None = None  # the latents before, of any run
    for header in latents:
        tr = header.get("tr")
        if not isinstance(tr, int):
            continue
        key = (header.get("session"), header.get("run"))
        before = last_of_run.get(key)
        expected = 0 if before is None else int(before["tr"]) + 1
        if tr > expected:
            around = before if before is not None else previous
            sent = _sent(header)
            start = None if around is None else _sent(around)
            pids = () if sent is None else processes.between(start, sent)
            cause = _cause(header, around, pids)
            gaps.append(DecodingGap(str(header.get("run")), expected, tr - 1, cause, pids))
        if before is None or tr > int(before["tr"]):
            last_of_run[key] = header
        previous = header
    return gaps


def _cause(header: dict[str, Any], around: dict[str, Any] | None, pids: tuple[int, ...]) -> Cause:
    """Why the TRs before ``header`` have no latents; ``around``: the latents before them."""
    seq, last_seq = header.get("seq"), None if around is None else around.get("seq")
    numbered = isinstance(seq, int) and isinstance(last_seq, int)
    # a process numbers its latents from 0: a count that went back is another process
    if len(pids) > 1 or (numbered and seq <= last_seq):
        return "decoder restart"
    if numbered and seq - last_seq > 1:
        return "not recorded"
    if int(header.get("missed_before") or 0) > 0:
        return "not received"
    return "not decodable"


def recorded_gaps(reader: SessionReader) -> list[DecodingGap]:
    """:func:`decoding_gaps` of a recorded session (every segment), from its latents headers
    and its status entries."""
    return decoding_gaps(reader.latents_headers(), reader.status())
