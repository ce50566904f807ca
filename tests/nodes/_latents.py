"""Typed latents headers as the decoder sends them, for the tests that play the decoder."""

from __future__ import annotations

from typing import Any

from rt_recon.decode.bundle import DecoderBundle
from rt_recon.protocol import LatentsHeader, Times


def latents_header(bundle: DecoderBundle, seq: int = 0, **fields: Any) -> LatentsHeader:
    """The header of latents message ``seq`` for ``bundle``'s model (TR ``seq``, continuous
    mode, acquired at 0 s); ``fields`` replace any of its values."""
    values: dict[str, Any] = {
        "seq": seq,
        "tr": seq,
        "volume_crc32": 0,
        "session": "s",
        "run": "1",
        "model_fingerprint": bundle.model.fingerprint,
        "lag_trs": bundle.window.lag_trs,
        "mode": "continuous",
        "times": Times(acquired=0.0),
    }
    return LatentsHeader(**{**values, **fields})
