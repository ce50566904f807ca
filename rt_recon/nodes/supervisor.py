"""Start nodes as child processes, watch them, and stop them all, always.

Each child runs ``python -m rt_recon <command>`` (or, through :meth:`Supervisor.spawn`,
any command line) with its output in a log file; a node is started by name
(:data:`NODE_COMMANDS` holds the one node -> subcommand table). On Linux a child also gets
``PR_SET_PDEATHSIG`` so that it is terminated even if the supervisor itself is killed with
SIGKILL. ``stop_all`` sends SIGTERM, waits, then SIGKILLs what is left: no orphans.
A :class:`Child` is watched through its pid, its exit code and its own log lines
(:meth:`Child.wait`, :meth:`Child.wait_for_line`).
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rt_recon.errors import RtReconError

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

#: Seconds between two looks at a log file while waiting for a line in it.
_LOG_POLL_S = 0.02


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


class ChildExitedError(RtReconError):
    """A child exited while something was waited for that only a running child could do."""


@dataclass
class Child:
    """One child process: its name, its :class:`subprocess.Popen`, and its log file.

    ``log_start`` is where this child's own output begins in ``log_path`` (a
    restarted node appends to the log of the one before it); :meth:`tail`,
    :meth:`error_line`, :meth:`log_text` and :meth:`wait_for_line` read from there.
    """

    name: str
    process: subprocess.Popen
    log_path: Path
    log_start: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """The exit code (negative: killed by that signal), or None while it runs."""
        return self.process.poll()

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` (e.g. ``signal.SIGTERM``); nothing once the child has exited."""
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for the child to exit; its exit code.

        Raises:
            TimeoutError: still running after ``timeout`` s (the message ends with its
                last log lines); the child is left running.
        """
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(
                f"{self.name} (pid {self.pid}) still running after {timeout:g} s; "
                f"last lines of {self.log_path}:\n{self.tail()}"
            ) from None

    def log_text(self) -> str:
        """Everything this child has written so far (stdout and stderr, interleaved)."""
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(self.log_start)
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def wait_for_line(self, pattern: str | re.Pattern[str], timeout: float) -> str:
        """The first line of this child's output that ``pattern`` matches (``re.search``),
        waiting up to ``timeout`` s for it to be written.

        Raises:
            TimeoutError: no such line within ``timeout`` s.
            ChildExitedError: the child exited without writing one.
            (Both messages end with the child's last log lines.)
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        offset, pending = self.log_start, b""
        while True:
            exited = self.process.poll() is not None  # before reading: its last lines count
            try:
                with self.log_path.open("rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
            except OSError:
                chunk = b""
            offset += len(chunk)
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                text = line.decode(errors="replace").rstrip("\r")
                if regex.search(text):
                    return text
            if exited:
                raise ChildExitedError(
                    f"{self.name} exited with code {self.process.returncode} and wrote no line "
                    f"matching {regex.pattern!r}; last lines of {self.log_path}:\n{self.tail()}"
                )
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{self.name} (pid {self.pid}) wrote no line matching {regex.pattern!r} "
                    f"within {timeout:g} s; last lines of {self.log_path}:\n{self.tail()}"
                )
            time.sleep(_LOG_POLL_S)

    def error_line(self) -> str | None:
        """The child's own one-line error (``rt-recon: error: ...``), if it printed one."""
        for line in reversed(self.tail(200).splitlines()):
            if line.startswith("rt-recon: error: "):
                return line.removeprefix("rt-recon: error: ")
        return None

    def tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines this child wrote."""
        return "\n".join(self.log_text().splitlines()[-lines:])


class Supervisor:
    """Owns a set of child processes; a context manager that stops them on exit."""

    def __init__(self, log_dir: str | Path):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.children: dict[str, Child] = {}

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> Child:
        """Start the command line ``argv`` as child ``name``, output in ``<log_dir>/<name>.log``.

        ``env`` adds variables to this process's environment for the child (the way a
        secret, such as the console's token, reaches a node: never logged, never in a file);
        ``preexec`` runs in the child just before it executes ``argv`` (e.g. to
        set a resource limit), after it has been tied to this process's life.
        A name belongs to one running child at a time (a child that has exited
        may be started again under its name: its output is appended to the log).

        Raises:
            ValueError: child ``name`` is still running.
        """
        running = self.children.get(name)
        if running is not None and running.process.poll() is None:
            raise ValueError(
                f"child {name!r} is still running (pid {running.pid}): stop it first, "
                "or start this one under another name"
            )
        log_path = self.log_dir / f"{name}.log"
        child_env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})}

        def before_exec() -> None:  # runs in the child between fork and exec
            _die_with_parent()
            if preexec is not None:
                preexec()

        with log_path.open("ab") as fh:
            log_start = fh.tell()
            process = subprocess.Popen(
                list(argv),
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=child_env,
                preexec_fn=before_exec,
            )
        child = Child(name, process, log_path, log_start)
        self.children[name] = child
        log.info("started %s (pid %d), log %s", name, process.pid, log_path)
        return child

    def start(
        self,
        name: str,
        args: Sequence[str],
        *,
        wrapper: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> Child:
        """Start ``python -m rt_recon *args`` as child ``name`` (a node: :meth:`start_node`).

        ``wrapper`` is a command the child runs under (``["ip", "netns", "exec",
        "lab"]``, ``["taskset", "-c", "2"]``); ``env`` and ``preexec`` as in :meth:`spawn`.
        """
        argv = [*wrapper, sys.executable, "-m", "rt_recon", *args]
        return self.spawn(name, argv, env=env, preexec=preexec)

    def start_node(
        self,
        node: str,
        config_path: str | Path,
        *extra_args: str,
        wrapper: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> Child:
        """Start node ``node`` (a key of :data:`NODE_COMMANDS`) as the child of that name.

        It reads the session config at ``config_path``; ``extra_args`` follow
        its subcommand (the replay's run and options, ``--await-ready``, ...);
        ``wrapper``, ``env`` and ``preexec`` as in :meth:`start`.
        """
        command = NODE_COMMANDS.get(node)
        if command is None:
            raise ValueError(f"unknown node {node!r}: expected one of {', '.join(NODE_COMMANDS)}")
        args = [*command, *extra_args, "--config", str(config_path)]
        return self.start(node, args, wrapper=wrapper, env=env, preexec=preexec)

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
