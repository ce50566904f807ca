"""Start nodes as child processes, watch them, and stop them all, always.

Each child runs ``python -m rt_recon <command>`` with its output in a log
file; a node is started by name (:data:`NODE_COMMANDS` holds the one
node -> subcommand table). On Linux a child also gets ``PR_SET_PDEATHSIG`` so that it is
terminated even if the supervisor itself is killed with SIGKILL. ``stop_all``
sends SIGTERM, waits, then SIGKILLs what is left: no orphans.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: The ``rt-recon`` subcommand that runs each node.
NODE_COMMANDS: dict[str, tuple[str, ...]] = {
    "decoder": ("decode",),
    "renderer": ("render",),
    "recorder": ("record",),
    "console": ("console",),
    "replay": ("simulate", "replay"),  # the replay source: a recorded run over LSL
}

_PR_SET_PDEATHSIG = 1
# Loaded once in the parent: the child, between fork and exec, only makes one call.
_LIBC = ctypes.CDLL(None) if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log_path: Path

    def error_line(self) -> str | None:
        """The child's own one-line error (``rt-recon: error: ...``), if it printed one."""
        for line in reversed(self.tail(200).splitlines()):
            if line.startswith("rt-recon: error: "):
                return line.removeprefix("rt-recon: error: ")
        return None

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


class Supervisor:
    """Owns a set of child processes; a context manager that stops them on exit."""

    def __init__(self, log_dir: str | Path):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.children: dict[str, Child] = {}

    def start(self, name: str, args: Sequence[str]) -> Child:
        """Start ``python -m rt_recon *args`` as child ``name`` (a node: :meth:`start_node`)."""
        log_path = self.log_dir / f"{name}.log"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        with log_path.open("a") as fh:
            process = subprocess.Popen(
                [sys.executable, "-m", "rt_recon", *args],
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                preexec_fn=_die_with_parent,
            )
        child = Child(name, process, log_path)
        self.children[name] = child
        log.info("started %s (pid %d), log %s", name, process.pid, log_path)
        return child

    def start_node(self, node: str, config_path: str | Path, *extra_args: str) -> Child:
        """Start node ``node`` (a key of :data:`NODE_COMMANDS`) as the child of that name.

        It reads the session config at ``config_path``; ``extra_args`` follow
        its subcommand (the replay's run and options, ``--await-ready``, ...).
        """
        command = NODE_COMMANDS.get(node)
        if command is None:
            raise ValueError(f"unknown node {node!r}: expected one of {', '.join(NODE_COMMANDS)}")
        return self.start(node, [*command, *extra_args, "--config", str(config_path)])

    def exited(self) -> dict[str, int]:
        """Children that have exited, with their return codes."""
        return {
            name: child.process.returncode
            for name, child in self.children.items()
            if child.process.poll() is not None
        }

    def pids(self) -> list[int]:
        return [child.process.pid for child in self.children.values()]

    def stop_all(self, timeout: float = 10.0) -> None:
        """SIGTERM every live child, wait up to ``timeout`` s, then SIGKILL the rest."""
        live = [c for c in self.children.values() if c.process.poll() is None]
        for child in live:
            child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in live:
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %g s; killing it", child.name, timeout)
                child.process.kill()
                child.process.wait()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
