"""The renderer on a CUDA device: reduced precision, the torch.compile executor (CUDA
graphs) and channels_last against float32 eager; no host sync inside the loop; the ONNX
Runtime executor on the CUDA provider with IO binding. Skipped where no CUDA device (or no
onnxruntime-gpu) is present.

    pytest -m gpu tests/render/test_gpu.py
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rt_recon.render import (
    Img2ImgRenderer,
    NetworkExecutor,
    RenderModel,
    TorchCompiledExecutor,
    TorchEagerExecutor,
    load_render_model,
)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

#: Pictures in [-1, 1], reduced precision against float32 eager on the tiny random model.
#: Measured on the CPU (same model, 4 steps, strength 0.75): float16 max 2.2e-3 / mean
#: 3.5e-4, bfloat16 max 2.4e-2 / mean 2.9e-3; the bounds leave room for cuDNN/cuBLAS
#: reductions in reduced precision and TF32 convolutions in the float32 reference.
TOLERANCE = {  # dtype -> (max abs, mean abs)
    "float32": (5e-3, 5e-4),
    "float16": (3e-2, 3e-3),
    "bfloat16": (1.5e-1, 1.5e-2),
}
#: ONNX Runtime's CUDA kernels (TF32 convolutions by default) against torch, float32.
ONNX_TOLERANCE = (2e-2, 2e-3)
STEPS, STRENGTH, SEED = 4, 0.75, 3


def _executor(model: RenderModel, compile: bool) -> NetworkExecutor:
    return TorchCompiledExecutor(model) if compile else TorchEagerExecutor(model)


def _inputs(model, seed: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(1, *model.latent_shape, generator=g)
    c = torch.randn(1, *model.cond_shape, generator=g)
    return z.to("cuda", dtype), c.to("cuda", dtype)


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    """float32 eager frames of two latents, on the GPU."""
    model = load_render_model(tiny_model_dir, device="cuda", dtype="float32")
    renderer = Img2ImgRenderer(model, STEPS, STRENGTH, seed=SEED)
    return model, {s: renderer.render_tensor(*_inputs(model, s, torch.float32)) for s in (1, 2)}


def _assert_close(got: torch.Tensor, expected: torch.Tensor, dtype: str) -> None:
    max_abs, mean_abs = TOLERANCE[dtype]
    diff = (got.float() - expected.float()).abs()
    assert diff.max().item() <= max_abs, f"{dtype}: max |diff| {diff.max().item():.2e}"
    assert diff.mean().item() <= mean_abs, f"{dtype}: mean |diff| {diff.mean().item():.2e}"


@pytest.mark.parametrize(
    ("dtype", "compile", "channels_last"),
    [
        ("float32", True, False),
        ("float16", False, False),
        ("float16", False, True),
        ("float16", True, True),
        ("bfloat16", True, True),
    ],
)
def test_fast_paths_match_float32_eager(tiny_model_dir, reference, dtype, compile, channels_last):
    _, expected = reference
    model = load_render_model(
        tiny_model_dir, device="cuda", dtype=dtype, channels_last=channels_last
    )
    assert model.attention["unet"] == "AttnProcessor2_0"
    executor = _executor(model, compile)
    renderer = Img2ImgRenderer(model, STEPS, STRENGTH, seed=SEED, executor=executor)
    if compile:  # CUDA graphs ("reduce-overhead") on CUDA
        assert executor.cudagraphs and executor.fullgraph is not None
    frames = {s: renderer.render_tensor(*_inputs(model, s, model.dtype)) for s in (1, 2)}
    for s in (1, 2):  # the first frame is still intact after the second was rendered
        _assert_close(frames[s], expected[s], dtype)
    assert (frames[1].float() - frames[2].float()).abs().mean().item() > 1e-2


@pytest.mark.parametrize("compile", [False, True])
def test_no_host_sync_inside_a_frame(tiny_model_dir, compile):
    """With the inputs on the device, a whole frame (blending, noising, every step and
    the decode) runs without one device synchronisation."""
    model = load_render_model(tiny_model_dir, device="cuda", dtype="float16", channels_last=True)
    executor = _executor(model, compile)
    renderer = Img2ImgRenderer(model, STEPS, STRENGTH, seed=SEED, blend=0.3, executor=executor)
    inputs = [_inputs(model, s, model.dtype) for s in (1, 2, 3)]
    renderer.render_tensor(*inputs[0])  # warm: kernels picked, blending state set
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for z, c in inputs[1:]:
            image = renderer.render_tensor(z, c)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert image.shape == (1, 3, model.image_size, model.image_size)
    assert torch.isfinite(image).all()


def test_onnx_executor_runs_on_the_cuda_provider_with_io_binding(reference, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="the ONNX executor needs onnxruntime-gpu")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip(f"onnxruntime has no CUDA provider ({ort.get_available_providers()})")
    from rt_recon.render import OnnxExecutor

    model, expected = reference
    executor = OnnxExecutor(model, cache_dir=tmp_path)
    renderer = Img2ImgRenderer(model, STEPS, STRENGTH, seed=SEED, executor=executor)

    class Spy:
        """Records which session methods the renderer uses."""

        def __init__(self, session):
            self.session, self.used = session, []

        def __getattr__(self, name):
            self.used.append(name)
            return getattr(self.session, name)

    sessions = {"unet": executor._unet_session, "vae": executor._vae_session}
    for name, session in sessions.items():
        assert session.get_providers()[0] == "CUDAExecutionProvider", name
    executor._unet_session, executor._vae_session = Spy(sessions["unet"]), Spy(sessions["vae"])
    got = renderer.render_tensor(*_inputs(model, 1, torch.float32))
    for spy in (executor._unet_session, executor._vae_session):
        assert "run_with_iobinding" in spy.used and "run" not in spy.used
    assert executor._unet_session.used.count("run_with_iobinding") == renderer.n_unet_calls
    assert got.device.type == "cuda"
    diff = (got - expected[1]).abs()
    assert diff.max().item() <= ONNX_TOLERANCE[0] and diff.mean().item() <= ONNX_TOLERANCE[1]
    frame = renderer.render(*(t.cpu().numpy()[0] for t in _inputs(model, 1, torch.float32)))
    assert frame.shape == (model.image_size, model.image_size, 3) and frame.dtype == np.uint8


def test_training_pictures_and_captions_encode_on_the_gpu_as_on_the_cpu(tiny_model_dir):
    """``rt-recon fit --device cuda`` encodes the decoder's targets on the GPU: the same
    targets as on the CPU, to float32 round-off (TF32 convolutions allowed for)."""
    from rt_recon.render.targets import encode_captions, encode_images

    pictures = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    captions = ["a red circle", "a blue square on grey", "", "a green star", "x", "y"]
    on = {}
    for device in ("cpu", "cuda"):
        model = load_render_model(tiny_model_dir, device=device, with_text=True)
        on[device] = (encode_images(model, pictures), encode_captions(model, captions))
    for cpu, gpu in zip(on["cpu"], on["cuda"], strict=True):
        assert gpu.dtype == np.float32 and gpu.shape == cpu.shape
        np.testing.assert_allclose(gpu, cpu, rtol=1e-2, atol=1e-2 * float(np.abs(cpu).max()))
