"""``rt-recon run CONFIG``: start a session's nodes as processes and keep them running.

1. Preflight, before any process starts or any file is written
   (:mod:`rt_recon.apps.preflight`): each problem is one line naming its cause.
2. Write the config the nodes read, ``<output_dir>/session.json``, without
   secrets (:meth:`~rt_recon.config.SessionConfig.redacted`); the console's
   token reaches the console node through its environment
   (:data:`~rt_recon.config.CONSOLE_TOKEN_ENV`), never through a file.
3. Start the nodes (``run.nodes``) by name through the supervisor, each
   ``python -m rt_recon <subcommand>``, logs under ``<output_dir>/logs``.
4. Watch them: a crashed node (killed, or an unexpected exit; not one that
   stopped on an error it stated, exit code 2, which a restart would repeat)
   listed in ``run.restart`` (every node by default) is restarted, up to
   ``run.max_restarts`` times; any other node's exit ends the session with
   that node's own error line. Their heartbeats are
   listened to for the end-of-session :class:`SessionSummary`, which also names
   every stretch of TRs that was not decoded, and why (a decoder restart's
   downtime: :mod:`rt_recon.evaluate.gaps`), logged as the session ends.
5. On SIGINT/SIGTERM, stop every node (SIGTERM, then SIGKILL): no orphans.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rt_recon.apps.preflight import check_before_start
from rt_recon.config import SessionConfig
from rt_recon.errors import ProtocolError, RtReconError
from rt_recon.evaluate.gaps import recorded_gaps
from rt_recon.nodes.supervisor import Supervisor
from rt_recon.protocol import TOPIC_STATUS, Status
from rt_recon.record.segments import SessionReader
from rt_recon.transport.zmq import Subscriber

log = logging.getLogger(__name__)

_RESTART_BACKOFF_S = 1.0
#: Nodes that read a secret from their environment (the console: its token).
_SECRET_READERS = frozenset({"console"})


@dataclass
class SessionSummary:
    """What a session did, from its nodes' last heartbeats and its recording.

    ``trs``: TRs the decoder counted over the session's ``runs`` (decoded, ``skipped``
    because they could not be decoded, and ``missed`` because they never reached a
    decoder); a restarted decoder counts the TRs before its first as missed, so the TRs
    of that run its predecessor had already counted are taken off (each TR counts once);
    ``frames``: frames rendered,
    over every renderer process of the session (restarts included);
    ``recording``: the recording file, if one was written, with its
    ``recorded`` entries per group (volumes, frames, ...) or why it could not
    be read (``recording_problem``); ``not_decoded``: one line per stretch of TRs
    without latents and why (a decoder restart names its downtime: ``decoder down: TRs
    61-68 of run 7 not decoded (decoder restart: pid 4242 -> pid 4311)``), from the
    recording (:mod:`rt_recon.evaluate.gaps`), or without one from the heartbeats (where
    a restart happened, not where the new process resumed). A node not heard from is
    absent from ``heard``, and its numbers stay None.
    """

    duration_s: float = 0.0
    heard: set[str] = field(default_factory=set)
    trs: int | None = None
    runs: int | None = None
    missed: int | None = None
    skipped: int | None = None
    frames: int | None = None
    recording: Path | None = None
    recorded: dict[str, int] = field(default_factory=dict)
    recording_problem: str | None = None
    not_decoded: list[str] = field(default_factory=list)


class HeartbeatWatch:
    """The last heartbeat counters of each node process behind ``endpoints``."""

    def __init__(self, endpoints: list[str], config: SessionConfig):
        self._subscribers = [
            Subscriber(endpoint, [TOPIC_STATUS], curve=config.security) for endpoint in endpoints
        ]
        #: (node, pid) -> its last counters, in the order the processes were first heard
        self.last: dict[tuple[str, int], dict[str, Any]] = {}
        #: (node, pid) -> the first run its heartbeats named (a restarted decoder: the run
        #: it resumed)
        self.first_run: dict[tuple[str, int], str] = {}

    def poll(self, wait_s: float = 0.0) -> None:
        """Take every heartbeat waiting (the first of each socket waited for up to ``wait_s``:
        the nodes' last words may still be on their way)."""
        for subscriber in self._subscribers:
            timeout = wait_s
            while (message := subscriber.receive(timeout=timeout)) is not None:
                timeout = 0.0
                try:
                    status = Status.from_json(message.header)
                except ProtocolError as exc:
                    log.debug("ignored a heartbeat from %s: %s", subscriber.endpoint, exc)
                    continue
                key = (status.node, status.pid)
                self.last[key] = dict(status.counters)
                run = status.counters.get("run")
                if run is not None and key not in self.first_run:
                    self.first_run[key] = str(run)

    def counters(self, node: str) -> list[dict[str, Any]]:
        """The last counters of each process of ``node`` heard from (restarts: several)."""
        return [counters for (name, _), counters in self.last.items() if name == node]

    def processes(self, node: str) -> list[tuple[int, str | None, dict[str, Any]]]:
        """``(pid, first run, last counters)`` of each process of ``node``, in the order
        they were first heard."""
        return [
            (pid, self.first_run.get((name, pid)), counters)
            for (name, pid), counters in self.last.items()
            if name == node
        ]

    def close(self) -> None:
        for subscriber in self._subscribers:
            subscriber.close()


def _summarize(
    watch: HeartbeatWatch, config: SessionConfig, nodes: tuple[str, ...], duration_s: float
) -> SessionSummary:
    summary = SessionSummary(duration_s=duration_s, heard={node for node, _ in watch.last})
    decoders = watch.processes("decoder")
    restarts: list[str] = []
    if decoders:
        summary.missed = sum(int(c.get("missed", 0)) for _, _, c in decoders)
        summary.skipped = sum(int(c.get("skipped", 0)) for _, _, c in decoders)
        published = sum(int(c.get("published", 0)) for _, _, c in decoders)
        summary.runs = sum(int(c.get("runs", 0)) for _, _, c in decoders)
        for (pid, _, before), (new_pid, resumed, _) in itertools.pairwise(decoders):
            if resumed is None or resumed != before.get("run"):
                continue  # the new process began another run: nothing counted twice
            # it counted TRs 0 .. its first - 1 as missed; those up to the last one the
            # process before it decoded were counted by that one already
            last = int(before.get("tr", -1))
            summary.missed -= last + 1
            summary.runs -= 1
            restarts.append(
                f"decoder down: run {resumed} after TR {last} (decoder restart: pid {pid} -> "
                f"pid {new_pid}); the TRs until it resumed are counted as missed"
            )
        summary.trs = published + summary.skipped + summary.missed
    renderers = watch.counters("renderer")
    if renderers:
        summary.frames = sum(int(c.get("rendered", 0)) for c in renderers)
    path = config.recording_path
    if "recorder" in nodes and path.is_file():
        summary.recording = path
        try:
            with SessionReader(path) as reading:  # with its later segments
                groups = ("volumes", "markers", "latents", "frames")
                summary.recorded = {group: reading.count(group) for group in groups}
                gaps = recorded_gaps(reading)
            summary.not_decoded = [gap.describe() for gap in gaps]
            return summary
        except RtReconError as exc:
            summary.recording_problem = str(exc)
    summary.not_decoded = restarts  # no recording to say exactly where: the heartbeats
    return summary


def console_url(config: SessionConfig) -> str:
    """The base address of the session's console (``http://host:port``), without any token.

    A console bound to every interface (``0.0.0.0``, ``::``) is shown under this
    machine's host name.
    """
    host = config.console.host
    if host in {"0.0.0.0", "::"}:
        host = socket.gethostname()
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{config.console.port}"


class Session:
    """One ``rt-recon run``: preflight on construction, then :meth:`run`.

    :attr:`summary` is filled in when :meth:`run` returns or raises.
    """

    def __init__(self, config: SessionConfig):
        self.config = config
        self.nodes = config.run.nodes
        check_before_start(config, self.nodes)
        self.output_dir = config.paths.output_dir
        #: The config the nodes read: written by :meth:`run`, without secrets.
        self.config_path = self.output_dir / "session.json"
        self.log_dir = self.output_dir / "logs"
        self.summary: SessionSummary | None = None

    @property
    def recording_path(self) -> Path | None:
        """Where the recorder writes (None: no recorder in this session)."""
        return self.config.recording_path if "recorder" in self.nodes else None

    def _heartbeat_endpoints(self) -> list[str]:
        endpoints = {
            "decoder": self.config.decoder.latents_endpoint,
            "renderer": self.config.renderer.frames_endpoint,
            "recorder": self.config.recorder.status_endpoint,
        }
        return [endpoint for node, endpoint in endpoints.items() if node in self.nodes]

    def run(self, stop: threading.Event, on_started: Callable[[], None] | None = None) -> None:
        """Run until ``stop`` is set, or raise RtReconError when a node fails for good.

        ``on_started`` is called once every node has been started.
        """
        config, nodes = self.config, self.nodes
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(config.to_json(redact=True))
        secrets = config.secret_env()
        restarts = dict.fromkeys(nodes, 0)
        started = time.monotonic()
        watch = HeartbeatWatch(self._heartbeat_endpoints(), config)

        def start(supervisor: Supervisor, node: str) -> None:
            env = secrets if node in _SECRET_READERS else None
            supervisor.start_node(node, self.config_path, env=env)

        try:
            with Supervisor(self.log_dir) as supervisor:
                for node in nodes:
                    start(supervisor, node)
                log.info("session running: %s (Ctrl-C to stop)", ", ".join(nodes))
                if on_started is not None:
                    on_started()
                while not stop.wait(0.2):
                    watch.poll()
                    for node, code in supervisor.exited().items():
                        child = supervisor.children[node]
                        reason = child.error_line() or f"exit code {code}"
                        # exit code 2 is a stated error (bad config, no stream, wrong bundle):
                        # a restart would stop the same way; a crash is anything else
                        crashed = code != _STATED_ERROR
                        restartable = node in config.run.restart
                        if crashed and restartable and restarts[node] < config.run.max_restarts:
                            restarts[node] += 1
                            log.warning(
                                "%s stopped (%s); restarting it (%d/%d)",
                                node,
                                reason,
                                restarts[node],
                                config.run.max_restarts,
                            )
                            time.sleep(_RESTART_BACKOFF_S)
                            start(supervisor, node)
                            continue
                        raise RtReconError(f"{node} stopped: {reason} (log: {child.log_path})")
            log.info("session stopped")
        finally:
            watch.poll(wait_s=0.5)  # the nodes' last words ("stopped" heartbeats)
            watch.close()
            self.summary = _summarize(watch, config, nodes, time.monotonic() - started)
            for line in self.summary.not_decoded:
                log.warning("%s", line)


#: The exit code of a node that stopped on an error it stated (``rt-recon: error: ...``).
_STATED_ERROR = 2


def run_session(
    config: SessionConfig,
    stop: threading.Event,
    on_started: Callable[[], None] | None = None,
) -> SessionSummary:
    """Preflight, then run until ``stop`` is set (see :class:`Session`); the summary.

    Raises:
        RtReconError: preflight found a problem (nothing started), or a node failed for good.
    """
    session = Session(config)
    session.run(stop, on_started)
    assert session.summary is not None
    return session.summary
