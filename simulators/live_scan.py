"""``rt-recon simulate participant``: the synthetic participant in the scanner, for a rehearsal.

One run (one series), on one machine or across a network:

1. resolve the presenter's marker stream (``stream.markers_source_id``;
   ``rt-recon present`` or any presenter of docs/protocol.md 2);
2. build the session's participant (``simulation`` of the config:
   :func:`~rt_recon.simulators.session.build_brain`) and draw the run's noise
   from ``(seed, series)`` (:class:`~rt_recon.simulators.live_participant.LiveParticipant`);
3. acquire volume ``t`` at ``t0 + t * TR`` on the LSL clock; while it is being
   acquired, every picture marker (``event`` with a ``stimulus_id``) that
   arrives is shown to the participant at its stamp (the time the presenter drew
   it); at ``t0 + t * TR + export_delay`` (default: the end of its TR) write it
   into the export folder as one XA enhanced DICOM file
   (:mod:`~rt_recon.simulators.xa_dicom`), the file's acquisition times on this
   machine's wall clock;
4. stop after ``n_trs`` volumes, on the presenter's ``run_end``, or when told.

Pacing is by target times (never a sleep of one TR after each write), so
lateness does not add up. With ``rt-recon present --start-on volume`` the
presenter starts on the first volume the bridge streams, as at the scanner.
Run the bridge with ``--clock synced``: the files' times are this machine's
clock, so the volumes are stamped with the acquisition times the participant
used, to the millisecond (``anchored`` stamps them with the arrival of the
first file, one export delay later: every TR shifted by that delay).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pylsl

from rt_recon.config import SessionConfig
from rt_recon.errors import ProtocolError, StreamError
from rt_recon.protocol import RUN_END, RUN_START, Marker, is_trial_event
from rt_recon.simulators.brain import NoiseModel, SyntheticBrain
from rt_recon.simulators.live_participant import (
    LiveParticipant,
    ShownPicture,
    reference_noise_std,
)
from rt_recon.simulators.realistic_brain import RealisticBrain
from rt_recon.simulators.scanner_export import ExportReport, WrittenFile, write_export_file
from rt_recon.simulators.session import build_brain
from rt_recon.simulators.xa_dicom import (
    SeriesInfo,
    encode,
    enhanced_volume,
    export_name,
)
from rt_recon.transport.lsl import MarkerInlet, resolve_stream

log = logging.getLogger(__name__)

#: Seconds between looks at the stop event while waiting for a marker.
_POLL_S = 0.05


@dataclass(frozen=True)
class LiveScanOptions:
    """One simulated run.

    Attributes:
        series: the series number (a new one per run, as at the scanner); also which
            run's noise is drawn.
        n_trs: volumes at most (the run stops earlier on ``run_end``).
        tr_s: repetition time in seconds (None: ``simulation.tr_s``).
        seed: the participant's noise seed (None: ``simulation.seed``); the brain
            itself (pRFs, tuning) is always ``simulation.seed``'s.
        day: the realistic participant's scanning session (1: the training day).
        export_delay_s: seconds from a volume's acquisition start to its file being
            complete (None: one TR, the end of its acquisition).
        start_delay_s: seconds from the start to volume 0's acquisition.
        atomic: write each file under a hidden name and rename it (else in place).
        markers: listen to the presenter's markers (False: the participant sees only the
            blank screen: a resting run).
        stop_on_run_end: stop at the presenter's ``run_end``.
    """

    series: int = 1
    n_trs: int = 300
    tr_s: float | None = None
    seed: int | None = None
    day: int = 1
    export_delay_s: float | None = None
    start_delay_s: float = 1.0
    atomic: bool = False
    markers: bool = True
    stop_on_run_end: bool = True


@dataclass
class LiveScanReport:
    """What the run did; times on the LSL clock (seconds)."""

    t0: float
    tr_s: float
    series: int
    export: ExportReport = field(default_factory=ExportReport)
    shown: list[ShownPicture] = field(default_factory=list)
    late_markers: int = 0
    bad_markers: int = 0
    run_start: float | None = None
    stopped_by: str = "n_trs"

    @property
    def n_volumes(self) -> int:
        return len(self.export.written)


class _Run:
    """The markers' side of one run: turns each marker into what the participant sees."""

    def __init__(self, participant: LiveParticipant, report: LiveScanReport):
        self.participant = participant
        self.report = report
        self.written_through = -1  # the last volume written
        self.ended = False

    def on_marker(self, marker: Marker, stamp: float) -> None:
        if marker.type == RUN_START:
            self.report.run_start = stamp
            log.info("presenter: run %s started at %.4f (LSL)", marker.run, stamp)
        elif marker.type == RUN_END:
            log.info("presenter: run %s ended at %.4f (LSL)", marker.run, stamp)
            self.ended = True
        elif is_trial_event(marker):
            assert marker.stimulus_id is not None
            onset = stamp - self.report.t0
            duration = marker.duration if marker.duration is not None else self.report.tr_s
            imagined = marker.trial_type == "imagery"  # a cued picture, not on screen
            picture = self.participant.show(marker.stimulus_id, onset, duration, imagined=imagined)
            self.report.shown.append(picture)
            if onset < self.written_through * self.report.tr_s:
                self.report.late_markers += 1
                log.warning(
                    "marker of stimulus %d (onset %.3f s) arrived after volume %d was written: "
                    "only later volumes see it",
                    marker.stimulus_id,
                    onset,
                    self.written_through,
                )
            log.debug(
                "shown stimulus %d at %.3f s for %.3f s", picture.stimulus_id, onset, duration
            )


def _pull_until(inlet: MarkerInlet | None, run: _Run, due: float, stop: threading.Event) -> None:
    """Take markers until LSL time ``due`` (or ``stop``), then every marker already waiting:
    a run behind its schedule (a busy machine: ``due`` already past) still shows each
    picture whose marker has arrived before it writes the next volume."""
    while (remaining := due - pylsl.local_clock()) > 0 and not stop.is_set():
        if inlet is None:
            stop.wait(min(remaining, _POLL_S))
            continue
        _take_marker(inlet, run, min(remaining, _POLL_S))
    while inlet is not None and not stop.is_set() and _take_marker(inlet, run, 0.0):
        pass


def _take_marker(inlet: MarkerInlet, run: _Run, timeout: float) -> bool:
    """Take the next marker within ``timeout`` s; whether one was there."""
    try:
        got = inlet.pull(timeout=timeout)
    except ProtocolError as exc:
        run.report.bad_markers += 1
        log.warning("dropped a malformed marker: %s", exc)
        return True
    if got is not None:
        run.on_marker(*got)
    return got is not None


def participant_for(
    config: SessionConfig, options: LiveScanOptions, brain: SyntheticBrain | None = None
) -> LiveParticipant:
    """The run's participant, as :func:`simulate_participant` builds it (its noise drawn);
    ``brain``: the session's brain when already built (:func:`build_brain` of
    ``config.simulation``)."""
    sim = config.simulation
    tr_s = options.tr_s or sim.tr_s
    brain = brain or build_brain(sim)
    noise = NoiseModel.from_simulation(sim.snr, sim.motion)
    day = brain.scan_day(options.day) if isinstance(brain, RealisticBrain) else None
    return LiveParticipant(
        brain,
        noise,
        reference_noise_std(brain, sim),
        tr_s=tr_s,
        n_trs=options.n_trs,
        seed=sim.seed if options.seed is None else options.seed,
        run=options.series,
        day=day,
    )


def simulate_participant(
    config: SessionConfig,
    export_dir: str | Path,
    options: LiveScanOptions | None = None,
    stop: threading.Event | None = None,
    *,
    participant: LiveParticipant | None = None,
    start_at: float | None = None,
) -> LiveScanReport:
    """One run of the synthetic participant: markers in, DICOM files into ``export_dir``.

    Args:
        config: the session (``simulation``: the participant; ``stream``: the markers).
        export_dir: the scanner's export folder (created if needed; the bridge watches it).
        options: see :class:`LiveScanOptions`.
        stop: set to stop after the volume being acquired.
        participant: the run's participant (default: :func:`participant_for`).
        start_at: LSL time of volume 0's acquisition start (default: now plus
            ``options.start_delay_s``, once the marker stream is resolved).

    Raises:
        StreamError: ``options.markers`` and no marker stream within
            ``stream.resolve_timeout_s``.
    """
    options = options or LiveScanOptions()
    stop = stop or threading.Event()
    export_dir = Path(export_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    inlet = None
    if options.markers:
        source_id = config.stream.markers_source_id
        log.info("waiting for the presenter's marker stream %r", source_id)
        try:
            info = resolve_stream("source_id", source_id, config.stream.resolve_timeout_s)
        except StreamError as exc:
            raise StreamError(
                f"{exc} (the presenter's markers: start `rt-recon present` first, with the "
                "same config)"
            ) from None
        inlet = MarkerInlet(info)
    participant = participant or participant_for(config, options)
    tr_s = participant.tr_s
    delay = tr_s if options.export_delay_s is None else options.export_delay_s
    series = SeriesInfo.new(options.series, tr_s)
    t0 = pylsl.local_clock() + options.start_delay_s if start_at is None else start_at
    wall_minus_lsl = time.time() - pylsl.local_clock()
    report = LiveScanReport(t0=t0, tr_s=tr_s, series=options.series)
    run = _Run(participant, report)
    affine = participant.brain.affine
    log.info(
        "series %d: up to %d volumes of %s every %.3f s into %s",
        options.series,
        participant.n_trs,
        participant.brain.grid,
        tr_s,
        export_dir,
    )
    try:
        for t in range(participant.n_trs):
            acquired = t0 + t * tr_s
            _pull_until(inlet, run, acquired + delay, stop)
            if stop.is_set():
                report.stopped_by = "stop"
                break
            volume = participant.volume(t)
            when = dt.datetime.fromtimestamp(acquired + wall_minus_lsl)
            ds = enhanced_volume(volume, affine, series, t + 1, when)
            name = export_name(options.series, t + 1)
            write_export_file(encode(ds), export_dir / name, atomic=options.atomic)
            report.export.written.append(
                WrittenFile(name, t + 1, acquired + delay, pylsl.local_clock())
            )
            run.written_through = t
            if run.ended and options.stop_on_run_end:
                report.stopped_by = "run_end"
                break
    finally:
        if inlet is not None:
            inlet.close()
    late = report.export.lateness()
    log.info(
        "series %d: %d volumes written (stopped by %s), %d pictures shown, %d late markers; "
        "write lateness max %.1f ms",
        options.series,
        report.n_volumes,
        report.stopped_by,
        len(report.shown),
        report.late_markers,
        float(late.max() * 1000) if len(late) else 0.0,
    )
    return report
