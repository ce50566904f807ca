"""The node processes and what runs them.

One contract (:class:`Node`: prepare / open / step / close, with heartbeat
counters) and one runner (:func:`run_node`: the node's publisher, heartbeats
from a timer, the subscriber wait, cleanup) for the decoder
(:class:`DecoderNode`), renderer (:class:`RendererNode`) and recorder
(:class:`RecorderNode`); the replay source (``replay``); the
:class:`Supervisor` that starts nodes as child processes; and what a
process needs around them (:func:`stop_on_signals`, :class:`ReadyWatcher`).

The node classes are imported on first use, so ``import rt_recon.nodes`` does
not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rt_recon._lazy import lazy_exports

if TYPE_CHECKING:
    from rt_recon.nodes.decoder import DecoderNode, run_decoder
    from rt_recon.nodes.ready import ReadyWatcher
    from rt_recon.nodes.recorder import RecorderNode, run_recorder
    from rt_recon.nodes.renderer import RendererNode, frames_dir, run_renderer
    from rt_recon.nodes.runner import Node, NodeContext, Stopped, run_node
    from rt_recon.nodes.signals import stop_on_signals
    from rt_recon.nodes.supervisor import NODE_COMMANDS, Child, ChildExitedError, Supervisor

_SOURCES = {
    "DecoderNode": "decoder",
    "run_decoder": "decoder",
    "ReadyWatcher": "ready",
    "RecorderNode": "recorder",
    "run_recorder": "recorder",
    "RendererNode": "renderer",
    "frames_dir": "renderer",
    "run_renderer": "renderer",
    "Node": "runner",
    "NodeContext": "runner",
    "Stopped": "runner",
    "run_node": "runner",
    "stop_on_signals": "signals",
    "NODE_COMMANDS": "supervisor",
    "Child": "supervisor",
    "ChildExitedError": "supervisor",
    "Supervisor": "supervisor",
}

__all__ = [
    "NODE_COMMANDS",
    "Child",
    "ChildExitedError",
    "DecoderNode",
    "Node",
    "NodeContext",
    "ReadyWatcher",
    "RecorderNode",
    "RendererNode",
    "Stopped",
    "Supervisor",
    "frames_dir",
    "run_decoder",
    "run_node",
    "run_recorder",
    "run_renderer",
    "stop_on_signals",
]


__getattr__, __dir__ = lazy_exports(__name__, _SOURCES, __all__)
