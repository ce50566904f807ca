"""Masks drawn over the mean EPI: a PNG showing each mask where it is, in its colour."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rt_recon.decode.bundle import DecoderBundle, DecoderHead, ModelSpec, StreamSpec, WindowSpec
from rt_recon.errors import ShapeMismatchError
from rt_recon.evaluate.mask_figure import (
    bundle_masks,
    channels_to_mask,
    draw_bundle_masks,
    draw_masks,
)
from rt_recon.preprocess import PreprocessSpec


def _brain(shape=(20, 24, 10)) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    x, y, _ = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    mean = np.where(x**2 + y**2 < 0.8, 800.0, 30.0)
    left = np.zeros(shape, bool)
    left[3:7, 4:8, 2:5] = True  # right of the picture is +x: this block is on the left
    back = np.zeros(shape, bool)
    back[12:16, 2:5, 6:8] = True
    return mean, {"ev": left, "hv": back}


def _colour_fraction(rgb: np.ndarray, colour: tuple[int, int, int]) -> float:
    return float(np.mean(np.abs(rgb.astype(int) - colour).sum(axis=-1) < 60))


def test_masks_are_drawn_in_their_colours(tmp_path):
    mean, masks = _brain()
    path = draw_masks(mean, masks, tmp_path / "fig" / "masks.png", n_slices=4)
    rgb = np.asarray(Image.open(path).convert("RGB"))
    assert rgb.shape[1] > rgb.shape[0] > 100  # a row of slices
    assert _colour_fraction(rgb, (214, 39, 40)) > 0  # tab:red outline of the first mask
    assert _colour_fraction(rgb, (23, 190, 207)) > 0  # tab:cyan, the second
    empty = draw_masks(mean, {"ev": np.zeros_like(masks["ev"])}, tmp_path / "empty.png")
    assert _colour_fraction(np.asarray(Image.open(empty).convert("RGB")), (214, 39, 40)) < 0.01


def test_a_mask_on_another_grid_is_refused(tmp_path):
    mean, masks = _brain()
    with pytest.raises(ShapeMismatchError, match="mask 'ev' has shape"):
        draw_masks(mean, {"ev": masks["ev"][:-1]}, tmp_path / "x.png")


def test_a_bundles_heads_become_masks(tmp_path):
    mean, masks = _brain()
    shape = mean.shape
    flat = {k: np.flatnonzero(np.ravel(v, order="F")) for k, v in masks.items()}
    np.testing.assert_array_equal(channels_to_mask(flat["ev"], shape), masks["ev"])
    heads = {
        name: DecoderHead(
            name=name,
            voxels=flat[roi],
            weights=np.zeros((len(flat[roi]), 2), np.float32),
            intercept=np.zeros(2, np.float32),
            alphas=np.ones(2, np.float32),
            target_shape=(2,),
        )
        for name, roi in (("z", "ev"), ("c", "hv"))
    }
    bundle = DecoderBundle(
        heads=heads,
        stream=StreamSpec(shape, int(np.prod(shape))),
        preprocess=PreprocessSpec(4, None, None, None),
        window=WindowSpec((1.0,), 4, 1.0),
        model=ModelSpec("t", (2,), (2,), 8),
        report={"voxels": {"heads": {"z": {"method": "auto"}, "c": {"method": "given"}}}},
    )
    got = bundle_masks(bundle)
    np.testing.assert_array_equal(got["z voxels"], masks["ev"])
    np.testing.assert_array_equal(got["c voxels"], masks["hv"])
    assert draw_bundle_masks(bundle, mean, tmp_path / "b.png").is_file()
