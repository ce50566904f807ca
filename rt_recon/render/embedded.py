"""Where the embedded default render model lives.

The trained model ships inside the package (``rt_recon/assets/embedded_model``).
Until it exists, a tiny randomly initialised model is built once into the
cache and used through the same loading path.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rt_recon.config import EMBEDDED_MODEL, SessionConfig

log = logging.getLogger(__name__)

EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "assets" / "embedded_model"


def resolve_model_path(config: SessionConfig) -> Path:
    """The model directory a config names: its path, or the embedded default."""
    if config.renderer.model != EMBEDDED_MODEL:
        return Path(config.renderer.model)
    if (EMBEDDED_DIR / "unet").is_dir():
        return EMBEDDED_DIR
    fallback = config.paths.cache_dir / "models" / "tiny-random"
    if not (fallback / "unet").is_dir():
        from rt_recon.render.tiny import build_tiny_model
        from simulators.world import StimulusWorld

        log.warning("no trained embedded model in the package; building a random tiny model")
        build_tiny_model(fallback, StimulusWorld().vocabulary(), image_size=64)
    return fallback
