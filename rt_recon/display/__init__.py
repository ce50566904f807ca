"""The web console and the participant display (``rt-recon console``).

Modules: ``state`` (typed messages -> what the operator sees, pure), ``timeline``
(markers and the frames' volumes -> the stimulus per TR by the protocol's trial rule,
pure), ``messages`` (the typed messages the pages get, and their JSON schema
``static/schema.json``), ``frames`` (the binary picture message), ``hub`` (latest-only
fan-out to pages), ``auth`` (loopback or token), ``assets`` (static files by name),
``pictures`` (a dataset's stimuli), ``feeds`` (ZeroMQ and LSL input threads, validating
every message), ``design`` (a training run's design from a stimulus set; pure),
``presenter`` (plays it with the participant page and sends its markers), ``trigger`` (the
scanner's first volume), ``server`` (the ASGI app and :func:`run_console`). docs/console.md
describes the pages.

:func:`run_console` is imported on first use, so ``python -m rt_recon.display.messages``
(which rewrites the schema) does not start with the server's imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rt_recon._lazy import lazy_exports

if TYPE_CHECKING:
    from rt_recon.display.server import run_console

__all__ = ["run_console"]

__getattr__, __dir__ = lazy_exports(__name__, {"run_console": "server"}, __all__)
