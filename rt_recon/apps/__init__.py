"""Applications: what runs whole sessions, built from the nodes below them.

* ``demo``       ``rt-recon demo``: synthetic session, fit, live replay, score
* ``session``    ``rt-recon run``: a session's nodes, supervised (``preflight`` first)
* ``replay``     ``rt-recon replay``: a recording through new nodes, latents compared
* ``fit``        ``rt-recon fit``: decoders from a dataset's training runs
* ``pipeline``   one replay source through recorder, renderer and decoder (demo, replay)

The entry points are re-exported here and imported on first use, so that
starting one application does not import the others (``rt-recon run`` needs
neither the evaluation nor the fit).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rt_recon.apps.demo import run_demo
    from rt_recon.apps.fit import fit_dataset
    from rt_recon.apps.pipeline import run_pipeline
    from rt_recon.apps.preflight import preflight
    from rt_recon.apps.replay import replay_recording
    from rt_recon.apps.session import run_session

#: Each re-exported name and the module that defines it.
_ENTRY_POINTS = {
    "run_demo": "rt_recon.apps.demo",
    "run_session": "rt_recon.apps.session",
    "preflight": "rt_recon.apps.preflight",
    "replay_recording": "rt_recon.apps.replay",
    "fit_dataset": "rt_recon.apps.fit",
    "run_pipeline": "rt_recon.apps.pipeline",
}

__all__ = [
    "fit_dataset",
    "preflight",
    "replay_recording",
    "run_demo",
    "run_pipeline",
    "run_session",
]


def __getattr__(name: str) -> Any:
    module = _ENTRY_POINTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rt_recon.apps' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
