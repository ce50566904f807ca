"""Few-step img2img from a decoded latent ``z`` conditioned on a decoded embedding ``c``.

The math is exactly that of diffusers' ``StableDiffusionImg2ImgPipeline``
with latents as the init image and ``prompt_embeds`` as the conditioning
(Takagi & Nishimoto 2023: z from early visual cortex, c from higher visual
cortex); by default without classifier-free guidance (SD-Turbo-style):

1. timesteps: ``set_timesteps(steps)``, keep the last ``int(steps * strength)``;
2. noise ``z`` to the first kept timestep with a noise tensor fixed for the
   whole session (seeded once, so consecutive TRs differ only where the
   decoded latents differ);
3. for each timestep: ``scale_model_input`` -> UNet -> ``scheduler.step``;
4. VAE-decode ``latents / scaling_factor`` to pixels.

Two options bring it to Takagi & Nishimoto's own img2img (their strength 0.8,
many steps, guidance): ``guidance_scale > 1`` runs the UNet twice per step, on
``c`` and on the unconditional embedding (the text encoder's empty caption),
and steps with ``uncond + g * (cond - uncond)``; ``vae_roundtrip`` first
decodes the decoded ``z`` to a picture and encodes that picture back, as
their pipeline starts from the picture decoded from ``z``.

:class:`Img2ImgRenderer` owns that scheduler math; a
:class:`~rt_recon.render.executor.NetworkExecutor` passed to it runs the
two networks (torch eager by default, torch compiled, or ONNX Runtime).
Everything that does not depend on the TR (timesteps, noise, the noising
coefficients, the scheduler's setup) is prepared once in ``__init__``. The
scheduler is used through its public API only (``set_timesteps``,
``set_begin_index``, ``add_noise``, ``scale_model_input``, ``step``).

Host synchronisation. A frame costs one host-to-device copy of ``z`` and ``c``
before the loop and one device-to-host copy of the picture after it
(:meth:`Img2ImgRenderer.render`); nothing inside the loop waits for the
device, with Euler (SD-Turbo's and the embedded model's scheduler) and a
torch executor:

- the scheduler is prepared once (``set_timesteps``, ``set_begin_index``;
  the timesteps stay on the device) and each frame steps a shallow copy of
  it (no ``set_timesteps`` per frame: its numpy work and two host-to-device
  copies happen once; a copy is a Python dict copy);
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
``nonzero().item()`` (a device sync); the ONNX executor synchronises around
every ONNX Runtime call (see ``onnx_backend``).
"""

from __future__ import annotations

import copy
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from rt_recon.errors import ConfigError, ShapeMismatchError
from rt_recon.render.executor import NetworkExecutor, TorchEagerExecutor
from rt_recon.render.model import RenderModel

#: Schedulers a frame may step as a shallow copy of the one prepared once. Checked in
#: diffusers' source (0.42): EulerDiscreteScheduler's ``scale_model_input`` and ``step``
#: only rebind attributes on the instance (``_step_index``, set from ``begin_index`` on the
#: first call and advanced by each ``step``; ``is_scale_input_called``) and never write
#: into a tensor or container it holds (``sigmas`` and ``timesteps`` are only read; results
#: are new tensors). So copies can share the prepared tensors, and a frame never changes
#: the prepared scheduler. Others are set up again every frame (some keep state in lists
#: they mutate in place, e.g. DPMSolverMultistep's ``model_outputs``, which a shallow copy
#: would share).
_COPY_PER_FRAME = frozenset({"EulerDiscreteScheduler"})


def kept_steps(steps: int, strength: float) -> int:
    """UNet calls of a frame, as the img2img pipeline counts them: ``int(steps * strength)``."""
    return min(int(steps * strength), steps)


def check_settings(steps: int, strength: float, blend: float) -> None:
    """Raise :class:`ConfigError` unless the settings give a frame at least one step and
    ``blend`` is in [0, 1) (before anything costly, e.g. an executor's export, is built)."""
    if not 0.0 <= blend < 1.0:
        raise ConfigError(f"renderer.blend must be in [0, 1), found {blend!r}")
    if kept_steps(steps, strength) < 1:
        raise ConfigError(
            f"renderer: steps * strength must reach at least one step, found "
            f"{steps} * {strength} -> {steps * strength:g}"
        )


class Img2ImgRenderer:
    """Renders one picture per call: ``render(z, c) -> (H, W, 3) uint8``.

    ``steps``, ``strength``: the img2img pipeline's ``num_inference_steps`` and
    ``strength`` (``int(steps * strength)`` UNet calls per frame). ``seed``:
    of the session's fixed noise. ``blend`` in [0, 1): latent blending between
    TRs (see :meth:`init_latents`). ``executor``: what runs the UNet and the
    decoder (default :class:`~rt_recon.render.executor.TorchEagerExecutor`);
    it is prepared here (a compiling executor compiles and warms up, so the
    first TR is as fast as the rest).
    """

    def __init__(
        self,
        model: RenderModel,
        steps: int,
        strength: float,
        seed: int = 0,
        blend: float = 0.0,
        *,
        executor: NetworkExecutor | None = None,
        guidance_scale: float = 1.0,
        uncond: np.ndarray | None = None,
        vae_roundtrip: bool = False,
    ):
        check_settings(steps, strength, blend)
        if guidance_scale < 1.0:
            raise ConfigError(f"renderer.guidance_scale must be >= 1, found {guidance_scale!r}")
        if guidance_scale > 1.0 and uncond is None:
            raise ConfigError(
                "classifier-free guidance needs the unconditional embedding (the text "
                "encoder's empty caption): load the model with its text encoder"
            )
        self.model = model
        self.guidance_scale = float(guidance_scale)
        self.vae_roundtrip = vae_roundtrip
        self._uncond = (
            None
            if uncond is None or guidance_scale == 1.0
            else torch.from_numpy(np.ascontiguousarray(uncond))[None].to(model.device, model.dtype)
        )
        if self._uncond is not None and tuple(self._uncond.shape[1:]) != model.cond_shape:
            raise ShapeMismatchError(
                f"unconditional embedding has shape {tuple(self._uncond.shape[1:])}, "
                f"the model needs {model.cond_shape}"
            )
        self.executor: NetworkExecutor = (
            executor if executor is not None else TorchEagerExecutor(model)
        )
        self.steps = steps
        self.strength = strength
        self.blend = float(blend)
        #: The scheduler prepared once; frames step copies of it (or reset it, see
        #: :data:`_COPY_PER_FRAME`).
        self.scheduler: Any = model.scheduler.__class__.from_config(model.scheduler.config)
        self.scheduler.set_timesteps(steps, device=model.device)
        self._begin = (steps - kept_steps(steps, strength)) * self.scheduler.order
        self.timesteps = self.scheduler.timesteps[self._begin :]
        self._copy_per_frame = type(self.scheduler).__name__ in _COPY_PER_FRAME
        self._set_begin(self.scheduler)
        generator = torch.Generator(device=model.device).manual_seed(seed)
        self.noise = randn_tensor(
            (1, *model.latent_shape), generator=generator, device=model.device, dtype=model.dtype
        )
        # add_noise(x, n, t) is a_t * x + b_t * n in every diffusers scheduler (Euler: a_t = 1,
        # b_t = sigma_t): keep a_t and b_t * noise, computed by add_noise itself, so a frame
        # needs no add_noise call and gets the same numbers.
        zeros, first = torch.zeros_like(self.noise), self.timesteps[:1]
        self._keep = self.scheduler.add_noise(torch.ones_like(self.noise), zeros, first)
        self._noise_term = self.scheduler.add_noise(zeros, self.noise, first)
        self._previous: torch.Tensor | None = None  # the last init latent, for blending
        self._run_id: Hashable = None
        #: Where the last :meth:`render` started from (None before the first, and after a
        #: warm-up or a new run's reset): one end of :meth:`render_between`.
        self.last_start: StartPoint | None = None
        self.executor.prepare(self.warm_up)

    @property
    def n_unet_calls(self) -> int:
        return len(self.timesteps) * (2 if self._uncond is not None else 1)

    def roundtrip(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> the VAE's picture of them -> that picture encoded again (the
        posterior mean), scaled: what an img2img pipeline fed the picture would start from."""
        vae, scaling = self.model.vae, self.model.scaling_factor
        picture = vae.decode(latents / scaling).sample.clamp(-1, 1)
        return vae.encode(picture).latent_dist.mean * scaling

    def _set_begin(self, scheduler: Any) -> None:
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(self._begin)

    def _frame_scheduler(self) -> Any:
        """A scheduler at the first kept timestep, for one frame to step through.

        Euler: a shallow copy of :attr:`scheduler` (what a frame changes, the
        step index, is rebound on the copy; the tensors are shared and only
        read). Other schedulers: :attr:`scheduler` itself, set up again with
        ``set_timesteps`` and ``set_begin_index``, as the pipeline does per call.
        """
        if self._copy_per_frame:
            return copy.copy(self.scheduler)
        self.scheduler.set_timesteps(self.steps, device=self.model.device)
        self._set_begin(self.scheduler)
        return self.scheduler

    def reset(self) -> None:
        """Forget the previous TR's init latent (a new run: blending starts afresh)."""
        self._previous = None
        self.last_start = None

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

    def warm_up(self, frames: int = 1) -> None:
        """Render ``frames`` frames of zeros (kernels picked, graphs captured); the
        blending state is kept as it was."""
        m = self.model
        latents = torch.zeros(1, *m.latent_shape, device=m.device, dtype=m.dtype)
        cond = torch.zeros(1, *m.cond_shape, device=m.device, dtype=m.dtype)
        previous, last = self._previous, self.last_start
        for _ in range(frames):
            self.render_tensor(latents, cond)
        self._previous, self.last_start = previous, last

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
        renderer remembers ``latents`` for the next call (:meth:`init_latents`); it
        remembers where the frame started from as :attr:`last_start`.
        """
        if self.vae_roundtrip:
            latents = self.roundtrip(latents)
        start = StartPoint(self.init_latents(latents), cond)
        self.last_start = start.detached()
        return self.denoise(start)

    @torch.inference_mode()
    def render_between(self, a: StartPoint, b: StartPoint, t: float) -> np.ndarray:
        """The picture ``(H, W, 3)`` uint8 from the start point a fraction ``t`` of the way
        from ``a`` to ``b`` (two frames' :attr:`last_start`): ``t = 0`` is ``a``'s frame,
        ``t = 1`` is ``b``'s. The init latent and ``c`` go linearly (:meth:`StartPoint.lerp`);
        the session's noise is fixed, so it is the same at both ends and needs no slerp.
        Neither blending nor :attr:`last_start` changes."""
        return to_uint8(self.denoise(a.lerp(b, t)))[0]

    def denoise(self, start: StartPoint) -> torch.Tensor:
        """One frame's diffusion from ``start`` (the session's noise added) -> ``(1, 3, H, W)``
        in [-1, 1]: what every frame shares after its start point is chosen."""
        cond = start.cond
        scheduler = self._frame_scheduler()
        latents = start.latents * self._keep + self._noise_term  # = scheduler.add_noise(...)
        for t in self.timesteps:
            model_input = scheduler.scale_model_input(latents, t)
            noise_pred = self.executor.unet(model_input, t, cond)
            if self._uncond is not None:  # classifier-free guidance
                uncond_pred = self.executor.unet(model_input, t, self._uncond)
                noise_pred = uncond_pred + self.guidance_scale * (noise_pred - uncond_pred)
            latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]
        return self.executor.decode(latents / self.model.decoder_scaling)

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


@dataclass(frozen=True)
class StartPoint:
    """Where a frame's diffusion starts: ``latents``, the clean init latent (scaled, after
    the VAE round trip and blending, before the session's noise) ``(1, C, h, w)``, and
    ``cond``, the conditioning ``(1, L, D)``; on the model's device."""

    latents: torch.Tensor
    cond: torch.Tensor

    def detached(self) -> StartPoint:
        """A copy that owns its tensors (the caller's may be reused or freed)."""
        return StartPoint(self.latents.detach().clone(), self.cond.detach().clone())

    def lerp(self, other: StartPoint, t: float) -> StartPoint:
        """``(1 - t) * self + t * other``, latents and conditioning alike (written out, not
        ``torch.lerp``: so ``t = 0.5`` is exactly the two ends' mean, ``t = 1`` ``other``)."""
        return StartPoint(
            (1.0 - t) * self.latents + t * other.latents, (1.0 - t) * self.cond + t * other.cond
        )


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``(n, 3, H, W)`` in [-1, 1] -> ``(n, H, W, 3)`` uint8 (as diffusers' postprocess)."""
    image = (image.float() / 2 + 0.5).clamp(0, 1)
    return (image.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).cpu().numpy()
