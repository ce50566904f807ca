"""Tiny randomly initialised SD-format models, built in code (tests, and the skeleton demo).

The components mirror a Stable Diffusion directory (UNet2DConditionModel,
AutoencoderKL, a scheduler, CLIPTextModel and a tokenizer) at a size that
runs in milliseconds on a CPU. Seeded, so the same call gives the same model.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from rt_recon.render.tokenizer import build_word_tokenizer


def build_tiny_model(
    out_dir: str | Path,
    vocabulary: Iterable[str],
    seed: int = 0,
    image_size: int = 64,
    max_tokens: int = 16,
    cond_dim: int = 32,
    scheduler: str = "EulerDiscreteScheduler",
) -> Path:
    """Write a tiny random diffusers-format model to ``out_dir`` and return its path."""
    import diffusers
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=image_size,
    )
    unet = UNet2DConditionModel(
        sample_size=image_size // 4,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cond_dim,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    tokenizer = build_word_tokenizer(vocabulary, max_length=max_tokens)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=cond_dim,
            intermediate_size=2 * cond_dim,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=max_tokens,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    sched = getattr(diffusers, scheduler)(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="trailing",
    )
    vae.save_pretrained(out_dir / "vae")
    unet.save_pretrained(out_dir / "unet")
    text_encoder.save_pretrained(out_dir / "text_encoder")
    tokenizer.save_pretrained(out_dir / "tokenizer")
    sched.save_pretrained(out_dir / "scheduler")
    return out_dir
