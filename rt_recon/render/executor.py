"""Network executors: what runs the render model's two networks for the img2img renderer.

:class:`~rt_recon.render.img2img.Img2ImgRenderer` owns the scheduler math;
an executor owns how the UNet and the latent decoder run. Three implement
:class:`NetworkExecutor`: :class:`TorchEagerExecutor` (here, the reference),
:class:`~rt_recon.render.compiled.TorchCompiledExecutor` (``torch.compile``,
CUDA graphs on CUDA) and :class:`~rt_recon.render.onnx_backend.OnnxExecutor`
(ONNX Runtime). Any object with the same four members works too; to change
one call of another executor (a delay, a counter), subclass
:class:`ExecutorWrapper` and override that call.

Shapes, with the model's ``latent_shape (C, h, w)``, ``cond_shape (L, D)``
and ``image_size`` ``S``: the UNet takes a latent ``(1, C, h, w)``, a 0-d
timestep tensor from the scheduler's ``timesteps`` and a conditioning
``(1, L, D)`` and returns the noise prediction ``(1, C, h, w)``; the decoder
takes unscaled latents ``(1, C, h, w)`` and returns a picture
``(1, 3, S, S)`` in [-1, 1]. Tensors stay on the model's device and dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch

from rt_recon.render.model import RenderModel

#: ``warm_up(frames)``: render ``frames`` frames of zeros through the executor being prepared.
WarmUp = Callable[[int], None]


@runtime_checkable
class NetworkExecutor(Protocol):
    """Runs the UNet and the latent decoder of one render model."""

    @property
    def name(self) -> str:
        """A short label for logs and benchmark tables (``"torch eager"``)."""
        ...

    def unet(self, sample: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Noise prediction ``(1, C, h, w)`` for ``sample (1, C, h, w)`` at timestep ``t`` (0-d)
        given ``cond (1, L, D)``."""
        ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Unscaled latents ``(1, C, h, w)`` -> picture ``(1, 3, S, S)`` in [-1, 1]."""
        ...

    def prepare(self, warm_up: WarmUp) -> None:
        """Called by the renderer once its scheduler and noise are set up, before any frame.

        ``warm_up(n)`` renders ``n`` frames of zeros through this executor (the
        renderer's blending state is kept): an executor that compiles does it
        here, so the first TR is as fast as the rest and a failure is raised
        at startup. Others do nothing.
        """
        ...


class TorchEagerExecutor:
    """The networks as plain torch modules: the reference every other executor matches.

    The UNet and the decoder are taken from ``model`` when this is built
    (``model.decoder``: the tiny autoencoder if one is loaded, else the VAE).
    """

    name = "torch eager"

    def __init__(self, model: RenderModel):
        self.model = model
        self._unet: Any = model.unet
        self._decoder: Any = model.decoder

    def unet(self, sample: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self._unet(sample, t, encoder_hidden_states=cond, return_dict=False)[0]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self._decoder.decode(latents, return_dict=False)[0]

    def prepare(self, warm_up: WarmUp) -> None:
        return None


class ExecutorWrapper:
    """Forwards every member to ``inner``; subclass it and override what you change.

    For example a delay before each UNet call (a slow renderer in a test)::

        class Slow(ExecutorWrapper):
            def unet(self, sample, t, cond):
                time.sleep(1.0)
                return super().unet(sample, t, cond)
    """

    def __init__(self, inner: NetworkExecutor):
        self.inner = inner

    @property
    def name(self) -> str:
        return self.inner.name

    def unet(self, sample: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.inner.unet(sample, t, cond)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.inner.decode(latents)

    def prepare(self, warm_up: WarmUp) -> None:
        self.inner.prepare(warm_up)
