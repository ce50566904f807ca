"""The console's cards of the session's LSL inputs: the volume stream (the scanner bridge or a
replay) and the marker stream.

Pure: the feeds (:class:`~rt_recon.display.feeds.VolumeSourceFeed`,
:class:`~rt_recon.display.feeds.MarkerFeed`) report what they find with the time they found it
(``now``, a monotonic clock); :class:`VolumeSource` and :class:`MarkerSource` keep it and
make the page's cards (:class:`~rt_recon.display.messages.VolumeSourceView`,
:class:`~rt_recon.display.messages.MarkerSourceView`).
"""

from __future__ import annotations

from dataclasses import dataclass

from rt_recon.display.messages import MarkerSourceView, VolumeSourceView
from rt_recon.protocol import VolumeStreamMeta


@dataclass(frozen=True)
class VolumeSourceReport:
    """One look for the volume stream with ``source_id``.

    Attributes:
        present: a stream with that ``source_id`` answered.
        name, host, uid: the stream's LSL name, the host its outlet runs on, its uid.
        meta: its ``desc``, read by :func:`~rt_recon.protocol.parse_volume_stream_info`.
        error: why ``meta`` is None although the stream is there.
    """

    source_id: str
    present: bool
    name: str | None = None
    host: str | None = None
    uid: str | None = None
    meta: VolumeStreamMeta | None = None
    error: str | None = None


class VolumeSource:
    """The volume stream's card, from the last :class:`VolumeSourceReport`."""

    def __init__(self, source_id: str):
        self.source_id = source_id
        self.report: VolumeSourceReport | None = None
        self.looked: float | None = None  # monotonic time of the last look

    def on_report(self, report: VolumeSourceReport, now: float) -> None:
        self.report, self.looked = report, now

    @property
    def meta(self) -> VolumeStreamMeta | None:
        """The stream's metadata while it is there."""
        report = self.report
        return report.meta if report is not None and report.present else None

    def view(self, now: float) -> VolumeSourceView:
        report, meta = self.report, self.meta
        if report is None:
            level, text = "unknown", f"looking for the volume stream (source_id {self.source_id})"
        elif not report.present:
            level, text = "waiting", f"no volume stream (source_id {self.source_id}) found"
        elif meta is None:
            level = "waiting"
            text = (
                f"volume stream on host {report.host} found, but its description cannot be "
                f"read: {report.error}"
            )
        else:
            level, text = "ok", f"bridge on host {report.host}: {describe_stream(meta)}"
        present = report is not None and report.present
        return VolumeSourceView(
            source_id=self.source_id,
            level=level,  # type: ignore[arg-type]
            present=None if report is None else report.present,
            text=text,
            host=report.host if present and report is not None else None,
            name=report.name if present and report is not None else None,
            run=meta.run if meta is not None else None,
            series=(meta.series or None) if meta is not None else None,
            series_description=(meta.series_description or None) if meta is not None else None,
            shape=list(meta.shape) if meta is not None else None,
            tr_s=meta.tr_s if meta is not None else None,
            speed=meta.speed if meta is not None else None,
            error=report.error if present and report is not None else None,
            age_s=None if self.looked is None else round(now - self.looked, 2),
        )


def describe_stream(meta: VolumeStreamMeta) -> str:
    """``series 8 'func_run2', 74x74x36, TR 2.0 s`` (``run 01`` without a series; the replay
    speed when it is not 1)."""
    what = f"series {meta.series}" if meta.series else f"run {meta.run}"
    if meta.series_description:
        what += f" '{meta.series_description}'"
    text = f"{what}, {'x'.join(str(s) for s in meta.shape)}, TR {seconds(meta.tr_s)} s"
    if meta.speed != 1.0:
        text += f" at speed {meta.speed:g}"
    return text


def seconds(value: float) -> str:
    """Seconds for the operator: one decimal (``2.0``), two where one hides them (``1.97``)."""
    return f"{value:.1f}" if abs(value * 10 - round(value * 10)) < 1e-6 else f"{value:.2f}"


class MarkerSource:
    """The marker stream's card: whether the console's marker input has it open, and the
    markers that came."""

    def __init__(self, source_id: str):
        self.source_id = source_id
        self.present: bool | None = None
        self.markers = 0
        self.last_marker: float | None = None  # monotonic receive time

    def on_inlet(self, present: bool, now: float) -> None:
        """The marker input opened the stream (True), or looked and did not find it."""
        self.present = present

    def on_marker(self, now: float | None) -> None:
        """A marker arrived (``now``: when, or None where the caller does not know)."""
        self.markers += 1
        if now is not None:
            self.last_marker = now

    def view(self, now: float) -> MarkerSourceView:
        age = None if self.last_marker is None else round(now - self.last_marker, 2)
        if self.present is None:
            level, text = "unknown", f"looking for the marker stream (source_id {self.source_id})"
        elif not self.present:
            level, text = "waiting", f"no marker stream (source_id {self.source_id}) found"
        else:
            level = "ok"
            text = f"marker stream open: {self.markers} marker{'s' if self.markers != 1 else ''}"
            if age is not None:
                text += f", last {age:.1f} s ago"
        return MarkerSourceView(
            source_id=self.source_id,
            level=level,  # type: ignore[arg-type]
            present=self.present,
            text=text,
            markers=self.markers,
            last_age_s=age,
        )
