"""``torch.compile`` for the renderer's two networks (UNet, latent decoder).

Shapes never change within a session (one latent ``(1, C, h, w)``, one
conditioning ``(1, L, D)``), so both networks are compiled with
``dynamic=False`` and, where dynamo can trace them whole, ``fullgraph=True``.
On CUDA the mode is ``"reduce-overhead"``: inductor captures each network in
a CUDA graph, so a UNet call is one graph launch instead of hundreds of
kernel launches. On a CPU it is the default mode (inductor's C++ kernels).

What the toolchain needs is checked before anything is compiled, so a
missing compiler is a :class:`ModelError` at startup, not in a session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from rt_recon.errors import ModelError

log = logging.getLogger(__name__)

_NO_COMPILE = "or set renderer.compile: false to render eagerly"


def compile_mode(device: torch.device) -> str | None:
    """``"reduce-overhead"`` (CUDA graphs) on CUDA; ``None`` (inductor's default) elsewhere."""
    return "reduce-overhead" if device.type == "cuda" else None


def check_toolchain(device: torch.device) -> None:
    """Raise :class:`ModelError` unless ``torch.compile`` can build kernels for ``device``.

    CPU: inductor writes C++ and needs a working C++ compiler (``$CXX``, else
    ``g++``). CUDA: inductor writes Triton kernels and needs ``triton``.
    """
    if not hasattr(torch, "compile") or not torch._dynamo.is_dynamo_supported():
        raise ModelError(
            f"renderer.compile needs torch.compile, which torch {torch.__version__} does not "
            f"support on this Python; use a torch/Python pair it supports {_NO_COMPILE}"
        )
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            raise ModelError(
                "renderer.compile on cuda needs Triton (inductor's GPU kernels), but triton "
                f"is not importable; install the triton that matches torch {torch.__version__} "
                f"(pip install triton) {_NO_COMPILE}"
            )
    elif device.type == "cpu":
        try:
            from torch._inductor.cpp_builder import get_cpp_compiler
        except ImportError:  # torch moved its internals: the warm-up compile will tell
            return
        try:
            get_cpp_compiler()
        except Exception as exc:
            raise ModelError(
                "renderer.compile on the CPU needs a C++ compiler for inductor's kernels "
                f"(it tries $CXX, else g++), but none runs here ({type(exc).__name__}); "
                f"install one (e.g. apt-get install g++) {_NO_COMPILE}"
            ) from None


def compile_network(fn: Callable[..., Any], device: torch.device, fullgraph: bool) -> Any:
    """``torch.compile(fn)`` with static shapes, in :func:`compile_mode` for ``device``."""
    return torch.compile(fn, mode=compile_mode(device), fullgraph=fullgraph, dynamic=False)


def describe_failure(exc: BaseException) -> str:
    """The exception's type and first line (inductor errors run to pages)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
