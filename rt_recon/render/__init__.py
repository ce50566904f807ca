"""Rendering: a few-step img2img diffusion from decoded ``(z, c)`` to a picture.

Read in data-flow order:

* ``model``         a local diffusers-format model directory -> :class:`RenderModel`
  (``embedded``: where the shipped default lives; :func:`resolve_model_path`)
* ``executor``      :class:`NetworkExecutor`, what runs the UNet and the decoder:
  :class:`TorchEagerExecutor` here, :class:`TorchCompiledExecutor` (``compiled``),
  :class:`OnnxExecutor` (``onnx_backend``); :class:`ExecutorWrapper` to wrap one
* ``img2img``       :class:`Img2ImgRenderer`: the scheduler math, one executor passed in;
  :class:`StartPoint`, where a frame starts (interpolated between two TRs' frames)
* ``factory``       :func:`make_renderer` / :func:`make_executor` from a session config
* ``targets``       pictures and captions -> the ``z`` and ``c`` a decoder is fitted to
* ``stock``, ``tiny``, ``tokenizer``: the reference diffusers pipeline, tiny models
  built in code, the embedded model's word tokenizer

The names below are imported on first use, so ``import rt_recon.render.embedded``
(or this package) does not load torch and diffusers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rt_recon._lazy import lazy_exports

if TYPE_CHECKING:
    from rt_recon.render.compiled import TorchCompiledExecutor
    from rt_recon.render.embedded import EMBEDDED_DIR, resolve_model_path
    from rt_recon.render.executor import ExecutorWrapper, NetworkExecutor, TorchEagerExecutor
    from rt_recon.render.factory import make_executor, make_renderer
    from rt_recon.render.img2img import Img2ImgRenderer, StartPoint, to_uint8
    from rt_recon.render.model import (
        RenderModel,
        check_model_dir,
        load_render_model,
        model_fingerprint,
    )
    from rt_recon.render.onnx_backend import OnnxExecutor, export_model
    from rt_recon.render.targets import encode_captions, encode_images

_SOURCES = {
    "EMBEDDED_DIR": "embedded",
    "ExecutorWrapper": "executor",
    "Img2ImgRenderer": "img2img",
    "NetworkExecutor": "executor",
    "OnnxExecutor": "onnx_backend",
    "RenderModel": "model",
    "StartPoint": "img2img",
    "TorchCompiledExecutor": "compiled",
    "TorchEagerExecutor": "executor",
    "check_model_dir": "model",
    "encode_captions": "targets",
    "encode_images": "targets",
    "export_model": "onnx_backend",
    "load_render_model": "model",
    "make_executor": "factory",
    "make_renderer": "factory",
    "model_fingerprint": "model",
    "resolve_model_path": "embedded",
    "to_uint8": "img2img",
}

__all__ = [
    "EMBEDDED_DIR",
    "ExecutorWrapper",
    "Img2ImgRenderer",
    "NetworkExecutor",
    "OnnxExecutor",
    "RenderModel",
    "StartPoint",
    "TorchCompiledExecutor",
    "TorchEagerExecutor",
    "check_model_dir",
    "encode_captions",
    "encode_images",
    "export_model",
    "load_render_model",
    "make_executor",
    "make_renderer",
    "model_fingerprint",
    "resolve_model_path",
    "to_uint8",
]


__getattr__, __dir__ = lazy_exports(__name__, _SOURCES, __all__)
