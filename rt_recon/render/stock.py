"""The stock diffusers img2img pipeline around a loaded render model: the reference.

:class:`~rt_recon.render.img2img.Img2ImgRenderer` does exactly what
``StableDiffusionImg2ImgPipeline`` does with latents as the init image and
``prompt_embeds`` as the conditioning (tests/render/test_img2img.py proves the
frames equal); benchmarks time the pipeline beside it as the baseline a user
would otherwise call. Both build it here, so they build the same thing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rt_recon.render.model import RenderModel


def stock_pipeline(model: RenderModel, scheduler: Any = None, vae: Any = None) -> Any:
    """``StableDiffusionImg2ImgPipeline`` sharing ``model``'s UNet (no text encoder, no
    safety checker, progress bar off).

    ``scheduler``: default a fresh copy of the model's; ``vae``: default the model's VAE
    (pass ``model.tiny_decoder`` to decode with an AutoencoderTiny).
    """
    from diffusers import StableDiffusionImg2ImgPipeline

    if scheduler is None:
        scheduler = model.scheduler.__class__.from_config(model.scheduler.config)
    pipe = StableDiffusionImg2ImgPipeline(
        vae=model.vae if vae is None else vae,
        text_encoder=None,
        tokenizer=None,
        unet=model.unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def stock_frame(
    pipe: Any, z: np.ndarray, c: np.ndarray, steps: int, strength: float, seed: int
) -> np.ndarray:
    """One img2img frame as a user calls the pipeline: ``z (C, h, w)`` (scaled latents, taken
    as latents because they have the VAE's latent channels) and ``c (L, D)`` as
    ``prompt_embeds``, no guidance; ``(H, W, 3)`` float in [0, 1]."""
    return pipe(
        prompt_embeds=torch.from_numpy(c)[None],
        image=torch.from_numpy(z)[None],
        strength=strength,
        num_inference_steps=steps,
        guidance_scale=0.0,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    ).images[0]
