"""A port as a session that just stopped or crashed leaves it: a connection in TIME_WAIT."""

from __future__ import annotations

import errno
import socket
import time

import psutil


def in_time_wait(port: int) -> bool:
    """Whether a TCP connection whose local end is 127.0.0.1:``port`` is in TIME_WAIT."""
    return any(
        c.laddr and c.laddr.port == port and c.status == psutil.CONN_TIME_WAIT
        for c in psutil.net_connections(kind="tcp4")
    )


def plain_bind_fails(port: int) -> bool:
    """Whether binding 127.0.0.1:``port`` without SO_REUSEADDR fails with EADDRINUSE."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def leave_in_time_wait(port: int, timeout: float = 10.0) -> None:
    """Listen on 127.0.0.1:``port`` as a node does, take a connection, close the node's side first.

    The end that closes first keeps the connection in TIME_WAIT for a minute (2 MSL), as a
    node's sockets do after its session stops: no process listens on the port any more,
    but a bind without SO_REUSEADDR is refused. The listener sets SO_REUSEADDR, as libzmq
    and the console do (Linux lets a new SO_REUSEADDR bind past a TIME_WAIT connection
    only if that connection's listener had it too). Returns once the state is seen.
    """
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
        client = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        accepted, _ = server.accept()
    with client:
        accepted.close()  # the server's end closes first: it is the one left in TIME_WAIT
        assert client.recv(1) == b"", "expected the server's close"
    deadline = time.monotonic() + timeout
    while not in_time_wait(port):
        assert time.monotonic() < deadline, f"no TIME_WAIT on port {port} within {timeout} s"
        time.sleep(0.01)
