"""Few-step img2img from a decoded latent ``z`` conditioned on a decoded embedding ``c``.

The math is exactly that of diffusers' ``StableDiffusionImg2ImgPipeline``
with latents as the init image and ``prompt_embeds`` as the conditioning
(Takagi & Nishimoto 2023: z from early visual cortex, c from higher visual
cortex), without classifier-free guidance (SD-Turbo-style):

1. timesteps: ``set_timesteps(steps)``, keep the last ``int(steps * strength)``;
2. noise ``z`` to the first kept timestep with a noise tensor fixed for the
   whole session (seeded once, so consecutive TRs differ only where the
   decoded latents differ);
3. for each timestep: ``scale_model_input`` -> UNet -> ``scheduler.step``;
4. VAE-decode ``latents / scaling_factor`` to pixels.

Everything that does not depend on the TR (timesteps, noise, scheduler
state) is prepared once in ``__init__``.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from rt_recon.errors import ConfigError, ShapeMismatchError
from rt_recon.render.model import RenderModel


class Img2ImgRenderer:
    """Renders one picture per call: ``render(z, c) -> (H, W, 3) uint8``."""

    def __init__(self, model: RenderModel, steps: int, strength: float, seed: int = 0):
        self.model = model
        self.steps = steps
        self.strength = strength
        self.scheduler = model.scheduler.__class__.from_config(model.scheduler.config)
        self.scheduler.set_timesteps(steps, device=model.device)
        kept = min(int(steps * strength), steps)
        if kept < 1:
            raise ConfigError(
                f"renderer: steps * strength must reach at least one step, found "
                f"{steps} * {strength} -> {steps * strength:g}"
            )
        self._begin = (steps - kept) * self.scheduler.order
        self.timesteps = self.scheduler.timesteps[self._begin :]
        generator = torch.Generator(device=model.device).manual_seed(seed)
        self.noise = randn_tensor(
            (1, *model.latent_shape), generator=generator, device=model.device, dtype=model.dtype
        )

    @property
    def n_unet_calls(self) -> int:
        return len(self.timesteps)

    def _reset_scheduler(self) -> None:
        self.scheduler.set_timesteps(self.steps, device=self.model.device)
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(self._begin)

    def check(self, z: np.ndarray, c: np.ndarray) -> None:
        """Raise ShapeMismatchError unless ``z`` and ``c`` fit the model and are finite."""
        m = self.model
        if tuple(z.shape) != m.latent_shape:
            raise ShapeMismatchError(
                f"latent z has shape {tuple(z.shape)}, the model needs {m.latent_shape}"
            )
        if tuple(c.shape) != m.cond_shape:
            raise ShapeMismatchError(
                f"conditioning c has shape {tuple(c.shape)}, the model needs {m.cond_shape}"
            )
        for name, arr in (("z", z), ("c", c)):
            if not np.issubdtype(arr.dtype, np.floating):
                raise ShapeMismatchError(f"{name} has dtype {arr.dtype}, expected a float dtype")
            if not np.isfinite(arr).all():
                raise ShapeMismatchError(f"{name} contains NaN or Inf values")

    @torch.inference_mode()
    def render_tensor(self, latents: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Scaled latents ``(1, C, h, w)`` and embeddings ``(1, L, D)`` -> ``(1, 3, H, W)``.

        The picture is in [-1, 1], as the VAE decodes it.
        """
        m = self.model
        self._reset_scheduler()
        latents = self.scheduler.add_noise(latents, self.noise, self.timesteps[:1])
        for t in self.timesteps:
            model_input = self.scheduler.scale_model_input(latents, t)
            noise_pred = m.unet(model_input, t, encoder_hidden_states=cond, return_dict=False)[0]
            latents = self.scheduler.step(noise_pred, t, latents, return_dict=False)[0]
        return m.decoder.decode(latents / m.decoder_scaling, return_dict=False)[0]

    def render(self, z: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Decoded ``z (C, h, w)`` and ``c (L, D)`` -> picture ``(H, W, 3)`` uint8."""
        self.check(z, c)
        m = self.model
        latents = torch.from_numpy(np.ascontiguousarray(z))[None].to(m.device, m.dtype)
        cond = torch.from_numpy(np.ascontiguousarray(c))[None].to(m.device, m.dtype)
        image = self.render_tensor(latents, cond)
        return to_uint8(image)[0]


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``(n, 3, H, W)`` in [-1, 1] -> ``(n, H, W, 3)`` uint8 (as diffusers' postprocess)."""
    image = (image.float() / 2 + 0.5).clamp(0, 1)
    return (image.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).cpu().numpy()
