"""``rt-recon run CONFIG``: start a session's nodes as processes and keep them running.

1. Preflight, before any process starts (:mod:`rt_recon.apps.preflight`):
   each problem is one line naming its cause.
2. Start the nodes (``run.nodes``) by name through the supervisor, each
   ``python -m rt_recon <subcommand>``, logs under ``<output_dir>/logs``.
3. Watch them: a crashed node listed in ``run.restart`` (renderer, console)
   is restarted, up to ``run.max_restarts`` times; any other node's exit
   ends the session with that node's own error line.
4. On SIGINT/SIGTERM, stop every node (SIGTERM, then SIGKILL): no orphans.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from rt_recon.apps.preflight import check_before_start
from rt_recon.config import SessionConfig
from rt_recon.errors import RtReconError
from rt_recon.nodes.supervisor import Supervisor

log = logging.getLogger(__name__)

_RESTART_BACKOFF_S = 1.0


def run_session(config: SessionConfig, config_path: Path, stop: threading.Event) -> None:
    """Run until ``stop`` is set, or raise RtReconError when a node fails for good.

    ``config_path`` is ``config`` as a file, for the children.
    """
    nodes = config.run.nodes
    check_before_start(config, nodes)
    restarts = dict.fromkeys(nodes, 0)
    with Supervisor(config.paths.output_dir / "logs") as supervisor:
        for node in nodes:
            supervisor.start_node(node, config_path)
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
                    supervisor.start_node(node, config_path)
                    continue
                raise RtReconError(f"{node} stopped: {reason} (log: {child.log_path})")
    log.info("session stopped")
