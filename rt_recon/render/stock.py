"""The stock diffusers img2img pipeline around a loaded render model: the reference.

:class:`~rt_recon.render.img2img.Img2ImgRenderer` does exactly what
``StableDiffusionImg2ImgPipeline`` does with latents as the init image and
``prompt_embeds`` as the conditioning (tests/render/test_img2img.py proves the
frames equal); benchmarks time the pipeline beside it as the baseline a user
would otherwise call. Both build it here, so they build the same thing.
"""

from __future__ import annotations

from typing import Any

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
