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

Everything that does not depend on the TR (timesteps, noise, the noising
coefficients, scheduler state) is prepared once in ``__init__``.

Host synchronisation. A frame costs one host-to-device copy of ``z`` and ``c``
before the loop and one device-to-host copy of the picture after it
(:meth:`Img2ImgRenderer.render`); nothing inside the loop waits for the
device, with Euler (SD-Turbo's and the embedded model's scheduler):

- the timesteps stay on the device and the scheduler is reset by its step
  index alone (no ``set_timesteps`` per frame: its numpy work and two
  host-to-device copies happen once);
- noising is ``keep * z + noise_term``, both tensors computed once with the
  scheduler's own ``add_noise`` (``add_noise`` is linear in latents and noise),
  instead of an ``add_noise`` call that copies the sigma table to the device
  and indexes it with a Python list every frame;
- Euler's ``scale_model_input`` and ``step`` index ``self.sigmas``, which
  diffusers keeps on the CPU, with the Python ``step_index``, and compare
  ``sigma`` with ``s_tmin``/``s_tmax`` in Python: host-side tensor reads and
  branches, but on CPU tensors, so they never wait for the GPU; ``sigma`` then
  enters the CUDA arithmetic as a CPU scalar (no copy).

What remains: other schedulers are reset with ``set_timesteps`` every frame;
a scheduler without ``set_begin_index`` looks its first step up with
``nonzero().item()`` (a device sync); the ONNX backend synchronises around
every ONNX Runtime call (see ``onnx_backend``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable
from typing import Any

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from rt_recon.errors import ConfigError, ModelError, ShapeMismatchError
from rt_recon.render.model import RenderModel

log = logging.getLogger(__name__)

#: Schedulers whose only per-frame state is the step index (checked in diffusers' source:
#: ``step`` and ``scale_model_input`` change nothing else), so a frame can start by resetting
#: it instead of calling ``set_timesteps`` again.
_STEP_INDEX_ONLY = frozenset({"EulerDiscreteScheduler"})


class Img2ImgRenderer:
    """Renders one picture per call: ``render(z, c) -> (H, W, 3) uint8``.

    ``blend`` in [0, 1): latent blending between TRs (see :meth:`init_latents`).
    ``compile``: ``torch.compile`` the UNet and the decoder and warm them up
    here, so the first TR is as fast as the rest (see ``_compile``).
    """

    def __init__(
        self,
        model: RenderModel,
        steps: int,
        strength: float,
        seed: int = 0,
        blend: float = 0.0,
        compile: bool = False,
    ):
        if not 0.0 <= blend < 1.0:
            raise ConfigError(f"renderer.blend must be in [0, 1), found {blend!r}")
        self.model = model
        self.steps = steps
        self.strength = strength
        self.blend = float(blend)
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
        self._index_reset = type(self.scheduler).__name__ in _STEP_INDEX_ONLY
        generator = torch.Generator(device=model.device).manual_seed(seed)
        self.noise = randn_tensor(
            (1, *model.latent_shape), generator=generator, device=model.device, dtype=model.dtype
        )
        # add_noise(x, n, t) is a_t * x + b_t * n in every diffusers scheduler (Euler: a_t = 1,
        # b_t = sigma_t): keep a_t and b_t * noise, computed by add_noise itself, so a frame
        # needs no add_noise call and gets the same numbers.
        self._set_begin()
        zeros, first = torch.zeros_like(self.noise), self.timesteps[:1]
        self._keep = self.scheduler.add_noise(torch.ones_like(self.noise), zeros, first)
        self._noise_term = self.scheduler.add_noise(zeros, self.noise, first)
        self._previous: torch.Tensor | None = None  # the last init latent, for blending
        self._run_id: Hashable = None
        self._unet_fn: Any = model.unet
        self._decode_fn: Any = model.decoder.decode
        self._cudagraphs = False  # outputs live in CUDA-graph buffers reused by the next call
        self.compiled = False
        if compile:
            self._compile()

    @property
    def n_unet_calls(self) -> int:
        return len(self.timesteps)

    def _set_begin(self) -> None:
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(self._begin)

    def _reset_scheduler(self) -> None:
        if self._index_reset:
            self.scheduler._step_index = None  # all the state a frame leaves behind
        else:
            self.scheduler.set_timesteps(self.steps, device=self.model.device)
        self._set_begin()

    def reset(self) -> None:
        """Forget the previous TR's init latent (a new run: blending starts afresh)."""
        self._previous = None

    def init_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """The latent img2img starts from: ``(1 - blend) * z_t + blend * init_{t-1}``.

        ``latents``: the decoded ``z_t`` of this TR, scaled, ``(1, C, h, w)``. What
        is blended is the *clean* init latent, before the session's fixed noise
        is added: an exponential moving average of the decoded latents with a
        time constant of about ``1 / (1 - blend)`` TRs. Decoded latents jitter
        from TR to TR with measurement noise (one volume each); averaging them
        steadies the picture at the price of that much lag. The noise and the
        conditioning ``c`` are not blended (the noise is fixed anyway). The
        first TR of a run (after :meth:`reset`) starts from ``z_t`` alone.
        """
        if self.blend == 0.0:
            return latents
        if self._previous is not None:
            latents = (1.0 - self.blend) * latents + self.blend * self._previous
        self._previous = latents.clone()  # the caller may reuse its tensor
        return latents

    def _unet(self, sample: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """One UNet call: noise prediction ``(1, C, h, w)``."""
        if self._cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()  # the last output has been consumed
        if self.compiled:
            sample = sample.contiguous()  # one memory format: no recompile on strides
        return self._unet_fn(sample, t, encoder_hidden_states=cond, return_dict=False)[0]

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Unscaled latents ``(1, C, h, w)`` -> picture ``(1, 3, H, W)`` in [-1, 1]."""
        if self._cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        if self.compiled:
            latents = latents.contiguous()
        image = self._decode_fn(latents, return_dict=False)[0]
        # a CUDA-graph output is overwritten by the next frame: hand out a copy
        return image.clone() if self._cudagraphs else image

    def _compile(self) -> None:
        """Compile UNet and decoder (static shapes) and warm them up: a :class:`ModelError`
        here, at startup, if the toolchain is missing or compilation fails.

        ``fullgraph=True`` first; a graph break falls back to ``fullgraph=False``
        with a warning. On CUDA (CUDA graphs) the warm-up renders three frames:
        inductor's CUDA-graph trees run once eagerly, record on the second call
        and replay from the third.
        """
        from rt_recon.render._compile import check_toolchain, compile_network, describe_failure

        device = self.model.device
        check_toolchain(device)
        started = time.perf_counter()
        for fullgraph in (True, False):
            self._unet_fn = compile_network(self.model.unet, device, fullgraph)
            self._decode_fn = compile_network(self.model.decoder.decode, device, fullgraph)
            self.compiled = True
            self._cudagraphs = device.type == "cuda"
            try:
                self.warm_up(3 if self._cudagraphs else 1)
                break
            except torch._dynamo.exc.Unsupported as exc:
                if not fullgraph:
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
                raise ModelError(
                    f"renderer.compile: torch.compile of the UNet and decoder failed on "
                    f"{device} ({describe_failure(exc)}); fix the toolchain it names or set "
                    "renderer.compile: false"
                ) from exc
        log.info(
            "renderer.compile: UNet and decoder compiled (mode %s, fullgraph %s, static shapes) "
            "and warmed up in %.1f s",
            "reduce-overhead (CUDA graphs)" if self._cudagraphs else "default",
            fullgraph,
            time.perf_counter() - started,
        )

    def warm_up(self, frames: int = 1) -> None:
        """Render ``frames`` frames of zeros (kernels picked, graphs captured); the
        blending state is kept as it was."""
        m = self.model
        latents = torch.zeros(1, *m.latent_shape, device=m.device, dtype=m.dtype)
        cond = torch.zeros(1, *m.cond_shape, device=m.device, dtype=m.dtype)
        previous = self._previous
        for _ in range(frames):
            self.render_tensor(latents, cond)
        self._previous = previous

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

        The picture is in [-1, 1], as the VAE decodes it. With ``blend > 0`` the
        renderer remembers ``latents`` for the next call (:meth:`init_latents`).
        """
        latents = self.init_latents(latents)
        self._reset_scheduler()
        latents = latents * self._keep + self._noise_term  # = scheduler.add_noise(...)
        for t in self.timesteps:
            model_input = self.scheduler.scale_model_input(latents, t)
            noise_pred = self._unet(model_input, t, cond)
            latents = self.scheduler.step(noise_pred, t, latents, return_dict=False)[0]
        return self._decode(latents / self.model.decoder_scaling)

    def render(self, z: np.ndarray, c: np.ndarray, run_id: Hashable = None) -> np.ndarray:
        """Decoded ``z (C, h, w)`` and ``c (L, D)`` -> picture ``(H, W, 3)`` uint8.

        ``run_id`` (e.g. ``(session, run)``): blending restarts when it changes.
        """
        self.check(z, c)
        if run_id != self._run_id:
            self.reset()
            self._run_id = run_id
        m = self.model
        latents = torch.from_numpy(np.ascontiguousarray(z))[None].to(m.device, m.dtype)
        cond = torch.from_numpy(np.ascontiguousarray(c))[None].to(m.device, m.dtype)
        image = self.render_tensor(latents, cond)
        return to_uint8(image)[0]


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``(n, 3, H, W)`` in [-1, 1] -> ``(n, H, W, 3)`` uint8 (as diffusers' postprocess)."""
    image = (image.float() / 2 + 0.5).clamp(0, 1)
    return (image.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).cpu().numpy()
