"""Pick the renderer backend a config asks for."""

from __future__ import annotations

from rt_recon.config import SessionConfig
from rt_recon.render.img2img import Img2ImgRenderer
from rt_recon.render.model import RenderModel


def make_renderer(model: RenderModel, config: SessionConfig) -> Img2ImgRenderer:
    """The renderer for ``config.renderer``; with ``compile`` it is compiled and warmed up."""
    rc = config.renderer
    if rc.backend == "onnx":
        from rt_recon.render.onnx_backend import OnnxImg2ImgRenderer

        return OnnxImg2ImgRenderer(
            model,
            rc.steps,
            rc.strength,
            rc.seed,
            cache_dir=config.paths.cache_dir,
            blend=rc.blend,
        )
    return Img2ImgRenderer(
        model,
        steps=rc.steps,
        strength=rc.strength,
        seed=rc.seed,
        blend=rc.blend,
        compile=rc.compile,
    )
