"""The frozen metric network: a small CNN that reads the synthetic world's pictures.

A reconstruction is judged the way MindEye (Scotti et al. 2023) judges one: in
the feature space of a frozen network trained on other pictures, not in raw
pixels, where a flat picture of the right background colour already scores
well. This network was trained by ``training/train_metric_net.py`` on the
world's training pictures only (never a held-out one), with blur, noise and
colour jitter so that it reads blurry reconstructions as well as clean
pictures (docs/metrics.md).

Architecture: the 64x64 picture averaged down by ``stem_pool`` (2: to 32x32,
the detail a blurry reconstruction has); four convolution blocks (3x3
convolution, batch norm, ReLU, 2x2 max pooling after all but the last), each
fed the picture's normalised ``(x, y)`` coordinates as two extra channels so
that global pooling keeps where the shape is; global average pooling; one
linear layer to the embedding (:meth:`MetricNet.features`, ``embedding_dim``
floats); one linear head per attribute on the embedding
(:meth:`MetricNet.attributes`). ``config.json`` beside the weights names the
heads and their classes in order, so this module needs nothing from the
simulator.

Weights are safetensors (``model.safetensors``), the configuration JSON.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.numpy import load_file
from torch import nn

from rt_recon._safetensors import save_arrays
from rt_recon.errors import ModelError, ShapeMismatchError

log = logging.getLogger(__name__)

#: The shipped network (package data).
METRIC_NET_DIR = Path(__file__).resolve().parent.parent / "assets" / "metric_net"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT = "rt_recon.metric_net"
VERSION = 1

_BATCH = 256


def _coordinates(x: torch.Tensor) -> torch.Tensor:
    """``(n, 2, H, W)``: each pixel's x and y in [-1, 1]."""
    n, _, h, w = x.shape
    ys = torch.linspace(-1.0, 1.0, h, dtype=x.dtype, device=x.device)
    xs = torch.linspace(-1.0, 1.0, w, dtype=x.dtype, device=x.device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y]).expand(n, 2, h, w)


class _Block(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, pool: bool):
        super().__init__()
        self.conv = nn.Conv2d(in_channels + 2, out_channels, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.norm(self.conv(torch.cat([x, _coordinates(x)], dim=1))))
        return nn.functional.max_pool2d(x, 2) if self.pool else x


class MetricNet(nn.Module):
    """``(n, 3, 64, 64)`` float pictures in [0, 1] -> embedding and per-attribute logits.

    ``heads``: attribute name -> its class names, in the order of the head's outputs.
    Use :meth:`features` and :meth:`attributes` on uint8 pictures; ``forward`` is for
    training.
    """

    def __init__(
        self,
        heads: dict[str, list[str]],
        channels: Sequence[int] = (24, 48, 96, 128),
        embedding_dim: int = 128,
        image_size: int = 64,
        stem_pool: int = 2,
    ):
        super().__init__()
        self.head_classes = {name: list(classes) for name, classes in heads.items()}
        self.channels = tuple(int(c) for c in channels)
        self.embedding_dim = int(embedding_dim)
        self.image_size = int(image_size)
        self.stem_pool = int(stem_pool)
        #: Accuracy per head on the world's true held-out pictures, as trained (config.json).
        self.held_out_accuracy: dict[str, float] = {}
        #: What it was trained on (world seed and version, pictures; config.json).
        self.trained_on: dict = {}
        blocks, previous = [], 3
        for k, c in enumerate(self.channels):
            blocks.append(_Block(previous, c, pool=k < len(self.channels) - 1))
            previous = c
        self.blocks = nn.Sequential(*blocks)
        self.embed = nn.Linear(previous, self.embedding_dim)
        self.heads = nn.ModuleDict(
            {name: nn.Linear(self.embedding_dim, len(c)) for name, c in self.head_classes.items()}
        )

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 3, H, W)`` in [0, 1] -> ``(n, embedding_dim)``."""
        if self.stem_pool > 1:
            x = nn.functional.avg_pool2d(x, self.stem_pool)
        return self.embed(self.blocks(x - 0.5).mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(n, 3, H, W)`` in [0, 1] -> logits per head, ``{name: (n, n_classes)}``."""
        e = self.embedding(x)
        return {name: head(e) for name, head in self.heads.items()}

    # -- on pictures ------------------------------------------------------------------------

    def _tensor(self, images: np.ndarray) -> torch.Tensor:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ShapeMismatchError(
                f"the metric network reads (n, H, W, 3) uint8 pictures, found {images.shape} "
                f"{images.dtype}"
            )
        side = self.image_size
        if images.shape[1:3] != (side, side):
            images = np.stack(
                [
                    np.asarray(Image.fromarray(im).resize((side, side), Image.Resampling.BILINEAR))
                    for im in images
                ]
            )
        return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0

    def features(self, images: np.ndarray) -> np.ndarray:
        """``(n, H, W, 3)`` uint8 -> ``(n, embedding_dim)`` float32 (resized to 64x64 if
        needed): the feature space of identification."""
        self.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(images), _BATCH):
                out.append(self.embedding(self._tensor(images[start : start + _BATCH])).numpy())
        if not out:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        return np.concatenate(out).astype(np.float32)

    def attributes(self, images: np.ndarray) -> dict[str, list[str]]:
        """``(n, H, W, 3)`` uint8 -> the class the network reads per head, ``{head: [n]}``."""
        self.eval()
        found: dict[str, list[str]] = {name: [] for name in self.head_classes}
        with torch.no_grad():
            for start in range(0, len(images), _BATCH):
                logits = self(self._tensor(images[start : start + _BATCH]))
                for name, values in logits.items():
                    classes = self.head_classes[name]
                    found[name].extend(classes[int(i)] for i in values.argmax(dim=1))
        return found

    # -- files ------------------------------------------------------------------------------

    def config(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "image_size": self.image_size,
            "channels": list(self.channels),
            "embedding_dim": self.embedding_dim,
            "stem_pool": self.stem_pool,
            "heads": [{"name": n, "classes": c} for n, c in self.head_classes.items()],
        }

    def save(self, directory: str | Path, extra: dict | None = None) -> Path:
        """Write ``model.safetensors`` and ``config.json`` (plus ``extra`` keys) into
        ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        arrays = {k: v.detach().cpu().numpy() for k, v in self.state_dict().items()}
        save_arrays(arrays, out / WEIGHTS, metadata={"format": FORMAT})
        (out / CONFIG).write_text(json.dumps({**self.config(), **(extra or {})}, indent=2))
        return out


def read_metric_net(directory: str | Path) -> MetricNet:
    """The network saved in ``directory`` (``config.json`` + ``model.safetensors``), frozen."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG, directory / WEIGHTS
    if not config_path.is_file() or not weights_path.is_file():
        raise ModelError(
            f"no metric network in {directory}: expected {CONFIG} and {WEIGHTS}; reinstall "
            "rt-recon or train one with `python -m training.train_metric_net`"
        )
    config = json.loads(config_path.read_text())
    if config.get("format") != FORMAT or config.get("version") != VERSION:
        raise ModelError(
            f"{config_path} is format {config.get('format')!r} version "
            f"{config.get('version')!r}; this rt_recon reads {FORMAT!r} version {VERSION}"
        )
    net = MetricNet(
        {h["name"]: h["classes"] for h in config["heads"]},
        channels=config["channels"],
        embedding_dim=config["embedding_dim"],
        image_size=config["image_size"],
        stem_pool=config["stem_pool"],
    )
    state = {k: torch.from_numpy(v) for k, v in load_file(str(weights_path)).items()}
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"{weights_path} does not match {config_path}: {exc}") from exc
    clean = config.get("held_out_accuracy", {}).get("clean", {})
    net.held_out_accuracy = {str(k): float(v) for k, v in clean.items()}
    net.trained_on = dict(config.get("trained_on", {}))
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    log.debug("metric network loaded from %s", directory)
    return net


@lru_cache(maxsize=4)
def _cached(directory: str) -> MetricNet:
    return read_metric_net(directory)


def load_metric_net(path: str | Path | None = None) -> MetricNet:
    """The metric network at ``path`` (default: the shipped one, :data:`METRIC_NET_DIR`),
    frozen and in eval mode; loaded once per path per process."""
    return _cached(str(Path(path).resolve() if path is not None else METRIC_NET_DIR))
