"""Where the embedded default render model lives.

The model ships inside the package (``rt_recon/assets/embedded_model``): a
small VAE, UNet and text encoder trained on the synthetic stimulus world by
``training/train_embedded.py`` (docs/embedded.md). It loads through the
same code path as any diffusers-format directory, SD-Turbo included.
"""

from __future__ import annotations

from pathlib import Path

from rt_recon.config import EMBEDDED_MODEL, SessionConfig
from rt_recon.errors import ModelError

EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "assets" / "embedded_model"


def resolve_model_path(config: SessionConfig) -> Path:
    """The model directory a config names: its path, or the embedded default."""
    if config.renderer.model != EMBEDDED_MODEL:
        return Path(config.renderer.model)
    if not (EMBEDDED_DIR / "unet").is_dir():
        raise ModelError(
            f"the embedded model is missing from {EMBEDDED_DIR}; reinstall rt-recon or "
            "retrain it with `python -m training.train_embedded`"
        )
    return EMBEDDED_DIR
