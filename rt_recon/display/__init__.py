"""The web console and the participant display (``rt-recon console``).

Modules: ``state`` (messages -> what the operator sees, pure), ``timeline``
(markers -> the true stimulus per TR, pure), ``frames`` (the binary picture
message), ``hub`` (latest-only fan-out to pages), ``auth`` (loopback or token),
``assets`` (static files by name), ``pictures`` (a dataset's stimuli),
``feeds`` (ZeroMQ and LSL input threads), ``server`` (the ASGI app and
:func:`run_console`). docs/console.md describes the pages.
"""

from rt_recon.display.server import run_console

__all__ = ["run_console"]
