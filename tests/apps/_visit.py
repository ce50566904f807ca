"""A visit as the operator runs it (docs/operators.md, "Rehearse a visit on one machine"),
for tests: the session config, the per-run stimulus tables, and one presented run (the
presenter with its participant page in headless Chromium, and the simulated participant).

Every command is the operator's ``rt-recon ...``, started as a child of the test's
``node_processes`` (so each is stopped at the test's end, even when it fails); the test
waits on what each command says (``participant page ready``, its exit), never on a sleep.
"""

from __future__ import annotations

import contextlib
import csv
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rt_recon.config import SessionConfig, SimulationSection
from tests.conftest import NodeProcesses, free_port, unique


@dataclass(frozen=True)
class Design:
    """How the presenter plays a run (``rt-recon present`` options), in seconds."""

    duration_s: float
    isi_s: float
    lead_in_s: float
    lead_out_s: float

    def args(self) -> list[str]:
        return [
            "--duration", str(self.duration_s), "--isi", str(self.isi_s),
            "--lead-in", str(self.lead_in_s), "--lead-out", str(self.lead_out_s),
        ]  # fmt: skip


def visit_config(
    tmp_path: Path, simulation: SimulationSection, fit: dict[str, Any]
) -> SessionConfig:
    """The visit's session config: the participant's ``simulation``, the ``fit`` section, and
    stream names and ports of its own; ``run.nodes: [recorder]`` (the training runs) and
    ``paths.output_dir`` ``tmp_path/training``. The embedded render model on the CPU."""
    return SessionConfig.model_validate(
        {
            "paths": {
                "output_dir": str(tmp_path / "training"),
                "cache_dir": str(tmp_path / "cache"),
            },
            "simulation": simulation.model_dump(mode="json"),
            "stream": {
                "name": unique("vol"),
                "source_id": unique("vol_src"),
                "markers_name": unique("mrk"),
                "markers_source_id": unique("mrk_src"),
                # the nodes wait for the first volume while the presenter and the page start
                "resolve_timeout_s": 120,
            },
            "decoder": {"latents_endpoint": f"tcp://127.0.0.1:{free_port()}"},
            "renderer": {"frames_endpoint": f"tcp://127.0.0.1:{free_port()}", "write_png": False},
            "recorder": {
                "status_endpoint": f"tcp://127.0.0.1:{free_port()}",
                "control_endpoint": f"tcp://127.0.0.1:{free_port()}",
            },
            "console": {"port": free_port()},
            "run": {"nodes": ["recorder"]},
            "fit": fit,
        }
    ).resolved()


def feedback_config(config: SessionConfig, bundle: Path, output_dir: Path) -> SessionConfig:
    """``config`` for a feedback run: the bundle decoded and rendered, a new output folder."""
    return config.with_overrides(
        {
            "decoder.bundle": str(bundle),
            "run.nodes": ["recorder", "renderer", "decoder"],
            "paths.output_dir": str(output_dir),
        }
    ).resolved()


def stimulus_rows(stimuli: Path) -> tuple[list[str], list[list[str]]]:
    """The header and the picture rows (the blank screen's row left out) of
    ``stimuli/stimuli.tsv``, in order: ``rt-recon simulate session`` writes the training
    pictures first, then the held-out ones."""
    with (stimuli / "stimuli.tsv").open(newline="") as fh:
        header, *rows = list(csv.reader(fh, delimiter="\t"))
    return header, [row for row in rows if int(row[0]) != -1]


def write_table(stimuli: Path, name: str, rows: list[list[str]]) -> Path:
    """A run's own stimulus table ``stimuli/<name>.tsv`` (as the docs' ``awk`` writes it)."""
    header, _ = stimulus_rows(stimuli)
    path = stimuli / f"{name}.tsv"
    with path.open("w", newline="") as fh:
        csv.writer(fh, delimiter="\t", lineterminator="\n").writerows([header, *rows])
    return path


def present_run(
    processes: NodeProcesses,
    context: Any,
    config_path: Path,
    stimuli: Path,
    table: Path,
    *,
    run: str,
    series: int,
    design: Design,
    export: Path,
    seed: int,
    n_pictures: int,
    timeout_s: float,
) -> str:
    """One run: ``rt-recon present STIMULI --table TABLE --start-on volume`` with its
    participant page opened in ``context`` (a Playwright browser context); once the presenter
    logs ``participant page ready``, ``rt-recon simulate participant --series SERIES``, which
    writes one volume per TR into ``export`` until the presenter's ``run_end``. Both must exit
    with code 0, every trial drawn and seen by the participant (all ``n_pictures`` pictures);
    returns the presenter's line on the run (onsets, how late after their plan)."""
    presenter = processes.rt_recon(
        f"present-{run}", "present", stimuli, "--table", table, "--config", config_path,
        "--run", run, "--start-on", "volume", "--seed", str(seed), *design.args(),
    )  # fmt: skip
    url = presenter.wait_for_line(r"participant display on \S+/participant", 60).split()[-1]
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(url)
        presenter.wait_for_line("participant page ready", 60)
        participant = processes.rt_recon(
            f"participant-{series}", "simulate", "participant", "--export", export,
            "--config", config_path, "--series", str(series), "--seed", str(seed),
        )  # fmt: skip
        assert participant.wait(timeout_s) == 0, participant.tail()
        assert presenter.wait(30) == 0, presenter.tail()
    finally:
        page.close()
    assert errors == [], errors
    # every trial drawn and sent; the participant saw every picture, and stopped at run_end
    assert "ended without onsets" not in presenter.log_text(), presenter.tail()
    scanned = participant.wait_for_line(r"^series \d+: wrote", 1)
    assert f"({n_pictures} pictures shown, stopped by run_end)" in scanned, scanned
    return presenter.wait_for_line(rf"^run {run}: \d+ onsets", 1)


def read_metrics(report_dir: Path) -> dict[str, Any]:
    """What ``rt-recon evaluate`` wrote beside its report (``metrics.json``)."""
    return json.loads((report_dir / "metrics.json").read_text())


@contextlib.contextmanager
def stopwatch(record: Callable[[str, object], None], step: str) -> Iterator[None]:
    """Record the seconds ``step`` took as test property ``<step>_s`` (``record_property``)."""
    start = time.monotonic()
    yield
    record(f"{step}_s", round(time.monotonic() - start, 1))
