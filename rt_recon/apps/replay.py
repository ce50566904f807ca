"""``rt-recon replay RECORDING``: run a recorded session through the pipeline again.

The recording's own session config (stored in the file) supplies the
decoder bundle, the render model and the renderer settings, so the replay
reruns the session as it was; the output (frames, logs, a new recording)
goes to a new folder. The recorded volumes and trial markers are streamed
over LSL at the recorded pace times ``speed`` (or ``asap``: as fast as the
renderer is done with each TR, so every TR gets its frame), into the same
decoder, renderer and recorder processes as a live session. Decoding is
deterministic, so latents equal the original recording's wherever it had
them: :func:`compare_latents` says so, run by run and TR by TR.

A recording in segments (:mod:`rt_recon.record.segments`) is replayed part by
part, in order (:mod:`rt_recon.record.to_run`: a segment with the restarts'
segments after it on its grid joined), each part as its own run on its own grid
under the run label it was recorded with: one replay source per part, the next
once the one before has ended its run. The decoder refuses a part on another
grid than its bundle's, as it did live, and decodes the next that fits; the new
recording is in segments as the original was.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rt_recon.apps.pipeline import PipelineResult, pipeline_overrides, run_pipeline
from rt_recon.config import SessionConfig, validate_config
from rt_recon.errors import DataError
from rt_recon.nodes.replay import volume_indexes
from rt_recon.record.recording import RecordingReader
from rt_recon.record.segments import SessionReader
from rt_recon.record.to_run import recorded_parts, recorded_run


@dataclass
class LatentsComparison:
    compared: int  # TRs present in both recordings
    identical: int  # of those, TRs whose z and c are bitwise equal
    max_abs_difference: float


def compare_latents(a: str | Path, b: str | Path) -> LatentsComparison:
    """Compare the latents of two recordings (each with its segments) TR by TR (matched by
    run and TR index in headers: each run of a session counts its TRs from 0)."""
    with SessionReader(a) as ra, SessionReader(b) as rb:
        ha, za, ca = ra.latents()
        hb, zb, cb = rb.latents()
    index_b = {(h.get("run"), h["tr"]): i for i, h in enumerate(hb)}
    compared = identical = 0
    worst = 0.0
    for i, header in enumerate(ha):
        j = index_b.get((header.get("run"), header["tr"]))
        if j is None:
            continue
        compared += 1
        same = np.array_equal(za[i], zb[j]) and np.array_equal(ca[i], cb[j])
        identical += int(same)
        worst = max(worst, float(np.abs(za[i] - zb[j]).max()), float(np.abs(ca[i] - cb[j]).max()))
    return LatentsComparison(compared, identical, worst)


def replay_config(
    recording: str | Path, output: Path, speed: float, asap: bool = False
) -> SessionConfig:
    """The recorded session's config, writing to ``output``, replaying at ``speed`` (or
    ``asap``: the nodes then wait for the replay's acknowledgement socket too)."""
    with RecordingReader(recording) as reading:
        recorded = reading.attr("config")
    if recorded is None:
        raise DataError(f"{recording}: the recording holds no session config to replay with")
    config = validate_config(recorded, f"{recording} (recorded config)")
    return config.with_overrides(
        {
            **pipeline_overrides(asap),
            "paths.output_dir": str(output),
            "recorder.path": str(output / "recording.h5"),
            "replay.speed": speed,
        },
        source=str(recording),
    ).resolved()


def replay_recording(
    recording: str | Path, output: Path | None = None, speed: float = 1.0, asap: bool = False
) -> tuple[PipelineResult, LatentsComparison]:
    """Replay ``recording`` through new nodes into ``output``; compare the latents with it.

    ``output`` defaults to a new ``replay-<time>`` folder beside the
    recording; ``speed`` is times the recorded pace, ``asap`` as fast as the
    renderer is done with each TR (so every TR is rendered,
    :func:`~rt_recon.apps.pipeline.run_pipeline`).
    """
    recording = Path(recording)
    output = output or recording.parent / f"replay-{time.strftime('%Y%m%d-%H%M%S')}"
    config = replay_config(recording, output, speed, asap)
    output.mkdir(parents=True, exist_ok=True)
    config_path = output / "session.json"
    config_path.write_text(config.to_json())
    parts = recorded_parts(recording)
    options = ["--speed", str(speed), *(["--asap"] if asap else [])]
    sources = [
        [str(recording), "--series", part.label, "--run-id", part.label, *options] for part in parts
    ]
    # the last TR: the last volume's acquisition index (a restart's gap leaves indices out)
    last_tr = int(volume_indexes(recorded_run(recording, parts[-1].label))[-1])
    n_trs = sum(part.n_volumes for part in parts)
    result = run_pipeline(
        config, config_path, sources[0], n_trs, more_sources=sources[1:],
        last=(parts[-1].label, last_tr),
    )  # fmt: skip
    return result, compare_latents(recording, config.recording_path)
