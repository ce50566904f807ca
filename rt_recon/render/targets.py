"""Decoder targets: what ``z`` and ``c`` are for a given picture and caption.

``z`` is the VAE latent of the picture (the posterior mean, multiplied by
the VAE's ``scaling_factor``: ready to be the renderer's init latents);
``c`` is the text encoder's last hidden state for the caption (the
renderer's ``prompt_embeds``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from rt_recon.errors import ModelError
from rt_recon.render.model import RenderModel


def _to_model_pixels(images: np.ndarray, size: int) -> torch.Tensor:
    """``(n, H, W, 3)`` uint8 -> ``(n, 3, size, size)`` float in [-1, 1]."""
    if images.shape[1:3] != (size, size):
        images = np.stack(
            [
                np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BICUBIC))
                for im in images
            ]
        )
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return pixels


@torch.inference_mode()
def encode_images(model: RenderModel, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """``(n, H, W, 3)`` uint8 pictures -> ``z`` targets ``(n, C, h, w)`` float32."""
    out = []
    for start in range(0, len(images), batch_size):
        pixels = _to_model_pixels(images[start : start + batch_size], model.image_size)
        encoded = model.vae.encode(pixels.to(model.device, model.dtype))
        dist = getattr(encoded, "latent_dist", None)
        latents = dist.mean if dist is not None else encoded.latents
        out.append((latents * model.scaling_factor).float().cpu().numpy())
    return np.concatenate(out)


@torch.inference_mode()
def encode_captions(
    model: RenderModel, captions: Sequence[str], batch_size: int = 64
) -> np.ndarray:
    """Captions -> ``c`` targets ``(n, L, D)`` float32 (text encoder last hidden state)."""
    if model.text_encoder is None or model.tokenizer is None:
        raise ModelError(
            f"{model.path}: computing c targets needs text_encoder/ and tokenizer/; "
            "load the model with with_text=True"
        )
    out = []
    for start in range(0, len(captions), batch_size):
        tokens = model.tokenizer(
            list(captions[start : start + batch_size]),
            padding="max_length",
            max_length=model.cond_shape[0],
            truncation=True,
            return_tensors="pt",
        )
        hidden = model.text_encoder(tokens.input_ids.to(model.device)).last_hidden_state
        out.append(hidden.float().cpu().numpy())
    return np.concatenate(out)


def empty_caption(model: RenderModel) -> np.ndarray:
    """The empty caption's ``c`` ``(L, D)``: the unconditional embedding classifier-free
    guidance steers away from (Takagi & Nishimoto's ``get_learned_conditioning([""])``)."""
    return encode_captions(model, [""])[0]
