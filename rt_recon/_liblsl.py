"""liblsl's own logging, set before liblsl first initialises.

liblsl prints INFO lines to stderr unless configured otherwise, and reads
its configuration once, on first use. Importing :mod:`rt_recon.protocol`
(which every LSL user here does) calls :func:`quiet_liblsl` first. A user's
own ``LSLAPICFG`` file takes precedence.
"""

from __future__ import annotations

import contextlib
import os

import pylsl

_configured = False


def quiet_liblsl() -> None:
    """Keep liblsl's logger to warnings and errors (no effect after liblsl initialised)."""
    global _configured
    if _configured or os.environ.get("LSLAPICFG"):
        return
    _configured = True
    with contextlib.suppress(NotImplementedError):  # liblsl older than 1.17.7
        pylsl.set_config_content("[log]\nlevel = -2\n")
