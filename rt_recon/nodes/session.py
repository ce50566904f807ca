"""``rt-recon run CONFIG``: start a session's nodes as processes and keep them running.

1. Preflight, before any process starts: every endpoint a node will bind is
   free, the render model is complete, the decoder bundle loads. Each
   problem is one line naming its cause.
2. Start the nodes (``run.nodes``), each ``python -m rt_recon <node>``, logs
   under ``<output_dir>/logs``.
3. Watch them: a crashed node listed in ``run.restart`` (renderer, console)
   is restarted, up to ``run.max_restarts`` times; any other node's exit
   ends the session with that node's own error line.
4. On SIGINT/SIGTERM, stop every node (SIGTERM, then SIGKILL): no orphans.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

from rt_recon.config import SessionConfig
from rt_recon.decode.bundle import DecoderBundle
from rt_recon.errors import BundleError, RtReconError, StreamError
from rt_recon.nodes.supervisor import Supervisor
from rt_recon.render.embedded import resolve_model_path
from rt_recon.render.model import check_model_dir

log = logging.getLogger(__name__)

#: The ``rt-recon`` subcommand of each node.
NODE_COMMANDS = {
    "decoder": "decode",
    "renderer": "render",
    "recorder": "record",
    "console": "console",
}
_RESTART_BACKOFF_S = 1.0


def bound_endpoints(config: SessionConfig, node: str) -> list[str]:
    """The ZeroMQ endpoints (or http addresses) a node binds."""
    if node == "decoder":
        return [config.decoder.latents_endpoint]
    if node == "renderer":
        return [config.renderer.frames_endpoint]
    if node == "recorder":
        control = config.recorder.control_endpoint
        return [config.recorder.status_endpoint, *([control] if control else [])]
    console = getattr(config, "console", None)
    if node == "console" and console is not None:
        return [f"tcp://{console.host}:{console.port}"]
    return []


def _check_free(node: str, endpoint: str) -> None:
    parsed = urlparse(endpoint)
    if parsed.scheme != "tcp":
        return
    host = parsed.hostname or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, parsed.port or 0))
        except OSError as exc:
            raise StreamError(
                f"{node}: cannot bind {endpoint}: {exc.strerror} (is another session running?)"
            ) from None


def preflight(config: SessionConfig, nodes: tuple[str, ...]) -> None:
    """Raise a one-line RtReconError for the first thing that would stop a node starting."""
    for node in nodes:
        for endpoint in bound_endpoints(config, node):
            _check_free(node, endpoint)
    if "renderer" in nodes:
        check_model_dir(resolve_model_path(config))
    if {"decoder", "recorder"} & set(nodes):
        if config.decoder.bundle is None:
            raise BundleError(
                "decoder.bundle is not set in the config; fit one with `rt-recon fit`"
            )
        DecoderBundle.load(config.decoder.bundle)


def run_session(config: SessionConfig, config_path: Path, stop: threading.Event) -> None:
    """Run until ``stop`` is set, or raise RtReconError when a node fails for good."""
    nodes = config.run.nodes
    preflight(config, nodes)
    restarts = dict.fromkeys(nodes, 0)
    with Supervisor(config.paths.output_dir / "logs") as supervisor:
        for node in nodes:
            supervisor.start(node, [NODE_COMMANDS[node], "--config", str(config_path)])
        log.info("session running: %s (Ctrl-C to stop)", ", ".join(nodes))
        while not stop.wait(0.2):
            for node, code in supervisor.exited().items():
                child = supervisor.children[node]
                reason = child.error_line() or f"exit code {code}"
                if node in config.run.restart and restarts[node] < config.run.max_restarts:
                    restarts[node] += 1
                    log.warning(
                        "%s stopped (%s); restarting it (%d/%d)",
                        node,
                        reason,
                        restarts[node],
                        config.run.max_restarts,
                    )
                    time.sleep(_RESTART_BACKOFF_S)
                    supervisor.start(node, [NODE_COMMANDS[node], "--config", str(config_path)])
                    continue
                raise RtReconError(f"{node} stopped: {reason} (log: {child.log_path})")
    log.info("session stopped")
