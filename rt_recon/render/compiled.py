"""The torch.compile executor: UNet and latent decoder compiled by inductor, warmed up at startup.

Shapes never change within a session (one latent ``(1, C, h, w)``, one
conditioning ``(1, L, D)``), so both networks are compiled with
``dynamic=False`` and, where dynamo can trace them whole, ``fullgraph=True``
(a graph break falls back to ``fullgraph=False`` with a warning). On CUDA the
mode is ``"reduce-overhead"``: inductor captures each network in a CUDA
graph, so a UNet call is one graph launch instead of hundreds of kernel
launches. On a CPU it is the default mode (inductor's C++ kernels).

What the toolchain needs is checked when the executor is built, so a
missing compiler is a :class:`ModelError` at startup, not in a session; the
compilation itself happens in :meth:`TorchCompiledExecutor.prepare`, which
the renderer calls once with its warm-up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import torch

from rt_recon.errors import ModelError
from rt_recon.render.executor import WarmUp
from rt_recon.render.model import RenderModel

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


class TorchCompiledExecutor:
    """UNet and decoder through ``torch.compile`` (static shapes; CUDA graphs on CUDA).

    Building it checks the toolchain (:func:`check_toolchain`); :meth:`prepare`
    compiles and warms up. On CUDA every call starts a new CUDA-graph step
    (``torch.compiler.cudagraph_mark_step_begin``: the previous output has been
    consumed), and the picture is cloned out of the graph's output buffer,
    which the next frame overwrites; the UNet's noise prediction is consumed by
    the scheduler step before the next call, so it is not copied.
    """

    name = "torch compiled"

    def __init__(self, model: RenderModel):
        check_toolchain(model.device)
        self.model = model
        self.cudagraphs = model.device.type == "cuda"
        self.fullgraph: bool | None = None  # how it compiled; None until prepared
        self._unet_fn: Any = None
        self._decode_fn: Any = None

    def unet(self, sample: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        fn = self._ready(self._unet_fn)
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        sample = sample.contiguous()  # one memory format: no recompile on strides
        return fn(sample, t, encoder_hidden_states=cond, return_dict=False)[0]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        fn = self._ready(self._decode_fn)
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        image = fn(latents.contiguous(), return_dict=False)[0]
        return image.clone() if self.cudagraphs else image

    def _ready(self, fn: Any) -> Any:
        if fn is None:
            raise ModelError(
                "TorchCompiledExecutor has not been prepared: pass it to Img2ImgRenderer "
                "(executor=...), which compiles and warms it up, or call prepare(warm_up)"
            )
        return fn

    def prepare(self, warm_up: WarmUp) -> None:
        """Compile UNet and decoder and warm them up with ``warm_up``: a :class:`ModelError`
        here, at startup, if compilation fails.

        ``fullgraph=True`` first; a graph break falls back to ``fullgraph=False``
        with a warning. On CUDA the warm-up renders three frames: inductor's
        CUDA-graph trees run once eagerly, record on the second call and replay
        from the third. Prepared again (another renderer), it warms up only.
        """
        frames = 3 if self.cudagraphs else 1
        if self.fullgraph is not None:
            warm_up(frames)
            return
        device = self.model.device
        started = time.perf_counter()
        for fullgraph in (True, False):
            self._unet_fn = compile_network(self.model.unet, device, fullgraph)
            self._decode_fn = compile_network(self.model.decoder.decode, device, fullgraph)
            try:
                warm_up(frames)
                break
            except torch._dynamo.exc.Unsupported as exc:
                if not fullgraph:
                    self._unet_fn = self._decode_fn = None
                    raise ModelError(
                        f"renderer.compile: torch.compile cannot trace the render model "
                        f"({describe_failure(exc)}); set renderer.compile: false"
                    ) from exc
                log.warning(
                    "renderer.compile: the UNet or decoder does not trace as one graph (%s); "
                    "compiling with graph breaks",
                    describe_failure(exc),
                )
            except Exception as exc:
                self._unet_fn = self._decode_fn = None
                raise ModelError(
                    f"renderer.compile: torch.compile of the UNet and decoder failed on "
                    f"{device} ({describe_failure(exc)}); fix the toolchain it names or set "
                    "renderer.compile: false"
                ) from exc
        self.fullgraph = fullgraph
        log.info(
            "renderer.compile: UNet and decoder compiled (mode %s, fullgraph %s, static shapes) "
            "and warmed up in %.1f s",
            "reduce-overhead (CUDA graphs)" if self.cudagraphs else "default",
            fullgraph,
            time.perf_counter() - started,
        )
