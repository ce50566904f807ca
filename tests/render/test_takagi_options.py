"""The Takagi & Nishimoto options of the renderer on the CPU: classifier-free guidance against
the empty caption and the round trip of z through the VAE, each checked against what it
must equal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rt_recon.config import SessionConfig
from rt_recon.errors import ConfigError
from rt_recon.render import Img2ImgRenderer, load_render_model, make_renderer
from rt_recon.render.targets import encode_captions


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_render_model(tiny_model_dir, with_text=True)


def _inputs(model, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=model.latent_shape).astype(np.float32),
        rng.normal(size=model.cond_shape).astype(np.float32),
    )


def test_guidance_against_c_itself_changes_nothing_and_against_another_c_does(model):
    z, c = _inputs(model, 0)
    plain = Img2ImgRenderer(model, steps=4, strength=0.75).render(z, c)
    same = Img2ImgRenderer(model, steps=4, strength=0.75, guidance_scale=5.0, uncond=c)
    assert same.n_unet_calls == 6  # 3 kept steps, two calls each
    np.testing.assert_allclose(same.render(z, c).astype(int), plain.astype(int), atol=1)
    empty = encode_captions(model, [""])[0]
    guided = Img2ImgRenderer(model, steps=4, strength=0.75, guidance_scale=5.0, uncond=empty)
    assert np.abs(guided.render(z, c).astype(int) - plain.astype(int)).max() > 5


def test_guidance_one_is_the_unguided_frame_and_guidance_needs_the_empty_caption(model):
    z, c = _inputs(model, 1)
    empty = encode_captions(model, [""])[0]
    one = Img2ImgRenderer(model, steps=4, strength=0.5, guidance_scale=1.0, uncond=empty)
    assert one.n_unet_calls == 2
    plain = Img2ImgRenderer(model, steps=4, strength=0.5)
    np.testing.assert_array_equal(one.render(z, c), plain.render(z, c))
    with pytest.raises(ConfigError, match="unconditional embedding"):
        Img2ImgRenderer(model, steps=4, strength=0.5, guidance_scale=3.0)
    with pytest.raises(ConfigError, match="guidance_scale must be >= 1"):
        Img2ImgRenderer(model, steps=4, strength=0.5, guidance_scale=0.5, uncond=empty)


def test_the_vae_round_trip_starts_from_the_picture_of_z(model):
    z, c = _inputs(model, 2)
    through = Img2ImgRenderer(model, steps=4, strength=0.5, vae_roundtrip=True)
    plain = Img2ImgRenderer(model, steps=4, strength=0.5)
    with torch.inference_mode():
        scaling = model.scaling_factor
        picture = model.vae.decode(torch.from_numpy(z)[None] / scaling).sample.clamp(-1, 1)
        z_again = (model.vae.encode(picture).latent_dist.mean * scaling)[0].numpy()
    assert np.abs(z_again - z).max() > 0.1  # the tiny VAE does not reproduce z
    np.testing.assert_allclose(
        through.render(z, c).astype(int), plain.render(z_again, c).astype(int), atol=1
    )


def test_the_factory_builds_the_takagi_preset_from_the_config(model):
    config = SessionConfig().with_overrides(
        {
            "renderer.steps": 12,
            "renderer.strength": 0.8,
            "renderer.guidance_scale": 3.0,
            "renderer.vae_roundtrip": True,
        }
    )
    renderer = make_renderer(model, config)
    assert renderer.n_unet_calls == 2 * 9 and renderer.vae_roundtrip
    z, c = _inputs(model, 3)
    assert renderer.render(z, c).shape == (model.image_size, model.image_size, 3)
    with pytest.raises(ConfigError, match="guidance_scale"):
        SessionConfig().with_overrides({"renderer.guidance_scale": 0.5})
