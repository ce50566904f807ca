"""The embedded default model shipped in the package: small, offline, and it renders its world."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from rt_recon.evaluate.metrics import pixcorr, pixel_features, two_way_identification
from rt_recon.render import (
    EMBEDDED_DIR,
    Img2ImgRenderer,
    encode_captions,
    encode_images,
    load_render_model,
)
from rt_recon.simulators.world import StimulusWorld


@pytest.fixture(scope="module")
def offline_model():
    """Load with every socket connection refused: nothing may touch the network."""
    original = socket.socket.connect

    def refuse(self, address):
        raise AssertionError(f"the model tried to reach the network: {address}")

    socket.socket.connect = refuse
    try:
        return load_render_model(EMBEDDED_DIR, with_text=True)
    finally:
        socket.socket.connect = original


def test_shipped_files_are_at_most_25_mb():
    files = [f for f in EMBEDDED_DIR.rglob("*") if f.is_file()]
    components = {f.parent.name for f in files}
    assert {"unet", "vae", "text_encoder", "tokenizer", "scheduler"} <= components
    assert sum(f.stat().st_size for f in files) <= 25 * 1024 * 1024


def test_loads_offline_with_the_expected_shapes(offline_model):
    assert offline_model.latent_shape == (4, 16, 16)
    assert offline_model.image_size == 64
    assert offline_model.cond_shape[0] == 16


def test_renders_pictures_that_resemble_their_targets(offline_model):
    world = StimulusWorld(seed=0, image_size=64)
    ids = np.arange(100, 124)
    truths = world.images(ids)
    z = encode_images(offline_model, truths)
    c = encode_captions(offline_model, [world.caption(int(i)) for i in ids])
    renderer = Img2ImgRenderer(offline_model, steps=4, strength=0.75, seed=0)
    frames = np.stack([renderer.render(zi, ci) for zi, ci in zip(z, c, strict=True)])
    features, targets = pixel_features(frames), pixel_features(truths)
    assert two_way_identification(features, targets) >= 0.95
    assert pixcorr(features, targets) >= 0.8


def test_caption_alone_steers_the_picture(offline_model):
    """From pure noise (strength 1), the caption decides the background colour."""
    world = StimulusWorld(seed=0, image_size=64)
    renderer = Img2ImgRenderer(offline_model, steps=4, strength=1.0, seed=0)
    zero = np.zeros(offline_model.latent_shape, np.float32)
    captions = {
        bg: f"a small solid red circle at the centre on a {bg} background"
        for bg in ("black", "beige")
    }
    c = encode_captions(offline_model, list(captions.values()))
    dark, light = (renderer.render(zero, ci) for ci in c)
    assert dark[:8, :8].mean() < 60 and light[:8, :8].mean() > 150
    del world
