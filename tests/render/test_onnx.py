"""The ONNX Runtime executor renders what the torch eager executor renders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rt_recon.errors import ModelError
from rt_recon.render import Img2ImgRenderer, TorchEagerExecutor, load_render_model

ort = pytest.importorskip("onnxruntime", reason="the ONNX executor needs onnxruntime")

#: float32 ONNX Runtime kernels reorder sums differently from torch's; on pictures in
#: [-1, 1] the two agree to this absolute tolerance (a few in 10^5 measured here).
TOLERANCE = 1e-3


@pytest.mark.slow
def test_onnx_executor_matches_torch_and_caches_the_export(tiny_model_dir, tmp_path):
    from rt_recon.render import OnnxExecutor

    model = load_render_model(tiny_model_dir)
    rng = np.random.default_rng(3)
    z = rng.normal(size=model.latent_shape).astype(np.float32)
    c = rng.normal(size=model.cond_shape).astype(np.float32)
    torch_renderer = Img2ImgRenderer(model, 4, 0.75, seed=5, executor=TorchEagerExecutor(model))
    executor = OnnxExecutor(model, cache_dir=tmp_path)
    assert executor.name == "onnxruntime"
    onnx_renderer = Img2ImgRenderer(model, 4, 0.75, seed=5, executor=executor)
    with torch.inference_mode():
        args = (torch.from_numpy(z)[None], torch.from_numpy(c)[None])
        expected = torch_renderer.render_tensor(*args).numpy()
        got = onnx_renderer.render_tensor(*args).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=TOLERANCE)
    frames = onnx_renderer.render(z, c).astype(int), torch_renderer.render(z, c).astype(int)
    assert np.abs(frames[0] - frames[1]).max() <= 1
    folder = tmp_path / "onnx" / model.fingerprint
    assert (folder / "unet.onnx").is_file() and (folder / "vae_decoder.onnx").is_file()
    stamp = (folder / "unet.onnx").stat().st_mtime_ns
    OnnxExecutor(model, cache_dir=tmp_path)  # reuses the export
    assert (folder / "unet.onnx").stat().st_mtime_ns == stamp


def test_onnx_executor_refuses_bfloat16_before_exporting(tiny_model_dir, tmp_path):
    from rt_recon.render import OnnxExecutor

    model = load_render_model(tiny_model_dir, dtype="bfloat16")
    with pytest.raises(ModelError, match=r"runs float32 or float16, not torch\.bfloat16"):
        OnnxExecutor(model, cache_dir=tmp_path)
    assert not (tmp_path / "onnx").exists()
