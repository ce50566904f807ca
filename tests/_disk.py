"""A real full disk and a real file size limit, for the write-failure tests.

``small_tmpfs`` mounts a tmpfs of a few hundred KB (ENOSPC once it is full) and
skips the test, saying why, where mounting is not permitted. ``file_size_limit``
is a ``preexec_fn`` for a subprocess: RLIMIT_FSIZE with SIGXFSZ ignored, so a
write past the limit fails with EFBIG instead of killing the process.
"""

from __future__ import annotations

import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``mount -o size=``, e.g. ``"600k"``) at ``mount_point``."""
    mount_point.mkdir(parents=True, exist_ok=True)
    if not sys.platform.startswith("linux") or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs Linux and mount(8)")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        reason = mounted.stderr.strip() or f"exit code {mounted.returncode}"
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {reason}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, check=False)


def file_size_limit(max_bytes: int) -> Callable[[], None]:
    """A ``preexec_fn``: no file of the child may grow past ``max_bytes`` (writes get EFBIG)."""

    def limit() -> None:  # runs in the child, between fork and exec
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # ignored signals stay ignored across exec
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, resource.RLIM_INFINITY))

    return limit
