"""``rt-recon present STIMULI``: one training run of a stimulus set on the participant display.

A vision run shows the pictures; a cued imagery run (``DesignSpec.task`` ``imagery``) shows
each picture's word cue, then a fixation cross while the participant imagines it, and never
the picture (:mod:`rt_recon.display.design`).

Reads the stimulus set, builds the run's design from its seed and writes it as a BIDS
``events.tsv`` before anything is shown; then serves the console (operator page and
participant display, :func:`rt_recon.display.server.run_console`) with the run loaded in
the participant page, which plays it once started (the trigger key or the scanner's first
volume). Each onset goes out on the session's marker stream (``stream.markers_name`` /
``stream.markers_source_id``) stamped with its draw time. Returns once the run has ended
(or on SIGINT/SIGTERM), with what happened.

Run it instead of ``rt-recon console`` (one console per session: leave ``console`` out of
``run.nodes``), and with no other program sending on the same marker stream.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from rt_recon.config import SessionConfig
from rt_recon.display.design import DesignSpec, build_design, read_stimulus_set, write_events_tsv
from rt_recon.display.presenter import Presenter, RunLog, StartOn
from rt_recon.display.server import run_console
from rt_recon.transport.lsl import MarkerOutlet

log = logging.getLogger(__name__)

#: Seconds the marker outlet stays up after ``run_end``, so every inlet has pulled it.
LINGER_S = 1.0


@dataclass(frozen=True)
class PresentOptions:
    """How the run starts and which keys count (``KeyboardEvent.key`` values)."""

    run: str = "01"
    start_on: StartOn = "key"
    trigger_key: str = "5"
    response_keys: tuple[str, ...] = ("1", "2")


def events_path(config: SessionConfig, run: str) -> Path:
    """Where the run's design is written by default: ``paths.output_dir/run-RUN_events.tsv``."""
    return config.paths.output_dir / f"run-{run}_events.tsv"


def present_run(
    config: SessionConfig,
    stimuli_dir: Path,
    spec: DesignSpec,
    options: PresentOptions,
    stop: threading.Event,
    *,
    table: Path | None = None,
    events: Path | None = None,
) -> RunLog:
    """Write the design, serve the console with the run, return once the run has ended."""
    stimuli = read_stimulus_set(stimuli_dir, table)
    design = build_design(stimuli, spec)
    written = write_events_tsv(design, events or events_path(config, options.run))
    log.info(
        "run %s (%s): %d rows written to %s", options.run, spec.task, len(design.trials), written
    )
    outlet = MarkerOutlet(config.stream.markers_name, config.stream.markers_source_id)

    def ended() -> None:
        threading.Timer(LINGER_S, stop.set).start()

    presenter = Presenter(
        design,
        stimuli,
        outlet,
        run=options.run,
        start_on=options.start_on,
        trigger_key=options.trigger_key,
        response_keys=options.response_keys,
        volume_source_id=config.stream.source_id,
        on_end=ended,
    )
    try:
        run_console(config, stop, presenter=presenter)
    finally:
        outlet.close()
    return presenter.log
