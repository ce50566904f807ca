"""Where the embedded default render model lives.

The model ships inside the package (``rt_recon/assets/embedded_model``): a
small VAE, UNet and text encoder trained on the synthetic stimulus world by
``training/train_embedded.py`` (docs/embedded.md). It loads through the
same code path as any diffusers-format directory, SD-Turbo included.

A model is named the same way everywhere (``renderer.model`` in a config,
``rt-recon fit --model``): the word ``embedded``
(:data:`~rt_recon.config.EMBEDDED_MODEL`) for this one, anything else a
path to a diffusers-format folder (a folder called ``embedded`` in the
working directory is ``./embedded``).
"""

from __future__ import annotations

import json
from pathlib import Path

from rt_recon.config import EMBEDDED_MODEL, SessionConfig
from rt_recon.errors import ModelError

EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "assets" / "embedded_model"


def resolve_model(model: str | Path) -> Path:
    """The model directory ``model`` names: ``"embedded"`` the shipped default (a
    ModelError if it is missing from the installation), anything else a path."""
    if isinstance(model, Path) or model != EMBEDDED_MODEL:
        return Path(model)
    if not (EMBEDDED_DIR / "unet").is_dir():
        raise ModelError(
            f"the embedded model is missing from {EMBEDDED_DIR}; reinstall rt-recon or "
            "retrain it with `python -m training.train_embedded`"
        )
    return EMBEDDED_DIR


def resolve_model_path(config: SessionConfig) -> Path:
    """The model directory a config names (``renderer.model``): its path, or the embedded
    default."""
    return resolve_model(config.renderer.model)


#: A render model's record of the picture world it was trained on (written by
#: ``training.train_embedded``): ``{"seed": ..., "version": ..., "n_pictures": ...}``.
WORLD_FILE = "world.json"


def trained_world_version(model_dir: Path) -> int | None:
    """The world version the render model in ``model_dir`` was trained on, or None when it
    does not say (a model not trained by this project)."""
    path = Path(model_dir) / WORLD_FILE
    if not path.is_file():
        return None
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(
            f"{path}: expected JSON with an integer 'version' (the world the model was "
            f"trained on), found {path.read_text(encoding='utf-8')[:80]!r} ({exc})"
        ) from exc
