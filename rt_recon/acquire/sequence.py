"""Put one series' volumes in acquisition order; report missing, duplicate, out-of-order.

Pure bookkeeping (no I/O, time passed in), so it is tested without files or
sockets. The rule, per series:

* the volume numbered ``next`` goes out at once, with any held volumes that
  follow it without a gap;
* a volume beyond a gap is held up to ``reorder_wait`` seconds for the
  missing ones (files can land out of order on a busy share); when the wait
  runs out the gap is reported **missing** and the held volumes go out;
* a volume that fills a gap in time went out in order: reported
  **out_of_order** (an information, nothing lost);
* a volume whose slot was already given up is **late**: not streamed (the
  stream's timestamps must increase), reported with its file, which stays
  on disk untouched;
* a volume number already streamed or held is a **duplicate**: not streamed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from rt_recon.acquire.volume import Volume

log = logging.getLogger(__name__)

IssueKind = Literal["missing", "duplicate", "out_of_order", "late"]


@dataclass(frozen=True)
class SequenceIssue:
    """Something wrong (or unusual) with the order of a series' volumes."""

    kind: IssueKind
    index: int
    series: str
    file: str | None = None

    def __str__(self) -> str:
        where = f" ({self.file})" if self.file else ""
        text = {
            "missing": "never arrived; skipped",
            "duplicate": "arrived again; the copy was not streamed",
            "out_of_order": "arrived after a later volume; streamed in order",
            "late": "arrived after its slot was given up; not streamed (file kept)",
        }[self.kind]
        return f"series {self.series}: volume {self.index}{where} {text}"


class Sequencer:
    """Orders the volumes of one series (see the module doc for the rule).

    Args:
        next_index: the acquisition number expected first: 1 for a series
            seen from its start; None when joining a series already under way
            (the bridge started mid-run): the lowest number that arrives
            within ``reorder_wait`` starts the sequence, and nothing before it
            counts as missing.
        reorder_wait: seconds a volume after a gap is held for the gap to fill.
    """

    def __init__(self, next_index: int | None = 1, reorder_wait: float = 0.3):
        self.next_index = next_index
        self.reorder_wait = reorder_wait
        self.issues: list[SequenceIssue] = []
        self._held: dict[int, tuple[Volume, float]] = {}
        self._streamed: set[int] = set()
        self._highest_seen = (next_index or 1) - 1
        self._label = "?"

    def add(self, volume: Volume, now: float) -> list[Volume]:
        """Take one volume; return those now ready to stream, in order."""
        index = volume.index
        self._label = volume.series_label
        if index in self._streamed or index in self._held:
            self._report("duplicate", volume)
            return []
        if self.next_index is None and index == 1:
            self.next_index = 1  # joined at the very start after all
        if self.next_index is not None and index < self.next_index:
            self._report("late", volume)
            return []
        if self._highest_seen and index < self._highest_seen:
            self._report("out_of_order", volume)
        self._highest_seen = max(self._highest_seen, index)
        self._held[index] = (volume, now)
        return self._release()

    def due(self, now: float) -> list[Volume]:
        """Give up gaps whose wait has run out; return the volumes that can now go."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return []
        first_held = min(self._held)
        if self.next_index is None:
            log.info("series %s: joined under way at volume %d", self._label, first_held)
            self.next_index = first_held
        for missing in range(self.next_index, first_held):
            self.issues.append(SequenceIssue("missing", missing, self._label))
            log.warning("%s", self.issues[-1])
        self.next_index = first_held
        return self._release()

    def deadline(self) -> float | None:
        """When the current gap will be given up (None if nothing is held)."""
        if not self._held:
            return None
        return min(t for _, t in self._held.values()) + self.reorder_wait

    def flush(self) -> list[Volume]:
        """At the end: give up every gap now and return what was held."""
        return self.due(float("inf"))

    @property
    def n_held(self) -> int:
        return len(self._held)

    def _release(self) -> list[Volume]:
        out: list[Volume] = []
        if self.next_index is None:
            return out
        while self.next_index in self._held:
            volume, _ = self._held.pop(self.next_index)
            self._streamed.add(self.next_index)
            out.append(volume)
            self.next_index += 1
        return out

    def _report(self, kind: IssueKind, volume: Volume) -> None:
        issue = SequenceIssue(kind, volume.index, volume.series_label, volume.name)
        self.issues.append(issue)
        if kind == "out_of_order":
            log.info("%s", issue)
        else:
            log.warning("%s", issue)
