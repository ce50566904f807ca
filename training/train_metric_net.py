"""Train the frozen metric network that scores reconstructions (docs/metrics.md).

    python -m training.train_metric_net --out rt_recon/assets/metric_net --docs docs/metrics

A small CNN (:class:`rt_recon.evaluate.metric_net.MetricNet`) learns to read
the six attributes of the synthetic world's pictures (shape, colour, texture,
size, position, background), one linear head each on a shared embedding. It
trains on world seed 0's training pictures only (``StimulusWorld(0).
training_ids()``): the 512 held-out pictures, the only ones a synthetic
session's validation and test runs show (under other ids in other seeds'
worlds, the same pictures), are never seen, and are where its accuracy is
measured.

Reconstructions are blurry and off-colour, so every training picture is
degraded at random before it is read: a Gaussian blur of random strength,
additive noise and a small colour jitter (a quarter of them are left clean).
Everything is seeded; the command, configuration, timings, machine, versions
and the held-out accuracy (clean and blurred) go to ``<docs>/record.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from rt_recon.evaluate.metric_net import MetricNet, read_metric_net
from rt_recon.simulators.world import StimulusWorld

log = logging.getLogger("train_metric_net")

#: Blur strengths (Gaussian sigma, pixels at 64x64) the held-out accuracy is reported at.
EVAL_BLURS = (0.0, 1.5, 3.0)


@dataclass
class TrainConfig:
    seed: int = 0
    world_seed: int = 0
    world_version: int = 2  # the world the embedded model and the demo's sessions use
    image_size: int = 64
    channels: tuple[int, ...] = (24, 48, 96, 128)
    embedding_dim: int = 128
    stem_pool: int = 2
    steps: int = 1500
    batch: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    clean_fraction: float = 0.25  # pictures left undegraded
    max_blur: float = 3.0  # Gaussian sigma, pixels
    max_noise: float = 0.08  # std of additive noise, pictures in [0, 1]
    colour_jitter: float = 0.08  # per-channel gain and offset range
    threads: int = 2
    max_train: int = 0  # 0: every training picture (a small number for quick tests)
    max_holdout: int = 0  # 0: every held-out picture


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each ``(3, H, W)`` picture of ``x`` with its own Gaussian ``sigma`` (pixels;
    0 leaves it as it is), separably, reflecting at the borders."""
    n, c, h, w = x.shape
    radius = max(1, math.ceil(3 * float(sigma.max())))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype)
    safe = sigma.clamp(min=1e-3)[:, None]
    kernel = torch.exp(-0.5 * (offsets[None, :] / safe) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    identity = (offsets == 0).to(x.dtype)[None, :].expand(n, -1)
    kernel = torch.where((sigma > 1e-3)[:, None], kernel, identity)
    kernel = kernel.repeat_interleave(c, dim=0)  # (n*c, k)
    flat = F.pad(x.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernel[:, None, None, :], groups=n * c)
    flat = F.conv2d(flat, kernel[:, None, :, None], groups=n * c)
    return flat.reshape(n, c, h, w)


def degrade(x: torch.Tensor, cfg: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """Blur, noise and colour-jitter a batch of ``(n, 3, H, W)`` pictures in [0, 1];
    ``cfg.clean_fraction`` of them are left clean."""
    n = len(x)

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator)

    degraded = uniform(n) >= cfg.clean_fraction
    sigma = uniform(n) * cfg.max_blur * degraded
    out = gaussian_blur(x, sigma)
    gain = 1 + (2 * uniform(n, 3, 1, 1) - 1) * cfg.colour_jitter
    offset = (2 * uniform(n, 3, 1, 1) - 1) * cfg.colour_jitter
    noise = torch.randn(x.shape, generator=generator) * uniform(n, 1, 1, 1) * cfg.max_noise
    jittered = out * gain + offset + noise
    keep = degraded[:, None, None, None]
    return torch.where(keep, jittered, out).clamp(0, 1)


def heads(world: StimulusWorld) -> dict[str, list[str]]:
    """The heads, in order, and their classes, in order: the world's attribute axes."""
    return {name: list(values) for name, values in world.axes}


def split(world: StimulusWorld) -> tuple[np.ndarray, np.ndarray]:
    """``(training ids, held-out ids)`` of ``world``. Training leaves out every picture held
    out in any version of the world (``never_held_out_ids``), so that no session of any
    version tests on a picture the network has seen."""
    return world.never_held_out_ids(), world.holdout_ids()


def draw(world: StimulusWorld, ids: np.ndarray) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Pictures ``(n, 3, H, W)`` uint8 and each head's class indices ``(n,)``."""
    images = torch.from_numpy(world.images(ids)).permute(0, 3, 1, 2).contiguous()
    classes = heads(world)
    labels: dict[str, list[int]] = {name: [] for name in classes}
    for sid in ids:
        for name, value in world.stimulus(int(sid)).attributes.items():
            labels[name].append(classes[name].index(value))
    return images, {name: torch.tensor(v) for name, v in labels.items()}


def accuracy(
    net: MetricNet, images: torch.Tensor, labels: dict[str, torch.Tensor], blur: float
) -> dict[str, float]:
    """Per-head accuracy on ``images`` blurred with sigma ``blur`` (0: clean)."""
    net.eval()
    correct = {name: 0 for name in net.head_classes}
    with torch.no_grad():
        for start in range(0, len(images), 256):
            x = images[start : start + 256].float() / 255.0
            if blur > 0:
                x = gaussian_blur(x, torch.full((len(x),), blur))
            for name, logits in net(x).items():
                truth = labels[name][start : start + 256]
                correct[name] += int((logits.argmax(dim=1) == truth).sum())
    return {name: correct[name] / len(images) for name in net.head_classes}


def train(
    net: MetricNet,
    images: torch.Tensor,
    labels: dict[str, torch.Tensor],
    cfg: TrainConfig,
    curve: list[dict],
) -> None:
    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1
    )
    net.train()
    started = time.perf_counter()
    for step in range(cfg.steps):
        batch = torch.randint(len(images), (cfg.batch,), generator=generator)
        x = degrade(images[batch].float() / 255.0, cfg, generator)
        logits = net(x)
        loss = sum(F.cross_entropy(logits[name], labels[name][batch]) for name in logits)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 50 == 0 or step == cfg.steps - 1:
            curve.append({"step": step, "loss": float(loss.detach())})
            log.info(
                "step %d/%d loss %.4f (%.0f s)",
                step,
                cfg.steps,
                float(loss.detach()),
                time.perf_counter() - started,
            )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = TrainConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the weights and config")
    p.add_argument("--docs", type=Path, required=True, help="folder for record.json")
    for name in (
        "seed",
        "world_version",
        "steps",
        "batch",
        "lr",
        "max_blur",
        "max_noise",
        "colour_jitter",
        "threads",
        "max_train",
        "max_holdout",
    ):
        value = getattr(defaults, name)
        p.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k not in ("out", "docs")})
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    world = StimulusWorld(cfg.world_seed, cfg.image_size, cfg.world_version)
    train_ids, holdout_ids = split(world)
    assert not set(train_ids) & set(holdout_ids)  # never a held-out picture
    if cfg.max_train:
        train_ids = np.random.default_rng(cfg.seed).choice(train_ids, cfg.max_train, False)
    if cfg.max_holdout:
        holdout_ids = holdout_ids[: cfg.max_holdout]
    train_images, train_labels = draw(world, train_ids)
    holdout_images, holdout_labels = draw(world, holdout_ids)
    timings["draw_s"] = time.perf_counter() - t0
    log.info("drew %d training and %d held-out pictures", len(train_ids), len(holdout_ids))

    net = MetricNet(heads(world), cfg.channels, cfg.embedding_dim, cfg.image_size, cfg.stem_pool)
    curve: list[dict] = []
    t1 = time.perf_counter()
    train(net, train_images, train_labels, cfg, curve)
    timings["train_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    heldout = {
        ("clean" if blur == 0 else f"blur sigma {blur:g}"): accuracy(
            net, holdout_images, holdout_labels, blur
        )
        for blur in EVAL_BLURS
    }
    train_clean = accuracy(
        net, train_images[:1024], {k: v[:1024] for k, v in train_labels.items()}, 0
    )
    timings["evaluate_s"] = time.perf_counter() - t2
    timings["total_s"] = time.perf_counter() - t0

    trained_on = {
        "world_seed": cfg.world_seed,
        "world_version": cfg.world_version,
        "pictures": "StimulusWorld(seed, version=...).training_ids()",
        "n_pictures": len(train_ids),
        "held_out": "StimulusWorld(seed).holdout_ids(), never seen in training",
        "n_held_out": len(holdout_ids),
    }
    net.save(args.out, extra={"trained_on": trained_on, "held_out_accuracy": heldout})
    read_metric_net(args.out)  # what was written loads
    weights_mb = sum(p.stat().st_size for p in args.out.iterdir()) / 1e6
    record = {
        "command": "python -m training.train_metric_net "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "config": asdict(cfg),
        "trained_on": trained_on,
        "timings_s": timings,
        "machine": f"{platform.processor() or platform.machine()}, {cfg.threads} torch threads",
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "asset_mb": weights_mb,
        "parameters": sum(p.numel() for p in net.parameters()),
        "held_out_accuracy": heldout,
        "training_accuracy_clean_first_1024": train_clean,
        "loss_curve": curve,
    }
    args.docs.mkdir(parents=True, exist_ok=True)
    (args.docs / "record.json").write_text(json.dumps(record, indent=2))
    log.info(
        "done in %.0f s; asset %.2f MB; held-out accuracy %s",
        timings["total_s"],
        weights_mb,
        heldout,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
