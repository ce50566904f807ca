"""The demo's bundle cache (``rt_recon.apps.demo.ensure_bundle``): a bundle cached before the
fit stored a confidence is refitted, never used without one."""

from __future__ import annotations

import hashlib
import json

from rt_recon.apps.demo import ensure_bundle
from rt_recon.config import SessionConfig
from rt_recon.decode.bundle import DecoderBundle
from rt_recon.render.model import model_fingerprint


def test_a_cached_bundle_from_before_the_confidence_is_refitted(
    tmp_path, small_dataset, small_bundle_path, tiny_model_dir
):
    config = SessionConfig.model_validate(
        {"paths": {"cache_dir": str(tmp_path / "cache")}, "fit": {"alphas": [1.0, 100.0, 1e4]}}
    ).resolved()
    # where the cache kept this dataset's bundle before the confidence: its key had the
    # dataset, the model and the fit settings only
    old_key = hashlib.sha256(
        json.dumps(
            {
                "dataset": small_dataset.root.name,
                "model": model_fingerprint(tiny_model_dir),
                "fit": config.fit.model_dump(mode="json"),
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:12]
    old = DecoderBundle.load(small_bundle_path)
    old.confidence = None
    stale = old.save(config.paths.cache_dir / "bundles" / f"{old_key}.safetensors")
    path = ensure_bundle(small_dataset, tiny_model_dir, config)
    assert path != stale and path.parent == stale.parent
    assert DecoderBundle.load(path).confidence is not None
    assert ensure_bundle(small_dataset, tiny_model_dir, config) == path  # cached from now on
