"""Run one replay source through recorder, renderer and decoder processes, to the end.

Shared by ``rt-recon demo`` (source: a synthetic test run) and ``rt-recon
replay`` (source: a recording). Every process is a node started by name
(:meth:`~rt_recon.nodes.supervisor.Supervisor.start_node`). Start order makes
the session lossless from its first volume: the nodes start, the decoder
waits for its latents subscribers (renderer, recorder, this process) and the
renderer for its frame subscribers (recorder, this process); the replay
source starts streaming only once the decoder and the recorder report
``streaming`` (``--await-ready``). This process collects every latents
message and frame until the frame of the last TR arrives.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from rt_recon.config import SessionConfig
from rt_recon.errors import RtReconError
from rt_recon.evaluate.latency import StageSummary, summarise
from rt_recon.nodes.supervisor import Supervisor
from rt_recon.protocol import TOPIC_FRAME, TOPIC_LATENTS, Message
from rt_recon.transport.zmq import Subscriber

log = logging.getLogger(__name__)

#: How long to wait for more frames once the source has finished.
_DRAIN_S = 10.0

#: Subscribers the nodes wait for: latents go to renderer, recorder and the
#: collector; frames to recorder and the collector.
PIPELINE_OVERRIDES = {"decoder.wait_for_subscribers": 3, "renderer.wait_for_subscribers": 2}


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
) -> PipelineResult:
    """Start the nodes and the replay source; return when TR ``n_trs - 1`` is rendered.

    ``config`` must include :data:`PIPELINE_OVERRIDES`; ``config_path`` is
    that config as a file, for the children. ``replay_args`` are the replay
    node's run and options (``rt-recon simulate replay`` without
    ``--config``), e.g. ``[bold, "--events", events]``. ``monitor(supervisor)``,
    if given, is called about every 0.1 s while the run goes (e.g. to sample
    the children's memory).
    """
    result = PipelineResult(config.paths.output_dir, n_trs, config.recording_path)
    await_ready = [
        "--await-ready",
        config.decoder.latents_endpoint,
        "--await-ready",
        config.recorder.status_endpoint,
    ]
    with (
        Supervisor(config.paths.output_dir / "logs") as supervisor,
        Subscriber(
            config.decoder.latents_endpoint, [TOPIC_LATENTS], curve=config.security
        ) as latents,
        Subscriber(config.renderer.frames_endpoint, [TOPIC_FRAME], curve=config.security) as frames,
    ):
        for node in ("recorder", "renderer", "decoder"):
            supervisor.start_node(node, config_path)
        supervisor.start_node("replay", config_path, *replay_args, *await_ready)
        _collect(supervisor, latents, frames, result, monitor)
    result.latency = summarise((f.header["times"] for f in result.frames), config.budgets_ms())
    return result


def _collect(
    supervisor: Supervisor,
    latents: Subscriber,
    frames: Subscriber,
    result: PipelineResult,
    monitor: Callable[[Supervisor], None] | None = None,
) -> None:
    poller = zmq.Poller()
    poller.register(latents.socket, zmq.POLLIN)
    poller.register(frames.socket, zmq.POLLIN)
    source_done_at: float | None = None
    last_tr = result.n_trs - 1
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
            if message is not None:
                result.frames.append(message)
                if message.header.get("tr") == last_tr:
                    return
        for name, code in supervisor.exited().items():
            if name == "replay" and code == 0:
                source_done_at = source_done_at or time.monotonic()
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
