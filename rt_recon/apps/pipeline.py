"""Run one replay source through recorder, renderer and decoder processes, to the end.

Shared by ``rt-recon demo`` (source: a synthetic test run) and ``rt-recon
replay`` (source: a recording). Every process is a node started by name
(:meth:`~rt_recon.nodes.supervisor.Supervisor.start_node`). Start order makes
the session lossless from its first volume: the nodes start, the decoder
waits for its latents subscribers (renderer, recorder, this process) and the
renderer for its frame subscribers (recorder, this process); the replay
source starts streaming only once the decoder and the recorder report
``streaming`` (``--await-ready``). The renderer subscribes to latents only
once its own subscribers are there, so the decoder streaming means the
renderer is listening. This process collects every latents message and frame
until the frame of the last TR arrives.

An ``asap`` source (``--asap`` among the replay's arguments) goes as fast as
the *renderer* is done with each TR (``--ack-frames``), not only the decoder:
the decoder alone takes a volume in a few milliseconds, so a renderer that
takes the newest latents would skip most TRs. One volume is in flight at a
time (``--window 1``): with two, the decoder's next latents often landed
while the renderer was still publishing and saving the last frame, and the
renderer skipped the older one as stale (6 of 40 TRs on a loaded 2-core
CPU). The source's acknowledgement socket subscribes to latents and frames,
so both nodes wait for one subscriber more (:func:`pipeline_overrides`):
counting it without waiting for it let the decoder start before the renderer
had subscribed (issue #15 item 7: 1 frame of 155 TRs).

A replay of several runs (a recording whose segments are on different grids:
:mod:`rt_recon.record.to_run`) is one source process per run, one after the
other (``more_sources``): each waits for the decoder and the recorder to be on
its own stream before its first volume (a fresh ``--await-ready``: they follow
the stream to its next run once the one before has ended), as the bridge does
at each new series.

When the last frame is in, the recorder gets a moment to record it too
(its heartbeat says when) before the nodes are stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from rt_recon.config import SessionConfig
from rt_recon.errors import ConfigError, RtReconError
from rt_recon.evaluate.latency import StageSummary, summarise
from rt_recon.nodes.supervisor import Supervisor
from rt_recon.protocol import (
    AWAY_AFTER_S,
    FAILED_STATES,
    TOPIC_FRAME,
    TOPIC_LATENTS,
    TOPIC_STATUS,
    Message,
    is_interpolated,
)
from rt_recon.transport.zmq import Subscriber

log = logging.getLogger(__name__)

#: How long to wait for more frames once the source has finished.
_DRAIN_S = 10.0

#: Subscribers the nodes wait for: latents go to renderer, recorder and the
#: collector; frames to recorder and the collector.
PIPELINE_OVERRIDES = {"decoder.wait_for_subscribers": 3, "renderer.wait_for_subscribers": 2}

#: With an asap source, its acknowledgement socket subscribes to latents and frames too.
ASAP_PIPELINE_OVERRIDES = {"decoder.wait_for_subscribers": 4, "renderer.wait_for_subscribers": 3}


def pipeline_overrides(asap: bool = False, frame_paced: bool = True) -> dict[str, int]:
    """The subscriber counts the nodes of a pipeline wait for (with an ``asap`` source or not;
    an asap source not ``frame_paced`` acknowledges latents only: no frames subscriber)."""
    if asap and not frame_paced:
        return {**ASAP_PIPELINE_OVERRIDES, "renderer.wait_for_subscribers": 2}
    return dict(ASAP_PIPELINE_OVERRIDES if asap else PIPELINE_OVERRIDES)


def _check_subscriber_counts(config: SessionConfig, asap: bool, frame_paced: bool) -> None:
    """Refuse a config whose nodes would start before every subscriber of the pipeline is in."""
    found = {
        "decoder.wait_for_subscribers": config.decoder.wait_for_subscribers,
        "renderer.wait_for_subscribers": config.renderer.wait_for_subscribers,
    }
    problems = ", ".join(
        f"{key} >= {n} (found {found[key]})"
        for key, n in pipeline_overrides(asap, frame_paced).items()
        if found[key] < n
    )
    if problems:
        raise ConfigError(
            f"a pipeline{' with an asap source' if asap else ''} needs {problems}: the nodes "
            "would start before all their subscribers are in (apply "
            f"pipeline_overrides(asap={asap}) to the config)"
        )


@dataclass
class PipelineResult:
    run_dir: Path
    n_trs: int
    recording: Path
    latents: list[dict] = field(default_factory=list)  # headers, in arrival order
    frames: list[Message] = field(default_factory=list)
    latency: list[StageSummary] = field(default_factory=list)

    @property
    def skipped_frames(self) -> int:
        return max((f.header.get("skipped_total", 0) for f in self.frames), default=0)


def run_pipeline(
    config: SessionConfig,
    config_path: Path,
    replay_args: Sequence[str],
    n_trs: int,
    monitor: Callable[[Supervisor], None] | None = None,
    frame_paced: bool = True,
    more_sources: Sequence[Sequence[str]] = (),
    last: tuple[str, int] | None = None,
) -> PipelineResult:
    """Start the nodes and the replay source; return when TR ``n_trs - 1`` is rendered
    (with several runs: ``last``, ``(run, TR)``, the last TR of the last run).

    ``config`` must include :func:`pipeline_overrides` (``asap=True`` when
    ``--asap`` is among ``replay_args``; a ConfigError otherwise); ``config_path``
    is that config as a file, for the children. ``replay_args`` are the replay
    node's run and options (``rt-recon simulate replay`` without
    ``--config``), e.g. ``[bold, "--events", events]``; an asap replay is paced
    by the renderer's frames (``--ack-frames``, added here). ``monitor(supervisor)``,
    if given, is called about every 0.1 s while the run goes (e.g. to sample
    the children's memory). ``frame_paced=False``: an asap replay goes as fast as the
    *decoder* takes volumes, the renderer drawing the newest latents as live (a soak).
    ``more_sources``: the arguments of further replay sources (each a run: see the module
    doc), started one after the other, each once the one before has finished.
    """
    asap = "--asap" in replay_args
    _check_subscriber_counts(config, asap, frame_paced)
    result = PipelineResult(config.paths.output_dir, n_trs, config.recording_path)
    sources = [list(replay_args), *(list(args) for args in more_sources)]
    if any(("--asap" in args) != asap for args in sources):
        raise ConfigError("the replay sources of one pipeline are all --asap or none is")
    source_args = [
        "--await-ready",
        config.decoder.latents_endpoint,
        "--await-ready",
        config.recorder.status_endpoint,
    ]
    if asap and frame_paced and "--ack-frames" not in replay_args:
        source_args += ["--ack-frames", config.renderer.frames_endpoint]
    if asap and frame_paced and "--window" not in replay_args:
        source_args += ["--window", "1"]
    with (
        Supervisor(config.paths.output_dir / "logs") as supervisor,
        Subscriber(
            config.decoder.latents_endpoint,
            [TOPIC_LATENTS],
            curve=config.security,
            name="collector",
        ) as latents,
        Subscriber(
            config.renderer.frames_endpoint, [TOPIC_FRAME], curve=config.security, name="collector"
        ) as frames,
        Subscriber(
            config.recorder.status_endpoint, [TOPIC_STATUS], curve=config.security, name="collector"
        ) as recorder,
    ):
        for node in ("recorder", "renderer", "decoder"):
            supervisor.start_node(node, config_path)

        def next_source() -> bool:
            """Start the next replay source, if any is left; whether one was."""
            if not sources:
                return False
            supervisor.start_node("replay", config_path, *sources.pop(0), *source_args)
            return True

        next_source()
        _collect(supervisor, latents, frames, result, monitor, next_source, last)
        _wait_for_recorder(recorder, result)
    result.latency = summarise((f.header["times"] for f in result.frames), config.budgets_ms())
    return result


#: Recorder states in which it records nothing more.
_NOT_RECORDING = frozenset({"paused", "stopped", *FAILED_STATES})


def _wait_for_recorder(status: Subscriber, result: PipelineResult) -> None:
    """Wait until the recorder's heartbeat (one a period at least) counts every latents
    message and frame collected here as recorded, or says it records nothing more (paused,
    failed): stopping it at once lost the last TR's frame from the new recording. A
    recorder that has not caught up within three heartbeat periods is logged."""
    deadline = time.monotonic() + AWAY_AFTER_S
    while (left := deadline - time.monotonic()) > 0:
        message = status.receive(timeout=left)
        if message is None:
            break
        beat = message.header
        if beat.get("node") != "recorder":
            continue
        if beat.get("state") in _NOT_RECORDING or (
            beat.get("latents", 0) >= len(result.latents)
            and beat.get("frames", 0) >= len(result.frames)
        ):
            return
    log.warning(
        "the recorder did not report recording all %d latents and %d frames within %g s",
        len(result.latents), len(result.frames), AWAY_AFTER_S,
    )  # fmt: skip


def _collect(
    supervisor: Supervisor,
    latents: Subscriber,
    frames: Subscriber,
    result: PipelineResult,
    monitor: Callable[[Supervisor], None] | None = None,
    next_source: Callable[[], bool] = lambda: False,
    last: tuple[str, int] | None = None,
) -> None:
    poller = zmq.Poller()
    poller.register(latents.socket, zmq.POLLIN)
    poller.register(frames.socket, zmq.POLLIN)
    source_done_at: float | None = None
    last_run, last_tr = (None, result.n_trs - 1) if last is None else last
    while True:
        ready = dict(poller.poll(100))
        if monitor is not None:
            monitor(supervisor)
        if latents.socket in ready:
            message = latents.receive(timeout=0)
            if message is not None:
                result.latents.append(message.header)
        if frames.socket in ready:
            message = frames.receive(timeout=0)
            if message is not None and not is_interpolated(message.header):  # TR frames only
                result.frames.append(message)
                header = message.header
                if header.get("tr") == last_tr and last_run in (None, header.get("run")):
                    return
        for name, code in supervisor.exited().items():
            if name == "replay" and code == 0:
                if source_done_at is None and not next_source():
                    source_done_at = time.monotonic()
            else:
                child = supervisor.children[name]
                raise RtReconError(
                    f"{name} exited with code {code} before the run finished; "
                    f"last lines of {child.log_path}:\n{child.tail()}"
                )
        if source_done_at is not None and time.monotonic() - source_done_at > _DRAIN_S:
            log.warning(
                "the source finished but no frame for TR %d arrived within %g s", last_tr, _DRAIN_S
            )
            return
