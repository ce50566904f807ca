"""The supervisor: nodes start by name (one node -> subcommand table, checked against the real
command line), a child is watched through its exit code and its own log lines, and the
``node_processes`` fixture leaves nothing behind."""

from __future__ import annotations

import resource
import signal
import sys
import textwrap
import time

import psutil
import pytest

from rt_recon.nodes.supervisor import NODE_COMMANDS, ChildExitedError, Supervisor


def test_every_node_starts_its_own_subcommand(tmp_path):
    config_path = tmp_path / "session.json"  # never read: --help exits first
    with Supervisor(tmp_path / "logs") as supervisor:
        for node in NODE_COMMANDS:
            supervisor.start_node(node, config_path, "--help")
        codes = {name: c.wait(timeout=60) for name, c in supervisor.children.items()}
    assert codes == dict.fromkeys(NODE_COMMANDS, 0)
    for node, command in NODE_COMMANDS.items():
        log = supervisor.children[node].tail(200)
        assert f"usage: rt-recon {' '.join(command)} " in log, log


def test_an_unknown_node_names_the_known_ones(tmp_path):
    with (
        Supervisor(tmp_path / "logs") as supervisor,
        pytest.raises(ValueError, match="unknown node 'decodr': expected one of decoder, "),
    ):
        supervisor.start_node("decodr", tmp_path / "session.json")
    assert not supervisor.children


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


#: Prints a line, then another after a moment, then waits: for a minute, or (with an
#: argument) until stdin ends, which for a child of the supervisor is at once.
_SERVER = """
    import sys, time
    print("starting", flush=True)
    time.sleep(0.3)
    print("listening on port 5555", flush=True)
    sys.stdin.read() if len(sys.argv) > 1 else time.sleep(60)
"""


def test_a_child_is_waited_for_by_its_exit_code_or_a_timeout_naming_it(tmp_path):
    with Supervisor(tmp_path / "logs") as supervisor:
        quick = supervisor.spawn("quick", _python("print('bye'); raise SystemExit(3)"))
        slow = supervisor.spawn("slow", _python(_SERVER))
        assert quick.wait(timeout=30) == 3 and quick.returncode == 3
        slow.wait_for_line("^starting$", timeout=30)
        with pytest.raises(
            TimeoutError, match=rf"^slow \(pid {slow.pid}\) still running after 0.2 s"
        ):
            slow.wait(timeout=0.2)
        assert slow.returncode is None and supervisor.exited() == {"quick": 3}
        slow.send_signal(signal.SIGTERM)
        assert slow.wait(timeout=30) == -signal.SIGTERM
    assert quick.log_text() == "bye\n"


def test_wait_for_line_returns_the_line_or_says_why_there_is_none(tmp_path):
    with Supervisor(tmp_path / "logs") as supervisor:
        server = supervisor.spawn("server", _python(_SERVER))
        assert server.wait_for_line(r"on port \d+$", timeout=30) == "listening on port 5555"
        assert server.wait_for_line("^starting$", timeout=0) == "starting"  # written before
        with pytest.raises(TimeoutError, match=r"^server .* wrote no line matching 'ready' within"):
            server.wait_for_line("ready", timeout=0.3)
        short = supervisor.spawn("short", [*_python(_SERVER), "until-stdin-ends"])
        expected = "^short exited with code 0 and wrote no line matching 'ready'; last lines"
        with pytest.raises(ChildExitedError, match=expected) as raised:
            short.wait_for_line("ready", timeout=60)
        assert str(raised.value).endswith("\nstarting\nlistening on port 5555")


def test_a_restarted_child_reads_its_own_log_lines_and_a_running_name_is_refused(tmp_path):
    crash = _python("import sys; print('rt-recon: error: disk full', file=sys.stderr)")
    with Supervisor(tmp_path / "logs") as supervisor:
        first = supervisor.spawn("node", [*crash[:2], crash[2] + "; raise SystemExit(2)"])
        assert first.wait(timeout=30) == 2 and first.error_line() == "disk full"
        second = supervisor.spawn("node", _python(_SERVER))  # the first has exited: allowed
        second.wait_for_line("listening", timeout=30)
        with pytest.raises(
            ValueError, match=rf"child 'node' is still running \(pid {second.pid}\)"
        ):
            supervisor.spawn("node", _python(_SERVER))
        assert supervisor.children["node"] is second
        # one log file, each child's own part of it
        assert first.log_path == second.log_path
        assert second.log_text() == "starting\nlistening on port 5555\n"
        assert second.error_line() is None  # the first one's error is not this one's
    assert first.log_path.read_text().startswith("rt-recon: error: disk full\nstarting\n")


def test_a_child_gets_the_environment_limits_and_wrapper_it_is_started_with(tmp_path):
    def few_files() -> None:  # runs in the child, before exec
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
        )

    show = """
        import os, resource
        print(os.environ["RT_TEST"], resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    """
    with Supervisor(tmp_path / "logs") as supervisor:
        child = supervisor.spawn("show", _python(show), env={"RT_TEST": "yes"}, preexec=few_files)
        assert child.wait(timeout=30) == 0
        wrapped = supervisor.start(
            "wrapped", ["--version"], wrapper=["sh", "-c", 'echo "wrapped: $*"', "sh"]
        )
        assert wrapped.wait(timeout=30) == 0
    assert child.log_text() == "yes 64\n"
    assert wrapped.log_text() == f"wrapped: {sys.executable} -m rt_recon --version\n"


#: Starts a grandchild that ignores SIGTERM in a session of its own, as a careless node might.
_CARELESS = """
    import subprocess, sys, time
    code = "import signal as s, time; s.signal(s.SIGTERM, s.SIG_IGN); print('up'); time.sleep(60)"
    subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    time.sleep(60)
"""


def test_the_fixture_fails_a_test_whose_children_leave_a_process_behind(node_processes):
    careless = node_processes.python("careless", "-c", textwrap.dedent(_CARELESS))
    careless.wait_for_line("^up$", timeout=30)  # the grandchild writes to the same log
    grandchild = psutil.Process(careless.pid).children()[0]
    with pytest.raises(AssertionError, match=rf"left behind by the children: \[{grandchild.pid}\]"):
        node_processes.stop(timeout=1.0)
    assert careless.returncode == -signal.SIGTERM
    deadline = time.monotonic() + 10
    while not _gone(grandchild):  # killed once found
        assert time.monotonic() < deadline, "the process left behind was not killed"
        time.sleep(0.05)


def _gone(process: psutil.Process) -> bool:
    """Exited (a zombie counts: this test is not its parent, so it cannot reap it)."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
