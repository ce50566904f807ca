"""The ONNX Runtime executor: the UNet and the latent decoder run by ORT.

The two networks are exported once per model (``torch.onnx.export``, the
dynamo exporter) into ``<cache>/onnx/<fingerprint>/`` and reused. The
renderer's scheduler arithmetic stays in torch: it is a handful of
element-wise ops on one latent. Execution providers: CUDA when
onnxruntime-gpu sees a GPU (inputs and outputs bound to device memory with
IO binding, so no host copies inside the loop), CPU otherwise.

On CUDA, ONNX Runtime runs on its own stream, so every call synchronises:
torch's stream before it (the inputs are written) and ORT's outputs after it
(``synchronize_outputs``, before torch reads them). These host syncs, two per
network call, are the ONNX executor's price; the torch executors have none
inside the loop.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rt_recon.errors import ModelError
from rt_recon.render.executor import WarmUp
from rt_recon.render.model import RenderModel

log = logging.getLogger(__name__)

_NP_DTYPES = {torch.float32: np.float32, torch.float16: np.float16}


class _UNetCall(torch.nn.Module):
    def __init__(self, unet: torch.nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor):
        return self.unet(sample, timestep, encoder_hidden_states=cond, return_dict=False)[0]


class _DecoderCall(torch.nn.Module):
    def __init__(self, vae: torch.nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, latents: torch.Tensor):
        return self.vae.decode(latents, return_dict=False)[0]


def _export(module: torch.nn.Module, args: tuple, names: list[str], path: Path) -> None:
    module.eval()  # the wrapper is new (training mode); the exported graph is for inference
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            module, args, str(path), input_names=names, output_names=["out"], dynamo=True
        )


def _export_key(model: RenderModel) -> str:
    """The model's fingerprint, plus a hash of the tiny decoder's weights when one is used."""
    if model.tiny_decoder is None:
        return model.fingerprint
    digest = hashlib.sha256()
    for tensor in model.tiny_decoder.state_dict().values():
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return f"{model.fingerprint}-tiny-{digest.hexdigest()[:12]}"


def export_model(model: RenderModel, cache_dir: str | Path) -> Path:
    """Export UNet and VAE decoder for ``model`` (once) and return their folder.

    The export goes to a temporary folder renamed into place when complete,
    so an interrupted export is never mistaken for a cached one (models over
    2 GB keep their weights in ``.data`` files beside the graphs).
    """
    folder = Path(cache_dir) / "onnx" / _export_key(model)
    if (folder / "unet.onnx").is_file() and (folder / "vae_decoder.onnx").is_file():
        return folder
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    partial.mkdir(parents=True, exist_ok=True)
    c, h, w = model.latent_shape
    latents = torch.zeros(1, c, h, w, dtype=model.dtype, device=model.device)
    timestep = torch.tensor([999.0], device=model.device)
    cond = torch.zeros(1, *model.cond_shape, dtype=model.dtype, device=model.device)
    log.info("exporting %s to ONNX in %s (once per model)", model.path, folder)
    _export(
        _UNetCall(model.unet),
        (latents, timestep, cond),
        ["sample", "timestep", "cond"],
        partial / "unet.onnx",
    )
    _export(_DecoderCall(model.decoder), (latents,), ["latents"], partial / "vae_decoder.onnx")
    try:
        partial.rename(folder)
    except OSError:  # another process finished the same export first
        shutil.rmtree(partial, ignore_errors=True)
    return folder


def _providers(device: torch.device) -> list[str | tuple[str, dict[str, Any]]]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise ModelError(
                "renderer.device is cuda but onnxruntime has no CUDAExecutionProvider; "
                f"install onnxruntime-gpu (available: {available})"
            )
        index = device.index if device.index is not None else torch.cuda.current_device()
        return [("CUDAExecutionProvider", {"device_id": index})]
    return ["CPUExecutionProvider"]


class OnnxExecutor:
    """UNet and VAE decoder in ONNX Runtime sessions (CUDA provider on a GPU, else CPU).

    Building it exports the networks of ``model`` into ``cache_dir`` unless an
    export of that model is already there (:func:`export_model`) and opens one
    session per network. Inputs and outputs are torch tensors on the model's
    device, as for every executor.
    """

    name = "onnxruntime"

    def __init__(self, model: RenderModel, cache_dir: str | Path = "~/.cache/rt_recon"):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError(
                "renderer.backend is onnx but onnxruntime is not installed "
                "(pip install onnxruntime, or onnxruntime-gpu for CUDA)"
            ) from None
        self._np_dtype = _NP_DTYPES.get(model.dtype)
        if self._np_dtype is None:
            raise ModelError(f"the ONNX backend runs float32 or float16, not {model.dtype}")
        self.model = model
        folder = export_model(model, Path(cache_dir).expanduser())
        providers = _providers(model.device)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._unet_session = ort.InferenceSession(
            str(folder / "unet.onnx"), options, providers=providers
        )
        self._vae_session = ort.InferenceSession(
            str(folder / "vae_decoder.onnx"), options, providers=providers
        )
        shape = self._vae_session.get_outputs()[0].shape  # static: exported at one shape
        side = model.image_size
        self._image_shape = (
            tuple(shape) if all(isinstance(d, int) for d in shape) else (1, 3, side, side)
        )

    def _run(
        self, session: Any, inputs: dict[str, torch.Tensor], out_shape: tuple[int, ...]
    ) -> torch.Tensor:
        """Run ``session`` on ``inputs``; the output ``out_shape`` on the model's device.

        On CUDA, inputs and output are bound to device memory (IO binding): the
        output goes into a tensor allocated here by torch.
        """
        device = self.model.device
        if device.type != "cuda":
            feeds = {name: t.detach().cpu().numpy() for name, t in inputs.items()}
            return torch.from_numpy(session.run(None, feeds)[0])
        index = device.index if device.index is not None else torch.cuda.current_device()
        bound = {name: t.contiguous() for name, t in inputs.items()}  # alive until the run ends
        out = torch.empty(out_shape, dtype=self.model.dtype, device=device)
        binding = session.io_binding()
        for name, tensor in bound.items():
            binding.bind_input(
                name,
                "cuda",
                index,
                _NP_DTYPES[tensor.dtype],
                tuple(tensor.shape),
                tensor.data_ptr(),
            )
        binding.bind_output(
            "out", "cuda", index, _NP_DTYPES[out.dtype], tuple(out.shape), out.data_ptr()
        )
        torch.cuda.current_stream(device).synchronize()  # torch has written the inputs
        binding.synchronize_inputs()
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()  # ORT has written ``out``
        return out

    def unet(self, sample: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        step = t.reshape(1).to(torch.float32)
        inputs = {"sample": sample, "timestep": step, "cond": cond}
        return self._run(self._unet_session, inputs, tuple(sample.shape))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self._run(self._vae_session, {"latents": latents}, self._image_shape)

    def prepare(self, warm_up: WarmUp) -> None:
        return None  # exported and loaded when built; ORT picks its kernels on the first run
