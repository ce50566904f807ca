"""Applications: what runs whole sessions, built from the nodes below them.

* ``demo``       ``rt-recon demo``: synthetic session, fit, live replay, score
* ``session``    ``rt-recon run``: a session's nodes, supervised (``preflight`` first)
* ``replay``     ``rt-recon replay``: a recording through new nodes, latents compared
* ``fit``        ``rt-recon fit``: decoders from a dataset's training runs
* ``fit_inputs`` what a fit reads, from a manifest dataset, a BIDS dataset (``fit_bids``),
  recordings or scanner series (``fit_recorded``); ``fit_sources`` picks one
* ``pipeline``   one replay source through recorder, renderer and decoder (demo, replay)

The entry points are re-exported here and imported on first use, so that
starting one application does not import the others (``rt-recon run`` needs
neither the evaluation nor the fit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rt_recon._lazy import lazy_exports

if TYPE_CHECKING:
    from rt_recon.apps.demo import run_demo
    from rt_recon.apps.fit import fit_dataset, fit_from_inputs
    from rt_recon.apps.pipeline import run_pipeline
    from rt_recon.apps.preflight import check_before_start
    from rt_recon.apps.replay import replay_recording
    from rt_recon.apps.session import run_session

#: Each re-exported name and the module that defines it.
_ENTRY_POINTS = {
    "run_demo": "demo",
    "run_session": "session",
    "check_before_start": "preflight",
    "replay_recording": "replay",
    "fit_dataset": "fit",
    "fit_from_inputs": "fit",
    "run_pipeline": "pipeline",
}

__all__ = [
    "check_before_start",
    "fit_dataset",
    "fit_from_inputs",
    "replay_recording",
    "run_demo",
    "run_pipeline",
    "run_session",
]


__getattr__, __dir__ = lazy_exports(__name__, _ENTRY_POINTS, __all__)
