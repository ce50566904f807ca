"""Load a local diffusers-format render model (SD-Turbo, or the embedded default).

A model directory holds ``unet/``, ``vae/`` and ``scheduler/`` (required) and
``text_encoder/`` + ``tokenizer/`` (needed only to compute decoder targets
from captions, not to render). Every component is loaded with
``from_pretrained(local_dir, local_files_only=True)``: nothing touches the
network. A missing or incomplete directory is a :class:`ModelError` naming
the component, raised before any stream is opened.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rt_recon.errors import ModelError

log = logging.getLogger(__name__)

_WEIGHT_FILES = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.fp16.safetensors",
    "model.safetensors",
    "model.fp16.safetensors",
)
REQUIRED_COMPONENTS = {
    "unet": "config.json",
    "vae": "config.json",
    "scheduler": "scheduler_config.json",
}
TEXT_COMPONENTS = {"text_encoder": "config.json", "tokenizer": None}

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _weights_of(component_dir: Path) -> Path | None:
    for name in _WEIGHT_FILES:
        if (component_dir / name).is_file():
            return component_dir / name
    return None


def check_model_dir(path: str | Path, need_text: bool = False) -> Path:
    """Raise :class:`ModelError` naming every missing piece of a model directory."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(
            f"render model directory not found: {path} (expected a diffusers-format folder "
            "with unet/, vae/ and scheduler/)"
        )
    components = dict(REQUIRED_COMPONENTS)
    if need_text:
        components.update(TEXT_COMPONENTS)
    missing = []
    for name, config_file in components.items():
        sub = path / name
        if not sub.is_dir():
            missing.append(f"{name}/ (folder missing)")
            continue
        if config_file and not (sub / config_file).is_file():
            missing.append(f"{name}/{config_file}")
        if name in ("unet", "vae", "text_encoder") and _weights_of(sub) is None:
            missing.append(f"{name}/ weights (one of {', '.join(_WEIGHT_FILES)})")
        if name == "tokenizer" and not any(
            (sub / f).is_file() for f in ("tokenizer.json", "vocab.json")
        ):
            missing.append("tokenizer/tokenizer.json or vocab.json")
    if missing:
        raise ModelError(f"render model at {path} is incomplete: missing " + "; ".join(missing))
    return path


def model_fingerprint(path: str | Path) -> str:
    """A short id of a model: a hash of its component configs and weight file sizes.

    Cheap to compute (no multi-GB weight hashing) and different for any two
    models that differ in architecture, scheduler or trained weights' files.
    """
    path = Path(path)
    digest = hashlib.sha256()
    for name in sorted(REQUIRED_COMPONENTS):
        sub = path / name
        config = json.loads((sub / REQUIRED_COMPONENTS[name]).read_text())
        config = {k: v for k, v in config.items() if not k.startswith("_diffusers")}
        digest.update(name.encode())
        digest.update(json.dumps(config, sort_keys=True).encode())
        weights = _weights_of(sub)
        if weights is not None:
            digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return digest.hexdigest()[:16]


def quiet_hugging_face() -> None:
    """No progress bars or advisory chatter from diffusers/transformers in a node's log.

    Called where those libraries are loaded anyway, so commands that never
    touch a model (bridge, replay, console) do not pay their import time.
    """
    import transformers
    from diffusers.utils import logging as diffusers_logging

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()


def _component_class(sub: Path, config_file: str) -> Any:
    import diffusers

    class_name = json.loads((sub / config_file).read_text()).get("_class_name")
    cls = getattr(diffusers, str(class_name), None)
    if cls is None:
        raise ModelError(f"{sub}/{config_file}: unknown diffusers class {class_name!r}")
    return cls


@dataclass
class RenderModel:
    """The loaded components of a render model and the shapes they imply."""

    path: Path
    unet: Any
    vae: Any
    scheduler: Any
    device: torch.device
    dtype: torch.dtype
    fingerprint: str
    latent_shape: tuple[int, int, int]  # (channels, h, w) of z
    cond_shape: tuple[int, int]  # (tokens, dim) of c
    image_size: int  # side of a rendered picture, pixels
    text_encoder: Any = None
    tokenizer: Any = None
    tiny_decoder: Any = None  # an AutoencoderTiny that replaces the VAE for decoding
    channels_last: bool = False  # UNet and decoders hold their weights in NHWC order
    attention: dict[str, str] = field(default_factory=dict)  # component -> attention processor

    @property
    def scaling_factor(self) -> float:
        """The VAE's latent scaling: ``z`` on the wire is the VAE latent times this."""
        return float(getattr(self.vae.config, "scaling_factor", 1.0))

    @property
    def decoder(self) -> Any:
        """What turns latents into pixels: the tiny autoencoder if loaded, else the VAE."""
        return self.tiny_decoder if self.tiny_decoder is not None else self.vae

    @property
    def decoder_scaling(self) -> float:
        """Divide scaled latents by this before :attr:`decoder` (1.0 for TAESD-style decoders,
        which take scaled latents as they are)."""
        return float(getattr(self.decoder.config, "scaling_factor", 1.0))

    def describe(self) -> dict[str, Any]:
        """What a decoder bundle records about the model it targets."""
        return {
            "fingerprint": self.fingerprint,
            "latent_shape": list(self.latent_shape),
            "cond_shape": list(self.cond_shape),
            "image_size": self.image_size,
        }


def _cond_tokens(path: Path) -> int:
    """Token count of the conditioning: the text encoder's positions (77 for CLIP)."""
    for candidate in (
        path / "text_encoder" / "config.json",
        path / "tokenizer" / "tokenizer_config.json",
    ):
        if candidate.is_file():
            config = json.loads(candidate.read_text())
            for key in ("max_position_embeddings", "model_max_length"):
                value = config.get(key)
                if isinstance(value, int) and 0 < value < 100_000:
                    return value
    raise ModelError(
        f"{path}: cannot tell the conditioning length: no text_encoder/config.json "
        "(max_position_embeddings) or tokenizer/tokenizer_config.json (model_max_length)"
    )


#: Attention processors that :func:`prepare_for_inference` replaces by ``AttnProcessor2_0``:
#: the plain ones, which compute the same attention (others, e.g. IP-Adapter's, are kept).
_PLAIN_PROCESSORS = {"AttnProcessor", "AttnProcessor2_0"}


def _use_sdpa(module: Any) -> str:
    """Set diffusers' ``AttnProcessor2_0`` (torch SDPA) on ``module``; return what it now uses."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    processors = getattr(module, "attn_processors", None)
    if not processors:  # AutoencoderTiny: no attention layers
        return "none"
    kinds = {type(p).__name__ for p in processors.values()}
    if kinds <= _PLAIN_PROCESSORS:
        module.set_attn_processor(AttnProcessor2_0())
        return "AttnProcessor2_0"
    return "+".join(sorted(kinds))


def prepare_for_inference(model: RenderModel, channels_last: bool = False) -> None:
    """Explicit SDPA attention on every network, and (``channels_last``) NHWC weights.

    ``AttnProcessor2_0`` calls ``torch.nn.functional.scaled_dot_product_attention``
    (flash / memory-efficient kernels on CUDA). ``channels_last`` stores the
    convolution weights as NHWC, the layout cuDNN's fp16/bf16 tensor-core
    kernels want; on a CPU it buys little, so the config turns it on for CUDA
    only (``renderer.channels_last: auto``). Neither changes what is computed.
    """
    parts = {"unet": model.unet, "vae": model.vae, "tiny_decoder": model.tiny_decoder}
    model.attention = {name: _use_sdpa(m) for name, m in parts.items() if m is not None}
    if channels_last:
        for module in parts.values():
            if module is not None:
                module.to(memory_format=torch.channels_last)
    model.channels_last = channels_last
    log.info(
        "render model attention: %s; channels_last %s",
        ", ".join(f"{k} {v}" for k, v in model.attention.items()),
        "on" if channels_last else "off",
    )


def load_tiny_decoder(path: str | Path, latent_channels: int, dtype: Any) -> Any:
    """An ``AutoencoderTiny`` folder (e.g. TAESD for SD-class models) to decode with."""
    from diffusers import AutoencoderTiny

    path = Path(path)
    if not (path / "config.json").is_file() or _weights_of(path) is None:
        raise ModelError(
            f"tiny autoencoder at {path} is incomplete: need config.json and "
            f"one of {', '.join(_WEIGHT_FILES)}"
        )
    tiny = AutoencoderTiny.from_pretrained(
        path, local_files_only=True, torch_dtype=dtype, use_safetensors=True
    )
    if tiny.config.latent_channels != latent_channels:
        raise ModelError(
            f"tiny autoencoder at {path} takes {tiny.config.latent_channels} latent channels, "
            f"the render model's UNet makes {latent_channels}"
        )
    return tiny.eval()


def checked_device(device: str) -> torch.device:
    """``device`` as a torch device, or a ModelError saying why this machine cannot use it."""
    try:
        torch_device = torch.device(device)
    except RuntimeError as exc:
        raise ModelError(
            f"device must be a torch device such as cpu or cuda, found {device!r}: {exc}"
        ) from None
    if torch_device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (torch_device.index or 0) >= count:
            raise ModelError(
                f"device {device!r} asked for, but torch {torch.__version__} sees "
                f"{count} CUDA device(s) (built with CUDA {torch.version.cuda}); use cpu here"
            )
    return torch_device


def load_render_model(
    path: str | Path,
    device: str = "cpu",
    dtype: str = "float32",
    with_text: bool = False,
    tiny_decoder: str | Path | None = None,
    channels_last: bool = False,
) -> RenderModel:
    """Load a diffusers-format model directory for rendering (and, optionally, its text side).

    ``tiny_decoder``: an ``AutoencoderTiny`` folder to decode latents with
    instead of the model's VAE (the VAE is still loaded, to encode targets).
    ``channels_last``: NHWC weights (see :func:`prepare_for_inference`).
    """
    path = check_model_dir(path, need_text=with_text)
    quiet_hugging_face()
    if dtype not in DTYPES:
        raise ModelError(f"dtype must be one of {sorted(DTYPES)}, found {dtype!r}")
    torch_dtype = DTYPES[dtype]
    torch_device = checked_device(device)
    # use_safetensors: never fall back to pickled .bin weights (docs/protocol.md, "Security")
    kwargs = {"local_files_only": True, "torch_dtype": torch_dtype, "use_safetensors": True}
    try:
        unet = _component_class(path / "unet", "config.json").from_pretrained(
            path / "unet", **kwargs
        )
        vae = _component_class(path / "vae", "config.json").from_pretrained(path / "vae", **kwargs)
        scheduler_cls = _component_class(path / "scheduler", "scheduler_config.json")
        scheduler = scheduler_cls.from_pretrained(path / "scheduler", local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load render model from {path}: {exc}") from None
    unet.to(torch_device).eval()
    vae.to(torch_device).eval()
    text_encoder = tokenizer = None
    if with_text:
        from transformers import AutoTokenizer, CLIPTextModel

        tokenizer = AutoTokenizer.from_pretrained(path / "tokenizer", local_files_only=True)
        text_encoder = CLIPTextModel.from_pretrained(
            path / "text_encoder", local_files_only=True, dtype=torch_dtype, use_safetensors=True
        )
        text_encoder.to(torch_device).eval()
    tiny = None
    if tiny_decoder is not None:
        tiny = load_tiny_decoder(tiny_decoder, int(unet.config.out_channels), torch_dtype)
        tiny.to(torch_device)
    vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
    sample = unet.config.sample_size
    sample = sample if isinstance(sample, int) else int(sample[0])
    model = RenderModel(
        path=path,
        unet=unet,
        vae=vae,
        scheduler=scheduler,
        device=torch_device,
        dtype=torch_dtype,
        fingerprint=model_fingerprint(path),
        latent_shape=(int(unet.config.in_channels), sample, sample),
        cond_shape=(_cond_tokens(path), int(unet.config.cross_attention_dim)),
        image_size=sample * vae_scale,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        tiny_decoder=tiny,
    )
    prepare_for_inference(model, channels_last)
    log.info(
        "loaded render model %s (%s): z %s, c %s, %d px",
        path,
        model.fingerprint,
        model.latent_shape,
        model.cond_shape,
        model.image_size,
    )
    return model
