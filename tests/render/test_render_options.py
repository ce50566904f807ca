"""Production-renderer options on the CPU: SDPA attention, channels_last, latent blending,
per-frame host work, the factory's executor choice, and the torch.compile executor (static
shapes), each against the eager frame."""

from __future__ import annotations

import dataclasses
import itertools
import logging

import numpy as np
import pytest
import torch

from rt_recon.config import RendererSection, SessionConfig, validate_config
from rt_recon.errors import ConfigError, ModelError
from rt_recon.render import (
    Img2ImgRenderer,
    TorchCompiledExecutor,
    TorchEagerExecutor,
    load_render_model,
    make_executor,
    make_renderer,
)
from rt_recon.render.model import prepare_for_inference
from rt_recon.render.stock import stock_frame, stock_pipeline

#: channels_last runs other CPU convolution kernels (oneDNN, NHWC); on pictures in [-1, 1]
#: the frame agrees with the default layout to this absolute tolerance (2e-6 measured).
CHANNELS_LAST_ATOL = 1e-4
#: inductor's fused C++ kernels reorder float32 sums; measured 2e-6 here.
COMPILE_ATOL = 1e-4


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_render_model(tiny_model_dir)


def _inputs(model, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=model.latent_shape).astype(np.float32)
    c = rng.normal(size=model.cond_shape).astype(np.float32)
    return z, c


def _tensor(renderer: Img2ImgRenderer, z: np.ndarray, c: np.ndarray) -> np.ndarray:
    return renderer.render_tensor(torch.from_numpy(z)[None], torch.from_numpy(c)[None]).numpy()


def test_plain_attention_is_replaced_by_sdpa_and_logged(tiny_model_dir, caplog):
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    model = load_render_model(tiny_model_dir)
    model.unet.set_attn_processor(AttnProcessor())  # the pre-SDPA processor
    model.vae.set_attn_processor(AttnProcessor())
    with caplog.at_level(logging.INFO, logger="rt_recon.render.model"):
        prepare_for_inference(model)
    assert model.attention == {"unet": "AttnProcessor2_0", "vae": "AttnProcessor2_0"}
    for module in (model.unet, model.vae):
        assert module.attn_processors  # the tiny VAE has a mid-block attention
        assert all(type(p) is AttnProcessor2_0 for p in module.attn_processors.values())
    assert "unet AttnProcessor2_0, vae AttnProcessor2_0" in caplog.text


def test_other_attention_processors_are_kept(tiny_model_dir):
    from diffusers.models.attention_processor import AttnProcessor2_0

    class CustomProcessor(AttnProcessor2_0):
        pass

    model = load_render_model(tiny_model_dir)
    model.unet.set_attn_processor(CustomProcessor())
    prepare_for_inference(model)
    assert model.attention["unet"] == "CustomProcessor"
    assert all(type(p) is CustomProcessor for p in model.unet.attn_processors.values())


def test_channels_last_gives_the_same_frame(model, tiny_model_dir):
    nhwc = load_render_model(tiny_model_dir, channels_last=True)
    assert nhwc.channels_last and not model.channels_last
    weight = nhwc.unet.conv_in.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert nhwc.vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    z, c = _inputs(model, 4)
    expected = _tensor(Img2ImgRenderer(model, 4, 0.75, seed=2), z, c)
    got = _tensor(Img2ImgRenderer(nhwc, 4, 0.75, seed=2), z, c)
    np.testing.assert_allclose(got, expected, atol=CHANNELS_LAST_ATOL)
    frames = [Img2ImgRenderer(m, 4, 0.75, seed=2).render(z, c).astype(int) for m in (model, nhwc)]
    assert np.abs(frames[0] - frames[1]).max() <= 1


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, False),
        ({"device": "cuda"}, True),
        ({"device": "cuda:1"}, True),
        ({"device": "cuda", "backend": "onnx"}, False),
        ({"device": "cuda", "channels_last": False}, False),
        ({"channels_last": True}, True),
    ],
)
def test_channels_last_auto_is_on_for_cuda_with_torch(settings, expected):
    assert RendererSection(**settings).use_channels_last() is expected


@pytest.mark.parametrize(
    ("renderer", "match"),
    [
        ({"blend": 1.0}, "renderer.blend: Input should be less than 1"),
        ({"blend": -0.1}, "renderer.blend: Input should be greater than or equal to 0"),
        ({"compile": True, "backend": "onnx"}, "compile applies to the torch backend"),
        ({"channels_last": "sometimes"}, "renderer.channels_last"),
    ],
)
def test_bad_renderer_options_are_config_errors(renderer, match):
    with pytest.raises(ConfigError, match=match):
        validate_config({"renderer": renderer}, "test.yaml")


def _config(tmp_path=None, **renderer) -> SessionConfig:
    paths = {"paths": {"cache_dir": str(tmp_path)}} if tmp_path else {}
    return SessionConfig.model_validate({"renderer": renderer, **paths})


def test_factory_passes_the_settings_and_picks_the_executor(model, tmp_path, monkeypatch):
    settings = {"steps": 3, "strength": 0.7, "seed": 4, "blend": 0.25}
    renderer = make_renderer(model, _config(**settings))
    assert (renderer.steps, renderer.strength, renderer.blend) == (3, 0.7, 0.25)
    assert type(renderer.executor) is TorchEagerExecutor
    z, c = _inputs(model, 14)
    expected = Img2ImgRenderer(model, 3, 0.7, seed=4, blend=0.25).render(z, c)
    np.testing.assert_array_equal(renderer.render(z, c), expected)
    # built only: the compiled executor compiles when a renderer prepares it
    assert type(make_executor(model, _config(compile=True))) is TorchCompiledExecutor
    import rt_recon.render.onnx_backend as onnx_backend

    built = []
    monkeypatch.setattr(
        onnx_backend, "OnnxExecutor", lambda m, cache_dir: built.append((m, cache_dir)) or "ort"
    )
    assert make_executor(model, _config(tmp_path, backend="onnx")) == "ort"
    assert built == [(model, tmp_path)]


def test_factory_refuses_bad_settings_before_building_the_executor(model, monkeypatch):
    import rt_recon.render.onnx_backend as onnx_backend

    def never(*args, **kwargs):
        raise AssertionError("the executor was built (an ONNX export) before the check")

    monkeypatch.setattr(onnx_backend, "OnnxExecutor", never)
    with pytest.raises(ConfigError, match=r"at least one step, found 2 \* 0\.4"):
        make_renderer(model, _config(backend="onnx", steps=2, strength=0.4))


def test_blend_zero_equals_the_unblended_frame(model):
    plain = Img2ImgRenderer(model, 2, 0.5, seed=1)
    zero = Img2ImgRenderer(model, 2, 0.5, seed=1, blend=0.0)
    for seed in range(3):
        z, c = _inputs(model, seed)
        np.testing.assert_array_equal(zero.render(z, c), plain.render(z, c))


def test_blend_is_an_average_of_the_clean_init_latents(model):
    blend = 0.6
    renderer = Img2ImgRenderer(model, 2, 0.5, blend=blend)
    zs = [
        torch.randn(1, *model.latent_shape, generator=torch.Generator().manual_seed(s))
        for s in range(4)
    ]
    expected = zs[0]
    for i, z in enumerate(zs):
        if i:
            expected = (1 - blend) * z + blend * expected
        torch.testing.assert_close(renderer.init_latents(z), expected)
    renderer.reset()
    torch.testing.assert_close(renderer.init_latents(zs[1]), zs[1])


def test_blend_makes_frames_of_alternating_latents_more_similar(model):
    z_a, c = _inputs(model, 5)
    z_b = _inputs(model, 6)[0]
    zs = [z_a, z_b] * 4

    def flicker(blend: float) -> float:
        renderer = Img2ImgRenderer(model, 2, 0.5, seed=0, blend=blend)
        frames = [renderer.render(z, c).astype(float) for z in zs]
        return float(np.mean([np.abs(a - b).mean() for a, b in itertools.pairwise(frames[2:])]))

    unblended, blended = flicker(0.0), flicker(0.6)
    assert unblended > 5  # the two latents give visibly different pictures
    assert blended < 0.5 * unblended


def test_a_new_run_restarts_blending(model):
    z_a, c = _inputs(model, 7)
    z_b = _inputs(model, 8)[0]
    alone = Img2ImgRenderer(model, 2, 0.5).render(z_b, c)
    renderer = Img2ImgRenderer(model, 2, 0.5, blend=0.5)
    renderer.render(z_a, c, run_id=("s1", 1))
    continued = renderer.render(z_b, c, run_id=("s1", 1))
    assert np.abs(continued.astype(int) - alone).mean() > 1  # blended with z_a
    renderer.render(z_a, c, run_id=("s1", 1))
    np.testing.assert_array_equal(renderer.render(z_b, c, run_id=("s1", 2)), alone)


def test_a_frame_does_no_scheduler_setup(model):
    """Timesteps and noising are prepared once: a frame calls neither set_timesteps nor
    add_noise (for Euler), and still renders the same picture."""
    z, c = _inputs(model, 9)
    expected = Img2ImgRenderer(model, 4, 0.75, seed=3).render(z, c)
    renderer = Img2ImgRenderer(model, 4, 0.75, seed=3)

    def refuse(*args, **kwargs):
        raise AssertionError("per-frame scheduler setup")

    renderer.scheduler.set_timesteps = refuse  # frames step copies: the patch is in each
    renderer.scheduler.add_noise = refuse
    np.testing.assert_array_equal(renderer.render(z, c), expected)
    np.testing.assert_array_equal(renderer.render(z, c), expected)


def test_precomputed_noising_matches_the_pipeline_for_a_ddim_scheduler(model):
    """Another scheduler family (``sqrt(a) x + sqrt(1 - a) n``, reset by set_timesteps)."""
    from diffusers import DDIMScheduler

    # clip_sample=False: the pipeline's constructor sets it so when the config lacks the key
    scheduler = DDIMScheduler.from_config(model.scheduler.config, clip_sample=False)
    ddim = dataclasses.replace(model, scheduler=scheduler)
    z, c = _inputs(model, 10)
    pipe = stock_pipeline(model, scheduler=DDIMScheduler.from_config(scheduler.config))
    expected = stock_frame(pipe, z, c, 4, 0.75, 6)
    renderer = Img2ImgRenderer(ddim, 4, 0.75, seed=6)
    for _ in range(2):  # the second frame proves the per-frame reset
        np.testing.assert_array_equal(
            renderer.render(z, c), np.round(expected * 255).astype(np.uint8)
        )


def test_compile_without_a_cpp_compiler_fails_at_startup(model):
    import torch._inductor.config as inductor_config

    with (
        inductor_config.patch({"cpp.cxx": (None, "no-such-cxx-compiler")}),
        pytest.raises(ModelError, match=r"needs a C\+\+ compiler.*renderer.compile: false"),
    ):
        TorchCompiledExecutor(model)  # at startup: before any renderer or compilation


def test_compile_failure_during_warm_up_is_a_model_error(model, monkeypatch):
    import rt_recon.render.compiled as compile_module

    def broken(fn, device, fullgraph):
        def call(*args, **kwargs):
            raise RuntimeError("inductor could not build kernel 7\nmore detail")

        return call

    monkeypatch.setattr(compile_module, "compile_network", broken)
    with pytest.raises(ModelError) as info:
        Img2ImgRenderer(model, 2, 0.5, executor=TorchCompiledExecutor(model))
    message = str(info.value)
    assert "torch.compile of the UNet and decoder failed on cpu" in message
    assert "RuntimeError: inductor could not build kernel 7" in message
    assert "more detail" not in message and "renderer.compile: false" in message


def test_a_graph_break_falls_back_to_compiling_with_breaks(model, monkeypatch, caplog):
    import rt_recon.render.compiled as compile_module

    calls = []

    def fake(fn, device, fullgraph):
        calls.append(fullgraph)
        if not fullgraph:
            return fn

        def call(*args, **kwargs):
            raise torch._dynamo.exc.Unsupported("data-dependent branch")

        return call

    monkeypatch.setattr(compile_module, "compile_network", fake)
    executor = TorchCompiledExecutor(model)
    with caplog.at_level(logging.WARNING, logger="rt_recon.render.compiled"):
        renderer = Img2ImgRenderer(model, 2, 0.5, seed=1, executor=executor)
    assert calls == [True, True, False, False]  # UNet and decoder, fullgraph then not
    assert executor.fullgraph is False and "data-dependent branch" in caplog.text
    Img2ImgRenderer(model, 4, 0.75, executor=executor)  # prepared again: warm-up only
    assert calls == [True, True, False, False]
    z, c = _inputs(model, 11)
    expected = Img2ImgRenderer(model, 2, 0.5, seed=1).render(z, c)
    np.testing.assert_array_equal(renderer.render(z, c), expected)


@pytest.fixture(scope="module")
def compiled(model):
    """A renderer whose UNet and decoder inductor compiled (minutes on a cold cache,
    seconds once inductor's on-disk cache holds the kernels)."""
    from torch._dynamo.utils import counters

    counters.clear()
    renderer = Img2ImgRenderer(model, 4, 0.75, seed=8, executor=TorchCompiledExecutor(model))
    return renderer, counters["stats"]["unique_graphs"]


@pytest.mark.slow
def test_compiled_frame_equals_the_eager_frame_without_recompiling(model, compiled, monkeypatch):
    renderer, graphs = compiled
    assert renderer.executor.fullgraph is True and not renderer.executor.cudagraphs
    assert graphs == 2  # one graph each for UNet and decoder
    eager = Img2ImgRenderer(model, 4, 0.75, seed=8)
    monkeypatch.setattr(torch._dynamo.config, "error_on_recompile", True)
    for seed in (12, 13):  # new latents: the static-shape graphs are reused, not rebuilt
        z, c = _inputs(model, seed)
        np.testing.assert_allclose(_tensor(renderer, z, c), _tensor(eager, z, c), atol=COMPILE_ATOL)
        frames = renderer.render(z, c).astype(int), eager.render(z, c).astype(int)
        assert np.abs(frames[0] - frames[1]).max() <= 1


def test_cuda_graph_handling_of_the_compiled_executor(model, monkeypatch):
    """What the executor does for CUDA graphs, checked on the CPU: a step begins before
    every network call, and the picture is copied out of the graph's output buffer (which
    the next frame overwrites), so an earlier frame stays intact."""
    import rt_recon.render.compiled as compile_module

    def fake(fn, device, fullgraph):
        if fn is model.unet:
            return fn
        buffer: list[torch.Tensor] = []

        def decode(latents, return_dict=False):  # a CUDA graph: one output buffer, reused
            image = fn(latents, return_dict=False)[0]
            if not buffer:
                buffer.append(torch.empty_like(image))
            return (buffer[0].copy_(image),)

        return decode

    steps = []
    monkeypatch.setattr(compile_module, "compile_network", fake)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: steps.append(1))
    executor = TorchCompiledExecutor(model)
    executor.cudagraphs = True  # as on a CUDA device
    renderer = Img2ImgRenderer(model, 4, 0.75, seed=1, executor=executor)
    assert len(steps) == 3 * (renderer.n_unet_calls + 1)  # three warm-up frames
    eager = Img2ImgRenderer(model, 4, 0.75, seed=1)
    (z1, c1), (z2, c2) = _inputs(model, 15), _inputs(model, 16)
    with torch.inference_mode():
        first = renderer.render_tensor(torch.from_numpy(z1)[None], torch.from_numpy(c1)[None])
        renderer.render_tensor(torch.from_numpy(z2)[None], torch.from_numpy(c2)[None])
    np.testing.assert_array_equal(first.numpy(), _tensor(eager, z1, c1))
    assert len(steps) == 5 * (renderer.n_unet_calls + 1)
