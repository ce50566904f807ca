"""The renderer (torch eager executor) against diffusers' own img2img pipeline, on a tiny
random model."""

import shutil

import numpy as np
import pytest
import torch

from rt_recon.errors import ConfigError, ModelError, ShapeMismatchError
from rt_recon.render import (
    Img2ImgRenderer,
    TorchEagerExecutor,
    check_model_dir,
    load_render_model,
    model_fingerprint,
)
from rt_recon.render.stock import stock_frame, stock_pipeline


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_render_model(tiny_model_dir)


@pytest.mark.parametrize(("steps", "strength"), [(4, 0.75), (2, 0.5), (1, 1.0)])
def test_frame_equals_stock_img2img_pipeline(model, steps, strength):
    rng = np.random.default_rng(0)
    z = rng.normal(size=model.latent_shape).astype(np.float32)
    c = rng.normal(size=model.cond_shape).astype(np.float32)
    pipe = stock_pipeline(model)
    expected = stock_frame(pipe, z, c, steps, strength, 11)
    renderer = Img2ImgRenderer(
        model, steps=steps, strength=strength, seed=11, executor=TorchEagerExecutor(model)
    )
    with torch.inference_mode():
        ours = renderer.render_tensor(torch.from_numpy(z)[None], torch.from_numpy(c)[None])
    ours = (ours / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)[0].numpy()
    assert ours.shape == expected.shape == (model.image_size, model.image_size, 3)
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    frame = renderer.render(z, c)
    assert frame.dtype == np.uint8
    np.testing.assert_array_equal(frame, np.round(expected * 255).astype(np.uint8))


def test_same_latents_give_the_same_frame_and_different_latents_differ(model):
    renderer = Img2ImgRenderer(model, steps=2, strength=0.5, seed=0)
    rng = np.random.default_rng(1)
    z = rng.normal(size=model.latent_shape).astype(np.float32)
    c = rng.normal(size=model.cond_shape).astype(np.float32)
    first, second = renderer.render(z, c), renderer.render(z, c)
    np.testing.assert_array_equal(first, second)  # fixed session noise, reset scheduler
    assert np.abs(renderer.render(z + 1.0, c).astype(int) - first).mean() > 0.5


@pytest.mark.parametrize(
    ("z_shape", "c_shape", "dtype", "nan", "match"),
    [
        (
            (4, 8, 8),
            None,
            np.float32,
            False,
            r"z has shape \(4, 8, 8\), the model needs \(4, 16, 16\)",
        ),
        (None, (77, 32), np.float32, False, r"c has shape \(77, 32\), the model needs \(16, 32\)"),
        (None, None, np.int32, False, "dtype int32"),
        (None, None, np.float32, True, "NaN"),
    ],
)
def test_bad_latents_are_refused_with_both_shapes(model, z_shape, c_shape, dtype, nan, match):
    renderer = Img2ImgRenderer(model, steps=1, strength=1.0)
    z = np.zeros(z_shape or model.latent_shape, dtype=dtype)
    c = np.zeros(c_shape or model.cond_shape, dtype=np.float32)
    if nan:
        z[0, 0, 0] = np.nan
    with pytest.raises(ShapeMismatchError, match=match):
        renderer.render(z, c)


def test_strength_too_low_for_any_step_and_blend_out_of_range(model):
    with pytest.raises(ConfigError, match="at least one step"):
        Img2ImgRenderer(model, steps=2, strength=0.4)
    with pytest.raises(ConfigError, match=r"blend must be in \[0, 1\), found 1.0"):
        Img2ImgRenderer(model, steps=2, strength=0.5, blend=1.0)


def test_missing_and_incomplete_model_dirs_name_the_component(tiny_model_dir, tmp_path):
    with pytest.raises(ModelError, match="not found"):
        check_model_dir(tmp_path / "nothing")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    shutil.rmtree(broken / "vae")
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelError) as info:
        load_render_model(broken)
    assert "vae/ (folder missing)" in str(info.value)
    assert "unet/ weights" in str(info.value)
    shutil.rmtree(broken / "tokenizer")
    with pytest.raises(ModelError, match="tokenizer/ \\(folder missing\\)"):
        check_model_dir(broken, need_text=True)


def test_model_shapes_and_fingerprint(model, tiny_model_dir, tmp_path):
    assert model.latent_shape == (4, 16, 16)
    assert model.cond_shape == (16, 32)
    assert model.image_size == 64
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    assert model_fingerprint(copy) == model.fingerprint
    config = copy / "scheduler" / "scheduler_config.json"
    config.write_text(config.read_text().replace('"trailing"', '"leading"'))
    assert model_fingerprint(copy) != model.fingerprint


@pytest.fixture(scope="module")
def tiny_decoder_dir(tmp_path_factory):
    from diffusers import AutoencoderTiny

    torch.manual_seed(1)
    tiny = AutoencoderTiny(
        encoder_block_out_channels=(16, 16, 16),
        decoder_block_out_channels=(16, 16, 16),
        num_encoder_blocks=(1, 1, 1),
        num_decoder_blocks=(1, 1, 1),
        latent_channels=4,
    )
    path = tmp_path_factory.mktemp("taesd") / "tiny"
    tiny.save_pretrained(path)
    return path


def test_tiny_decoder_frame_equals_the_pipeline_with_that_decoder(tiny_model_dir, tiny_decoder_dir):
    model = load_render_model(tiny_model_dir, tiny_decoder=tiny_decoder_dir)
    assert model.decoder is model.tiny_decoder and model.decoder_scaling == 1.0
    rng = np.random.default_rng(2)
    z = rng.normal(size=model.latent_shape).astype(np.float32)
    c = rng.normal(size=model.cond_shape).astype(np.float32)
    pipe = stock_pipeline(model, vae=model.tiny_decoder)
    expected = stock_frame(pipe, z, c, 4, 0.75, 4)
    frame = Img2ImgRenderer(model, steps=4, strength=0.75, seed=4).render(z, c)
    np.testing.assert_array_equal(frame, np.round(expected * 255).astype(np.uint8))
    plain = Img2ImgRenderer(load_render_model(tiny_model_dir), steps=4, strength=0.75, seed=4)
    assert np.abs(plain.render(z, c).astype(int) - frame).mean() > 1  # a different decoder


def test_tiny_decoder_with_other_latent_channels_is_refused(tiny_model_dir, tmp_path):
    from diffusers import AutoencoderTiny

    AutoencoderTiny(
        encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8),
        num_encoder_blocks=(1, 1),
        num_decoder_blocks=(1, 1),
        latent_channels=16,
    ).save_pretrained(tmp_path / "t16")
    with pytest.raises(
        ModelError, match="takes 16 latent channels, the render model's UNet makes 4"
    ):
        load_render_model(tiny_model_dir, tiny_decoder=tmp_path / "t16")
    with pytest.raises(ModelError, match="incomplete"):
        load_render_model(tiny_model_dir, tiny_decoder=tmp_path / "missing")
