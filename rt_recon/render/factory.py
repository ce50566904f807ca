"""Build the renderer a config asks for: the executor from ``renderer.backend`` / ``compile``."""

from __future__ import annotations

from rt_recon.config import SessionConfig
from rt_recon.render.executor import NetworkExecutor, TorchEagerExecutor
from rt_recon.render.img2img import Img2ImgRenderer, check_settings
from rt_recon.render.model import RenderModel


def make_executor(model: RenderModel, config: SessionConfig) -> NetworkExecutor:
    """``backend: onnx`` -> ONNX Runtime (exported into ``paths.cache_dir`` once per model);
    ``compile: true`` -> torch.compile'd (toolchain checked here); else torch eager."""
    rc = config.renderer
    if rc.backend == "onnx":
        from rt_recon.render.onnx_backend import OnnxExecutor

        return OnnxExecutor(model, cache_dir=config.paths.cache_dir)
    if rc.compile:
        from rt_recon.render.compiled import TorchCompiledExecutor

        return TorchCompiledExecutor(model)
    return TorchEagerExecutor(model)


def make_renderer(model: RenderModel, config: SessionConfig) -> Img2ImgRenderer:
    """The renderer for ``config.renderer``; with ``compile`` it is compiled and warmed up.

    The settings are checked before the executor is built (an ONNX export takes
    minutes for an SD-size model).
    """
    rc = config.renderer
    check_settings(rc.steps, rc.strength, rc.blend)
    uncond = None
    if rc.guidance_scale > 1.0:  # the empty caption's embedding (needs the text encoder)
        from rt_recon.render.targets import empty_caption

        uncond = empty_caption(model)
    return Img2ImgRenderer(
        model,
        steps=rc.steps,
        strength=rc.strength,
        seed=rc.seed,
        blend=rc.blend,
        executor=make_executor(model, config),
        guidance_scale=rc.guidance_scale,
        uncond=uncond,
        vae_roundtrip=rc.vae_roundtrip,
    )
