"""Evaluate a trained embedded model through the production loading and rendering path.

Writes loss curves and sample grids into the docs folder and returns metrics:
pixel identification (MindEye two-way, RGB 32x32) and pixel correlation of

* ``text_only``: 4 steps from pure noise, conditioned on the caption (strength 1);
* ``img2img_true_z``: 4 steps at strength 0.75 from the picture's own latent;
* ``img2img_degraded``: 4 steps at strength 0.75 from a degraded latent
  (half-way to the mean latent, plus noise) and noisy caption states, a
  stand-in for what a decoder predicts from brain activity.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rt_recon.evaluate.metrics import pixcorr, pixel_features, two_way_identification
from rt_recon.render.img2img import Img2ImgRenderer, to_uint8
from rt_recon.render.model import load_render_model
from rt_recon.render.targets import encode_captions, encode_images

N_EVAL = 64


def _render_batch(renderer: Img2ImgRenderer, z: np.ndarray, c: np.ndarray) -> np.ndarray:
    return np.stack([renderer.render(zi, ci) for zi, ci in zip(z, c, strict=True)])


def _scores(recons: np.ndarray, truths: np.ndarray) -> dict[str, float]:
    fr, ft = pixel_features(recons), pixel_features(truths)
    return {
        "identification_pixels": two_way_identification(fr, ft),
        "pixcorr": pixcorr(fr, ft),
        "mse": float(np.mean((recons.astype(float) - truths.astype(float)) ** 2) / 255**2),
    }


def grid_image(rows: list[np.ndarray], scale: int = 2) -> Image.Image:
    """Rows of ``(n, H, W, 3)`` uint8 pictures -> one PIL image, one row per array."""
    strips = [np.concatenate(list(row), axis=1) for row in rows]
    grid = np.concatenate(strips, axis=0)
    image = Image.fromarray(grid)
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def _plot_curves(curves: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, (name, key, label) in zip(
        axes, (("vae", "l1", "VAE L1 reconstruction"), ("unet", "mse", "UNet x0 MSE")), strict=True
    ):
        values = np.array([row[key] for row in curves[name]])
        smooth = np.convolve(values, np.ones(25) / 25, mode="valid") if len(values) > 25 else values
        ax.plot(values, alpha=0.3, lw=0.8)
        ax.plot(np.arange(len(smooth)) + (len(values) - len(smooth)), smooth, lw=1.5)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(label)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


@torch.inference_mode()
def evaluate_and_plot(
    model_dir: Path,
    world,
    holdout: np.ndarray,
    train_ids: np.ndarray,
    curves: dict,
    docs: Path,
) -> dict:
    model = load_render_model(model_dir, with_text=True)
    rng = np.random.default_rng(0)
    metrics = {}
    for split, ids in (("holdout", holdout[:N_EVAL]), ("train", train_ids[:N_EVAL])):
        truths = world.images(ids)
        z = encode_images(model, truths)
        c = encode_captions(model, [world.caption(int(i)) for i in ids])
        recon = to_uint8(model.vae.decode(torch.from_numpy(z) / model.scaling_factor).sample)
        text_only = _render_batch(
            Img2ImgRenderer(model, steps=4, strength=1.0), np.zeros_like(z), c
        )
        img2img = Img2ImgRenderer(model, steps=4, strength=0.75)
        from_true = _render_batch(img2img, z, c)
        z_deg = 0.5 * z + 0.5 * z.mean(axis=0) + 0.3 * rng.normal(size=z.shape).astype(np.float32)
        c_deg = c + 0.3 * c.std() * rng.normal(size=c.shape).astype(np.float32)
        degraded = _render_batch(img2img, z_deg, c_deg)
        metrics[split] = {
            "vae_reconstruction": _scores(recon, truths),
            "text_only": _scores(text_only, truths),
            "img2img_true_z": _scores(from_true, truths),
            "img2img_degraded": _scores(degraded, truths),
        }
        if split == "holdout":
            rows = [truths[:12], recon[:12], text_only[:12], from_true[:12], degraded[:12]]
            grid_image(rows).save(docs / "samples_holdout.png")
    _plot_curves(curves, docs / "loss_curves.png")
    return metrics
