"""Train the embedded default render model on the synthetic stimulus world.

    python -m training.train_embedded --out rt_recon/assets/embedded_model --docs docs/embedded

Three components, all in diffusers/transformers format, trained from scratch
on CPU in about 100 minutes (docs/embedded/record.json has the last run), or on a
GPU with ``--device cuda`` (random draws stay on a CPU generator, so the batches are the
same on every device):

1. **VAE** (``AutoencoderKL``, 64x64 RGB -> 4x16x16 latents): L1
   reconstruction plus a small KL term; afterwards the latent scaling factor
   is set so the scaled latents have unit variance (as SD's 0.18215).
2. **Text encoder** (a small ``CLIPTextModel``) with a word-level tokenizer
   over the caption vocabulary, trained jointly with
3. **UNet** (``UNet2DConditionModel``, cross-attention on the caption
   states): a diffusion model that predicts the clean latent (``prediction_type
   = "sample"``), which keeps 1-4-step sampling sharp (SD-Turbo-style use: no
   classifier-free guidance; with ``--uncond-prob`` a share of samples is trained
   on the empty caption, so guidance against it can be used). Half of the
   training timesteps are drawn from
   the trailing 1-4-step grids the renderer uses, half uniformly. The
   caption states get a little Gaussian noise during training, so the model
   tolerates the noisy ``c`` a decoder predicts from brain activity.

The scheduler shipped is ``EulerDiscreteScheduler`` with trailing timestep
spacing, the same class SD-Turbo uses, so the renderer's code path is the
same for both. Everything is seeded; the command, configuration, timings,
machine and final metrics are written to ``<docs>/record.json`` with loss
curves and sample grids beside it.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from training import checkpoint as ckpt

log = logging.getLogger("train_embedded")


@dataclass
class TrainConfig:
    seed: int = 0
    image_size: int = 64
    max_tokens: int = 16
    # VAE
    vae_channels: tuple[int, ...] = (32, 64, 64)
    vae_steps: int = 2000
    vae_batch: int = 32
    vae_lr: float = 1e-3
    vae_kl_weight: float = 1e-5
    # text encoder + UNet
    text_dim: int = 64
    text_layers: int = 2
    unet_channels: tuple[int, ...] = (32, 64, 128)
    unet_steps: int = 4000
    unet_batch: int = 64
    unet_lr: float = 5e-4
    ema_decay: float = 0.999
    cond_noise: float = 0.2  # std of noise added to caption states, relative to their std
    grid_fraction: float = 0.5  # share of timesteps drawn from the renderer's trailing grids
    uncond_prob: float = 0.1  # share of samples trained on the empty caption (for guidance)
    world_version: int = 2  # the picture world (simulators/world.py)
    threads: int = 0  # torch threads; 0 keeps the default
    device: str = "cpu"  # "cuda" trains on a GPU (minutes instead of about 100 on 2 CPU cores)


def trailing_grid(n_train: int = 1000, max_steps: int = 4) -> list[int]:
    """Union of the trailing timestep grids for 1..max_steps steps (as diffusers spaces them)."""
    grid = set()
    for steps in range(1, max_steps + 1):
        grid.update(np.round(np.arange(n_train, 0, -n_train / steps)).astype(int) - 1)
    return sorted(grid)


def cosine_lr(step: int, total: int, base: float, warmup: int = 100) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def build_components(cfg: TrainConfig, vocabulary: list[str]):
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from rt_recon.render.tokenizer import build_word_tokenizer

    torch.manual_seed(cfg.seed)
    n_levels = len(cfg.vae_channels)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n_levels,
        up_block_types=("UpDecoderBlock2D",) * n_levels,
        block_out_channels=cfg.vae_channels,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=cfg.image_size,
        mid_block_add_attention=False,
    )
    tokenizer = build_word_tokenizer(vocabulary, max_length=cfg.max_tokens)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=cfg.text_dim,
            intermediate_size=2 * cfg.text_dim,
            num_hidden_layers=cfg.text_layers,
            num_attention_heads=4,
            max_position_embeddings=cfg.max_tokens,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    latent_side = cfg.image_size // 2 ** (n_levels - 1)
    unet = UNet2DConditionModel(
        sample_size=latent_side,
        in_channels=4,
        out_channels=4,
        block_out_channels=cfg.unet_channels,
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cfg.text_dim,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    scheduler = EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="sample",
        timestep_spacing="trailing",
        steps_offset=1,  # as SD-Turbo's config; unused by trailing spacing, silences diffusers
    )
    return vae, tokenizer, text_encoder, unet, scheduler


def _resume_loop(
    stage: str,
    parts: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    resume: tuple[dict, dict] | None,
) -> int:
    """Load a checkpoint of ``stage`` into the loop's parts; the first step to run."""
    if resume is None:
        return 0
    meta, tensors = resume
    for name, module in parts.items():
        ckpt.load_module(name, module, tensors)
    ckpt.load_optimizer(stage, optimizer, tensors, meta["optimizer"])
    ckpt.load_generator(stage, generator, tensors)
    return int(meta["step"]) + 1


def _save_loop(
    checkpoint: ckpt.Checkpoint | None,
    stage: str,
    step: int,
    last: int,
    parts: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    record: dict,
) -> None:
    """Save the loop's state when ``checkpoint`` says it is due (may raise Paused)."""
    if checkpoint is None or not checkpoint.due(step, last):
        return
    tensors = {k: v for name, m in parts.items() for k, v in ckpt.module_tensors(name, m).items()}
    opt_tensors, opt_meta = ckpt.optimizer_state(stage, optimizer)
    tensors.update(opt_tensors)
    tensors.update(ckpt.generator_state(stage, generator))
    checkpoint.save(stage, step, tensors, {**record, "optimizer": opt_meta})


def train_vae(
    vae,
    images: torch.Tensor,
    cfg: TrainConfig,
    curve: list,
    *,
    checkpoint: ckpt.Checkpoint | None = None,
    resume: tuple[dict, dict] | None = None,
    record: dict | None = None,
) -> None:
    """``images``: ``(n, 3, H, W)`` float in [-1, 1], on ``cfg.device`` as ``vae`` is.

    Random draws come from a CPU generator on every device (the batches are the same).
    ``checkpoint``: save the loop's state as it says (training.checkpoint); ``resume``: a
    saved ``(meta, tensors)`` of this stage to continue from; ``record``: the run's curves
    and seconds, saved with the state."""
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    optimizer = torch.optim.Adam(vae.parameters(), lr=cfg.vae_lr)
    first = _resume_loop("vae", {"vae": vae}, optimizer, generator, resume)
    vae.train()
    start = time.perf_counter()
    for step in range(first, cfg.vae_steps):
        _set_lr(optimizer, cosine_lr(step, cfg.vae_steps, cfg.vae_lr))
        batch = images[torch.randint(0, len(images), (cfg.vae_batch,), generator=generator)]
        posterior = vae.encode(batch).latent_dist
        recon = vae.decode(posterior.sample(generator=generator)).sample
        rec_loss = F.l1_loss(recon, batch)
        kl = posterior.kl().mean() / posterior.mean[0].numel()
        loss = rec_loss + cfg.vae_kl_weight * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        curve.append({"step": step, "l1": float(rec_loss.detach()), "kl": float(kl.detach())})
        if step % 100 == 0 or step == cfg.vae_steps - 1:
            log.info(
                "vae %5d/%d  l1 %.4f  kl %.2f  (%.0f s)",
                step,
                cfg.vae_steps,
                float(rec_loss.detach()),
                float(kl.detach()),
                time.perf_counter() - start,
            )
        _save_loop(
            checkpoint, "vae", step, cfg.vae_steps - 1, {"vae": vae}, optimizer, generator,
            _stamp(record, "vae_s", start),
        )  # fmt: skip
    vae.eval()


def _stamp(record: dict | None, key: str, start: float) -> dict:
    """``record`` with ``seconds[key]`` counting this segment's time so far."""
    if record is None:
        return {}
    seconds = dict(record["seconds"])  # earlier sessions' and finished stages' seconds
    seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - start
    return {"curves": record["curves"], "seconds": seconds}


@torch.inference_mode()
def encode_all(vae, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    return torch.cat(
        [vae.encode(images[i : i + batch]).latent_dist.mean for i in range(0, len(images), batch)]
    )


def drop_captions(
    tokens: torch.Tensor, empty: torch.Tensor, prob: float, generator: torch.Generator
) -> torch.Tensor:
    """``tokens (n, L)`` with each row replaced by the empty caption ``empty (L,)`` with
    probability ``prob`` (classifier-free guidance's conditioning dropout)."""
    dropped = torch.rand(len(tokens), generator=generator) < prob
    return torch.where(dropped[:, None], empty[None, :], tokens)


def train_unet(
    unet,
    text_encoder,
    latents,
    token_ids,
    scheduler,
    cfg: TrainConfig,
    curve: list,
    empty=None,
    *,
    checkpoint: ckpt.Checkpoint | None = None,
    resume: tuple[dict, dict] | None = None,
    record: dict | None = None,
    also_save: dict[str, torch.nn.Module] | None = None,
):
    """Joint UNet + text encoder training; returns the EMA copy of the UNet.

    ``empty``: the empty caption's token ids ``(max_tokens,)``; a share ``cfg.uncond_prob`` of
    each batch is trained on it instead of its caption, so that the model also learns the
    unconditional prediction classifier-free guidance steers away from. ``checkpoint``,
    ``resume``, ``record``: as :func:`train_vae`; ``also_save``: modules trained before (the
    VAE) saved with each checkpoint, so a resumed run has them."""
    generator = torch.Generator().manual_seed(cfg.seed + 2)
    device = latents.device
    alphas_cumprod = scheduler.alphas_cumprod.float().to(device)
    grid = torch.tensor(trailing_grid())
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.unet_lr, weight_decay=1e-4)
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    parts = {"unet": unet, "text_encoder": text_encoder, "ema": ema}
    first = _resume_loop("unet", parts, optimizer, generator, resume)
    unet.train()
    text_encoder.train()
    start = time.perf_counter()
    n = len(latents)
    for step in range(first, cfg.unet_steps):
        _set_lr(optimizer, cosine_lr(step, cfg.unet_steps, cfg.unet_lr))
        idx = torch.randint(0, n, (cfg.unet_batch,), generator=generator)
        x0 = latents[idx]
        uniform = torch.randint(0, 1000, (cfg.unet_batch,), generator=generator)
        on_grid = grid[torch.randint(0, len(grid), (cfg.unet_batch,), generator=generator)]
        pick = torch.rand(cfg.unet_batch, generator=generator) < cfg.grid_fraction
        t = torch.where(pick, on_grid, uniform).to(device)
        a = alphas_cumprod[t].view(-1, 1, 1, 1)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        tokens = token_ids[idx]
        if cfg.uncond_prob > 0 and empty is not None:
            tokens = drop_captions(tokens.cpu(), empty, cfg.uncond_prob, generator).to(device)
        cond = text_encoder(tokens).last_hidden_state
        if cfg.cond_noise > 0:
            jitter = torch.randn(cond.shape, generator=generator).to(device)
            cond = cond + cfg.cond_noise * cond.detach().std() * jitter
        pred = unet(x_t, t, encoder_hidden_states=cond).sample
        loss = F.mse_loss(pred, x0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        with torch.no_grad():
            for e, p in zip(ema.parameters(), unet.parameters(), strict=True):
                e.lerp_(p, 1 - cfg.ema_decay)
        curve.append({"step": step, "mse": float(loss.detach())})
        if step % 100 == 0 or step == cfg.unet_steps - 1:
            log.info(
                "unet %5d/%d  mse %.4f  (%.0f s)",
                step,
                cfg.unet_steps,
                float(loss.detach()),
                time.perf_counter() - start,
            )
        _save_loop(
            checkpoint, "unet", step, cfg.unet_steps - 1, {**parts, **(also_save or {})},
            optimizer, generator, _stamp(record, "unet_s", start),
        )  # fmt: skip
    text_encoder.eval()
    return ema


def train(
    cfg: TrainConfig,
    pixels: torch.Tensor,
    token_ids: torch.Tensor,
    empty: torch.Tensor,
    train_ids: np.ndarray,
    components: tuple,
    checkpoint: ckpt.Checkpoint | None = None,
) -> tuple[torch.nn.Module, float, dict[str, list], dict[str, float]]:
    """The VAE, then the UNet and text encoder on the VAE's scaled latents.

    ``components``: ``(vae, text_encoder, unet, scheduler)`` as :func:`build_components`
    makes them (trained in place). With ``checkpoint`` the state is saved as it says and a
    run continues from its last save (training.checkpoint; may raise ``Paused``).
    Returns the UNet's EMA copy, the latent scaling factor, the loss curves and the seconds
    each stage took (over every session of a resumed run; ``earlier_sessions_s``: the part of
    them spent before this session)."""
    vae, text_encoder, unet, scheduler = components
    loaded = checkpoint.load() if checkpoint is not None else None
    meta = loaded[0] if loaded is not None else {}
    curves: dict[str, list] = meta.get("curves", {"vae": [], "unet": []})
    seconds: dict[str, float] = dict(meta.get("seconds", {}))
    record = {"curves": curves, "seconds": seconds}
    stage = meta.get("stage")
    if stage == "unet":  # the VAE finished in an earlier session: its weights were saved
        ckpt.load_module("vae", vae, loaded[1])  # type: ignore[index]
    else:
        t1 = time.perf_counter()
        train_vae(
            vae, pixels[train_ids], cfg, curves["vae"], checkpoint=checkpoint,
            resume=loaded if stage == "vae" else None, record=record,
        )  # fmt: skip
        seconds["vae_s"] = seconds.get("vae_s", 0.0) + time.perf_counter() - t1
    vae.eval()
    raw = encode_all(vae, pixels)
    scaling = float(1.0 / raw[train_ids].std())
    latents = raw * scaling
    log.info("latent scaling factor %.4f", scaling)
    t2 = time.perf_counter()
    ema = train_unet(
        unet, text_encoder, latents[train_ids], token_ids[train_ids], scheduler, cfg,
        curves["unet"], empty=empty, checkpoint=checkpoint,
        resume=loaded if stage == "unet" else None, record=record, also_save={"vae": vae},
    )  # fmt: skip
    seconds["unet_s"] = seconds.get("unet_s", 0.0) + time.perf_counter() - t2
    earlier = sum(meta.get("seconds", {}).values())  # training seconds of earlier sessions
    return ema, scaling, curves, {**seconds, "earlier_sessions_s": earlier}


def save_model(out: Path, vae, tokenizer, text_encoder, unet, scheduler, scaling: float) -> None:
    if out.exists():
        shutil.rmtree(out)
    vae.register_to_config(scaling_factor=scaling)
    vae.save_pretrained(out / "vae")
    unet.save_pretrained(out / "unet")
    text_encoder.save_pretrained(out / "text_encoder")
    tokenizer.save_pretrained(out / "tokenizer")
    scheduler.save_pretrained(out / "scheduler")
    (out / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "StableDiffusionPipeline",
                "vae": ["diffusers", "AutoencoderKL"],
                "unet": ["diffusers", "UNet2DConditionModel"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
                "scheduler": ["diffusers", "EulerDiscreteScheduler"],
                "safety_checker": [None, None],
                "feature_extractor": [None, None],
            },
            indent=2,
        )
    )


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def write_world_record(out: Path, cfg: TrainConfig, n_pictures: int) -> Path:
    """``world.json`` beside the model: the world it was trained on, so that a session of
    another version (whose test pictures it may have seen) is warned of
    (rt_recon.render.embedded.trained_world_version)."""
    from rt_recon.render.embedded import WORLD_FILE

    record = {"seed": cfg.seed, "version": cfg.world_version, "n_pictures": n_pictures}
    path = Path(out) / WORLD_FILE
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path


def write_caption_bank(out: Path, captions: list[str]) -> Path:
    """``caption_bank.txt`` beside the model: captions it was trained on (sorted, each
    once), the bank a decoder that snaps ``c`` chooses from (rt_recon.decode.caption_bank).
    Held-out pictures' captions (of any world version) are not in it, so neither is any
    test picture's."""
    from rt_recon.decode.caption_bank import BANK_FILE

    path = Path(out) / BANK_FILE
    path.write_text("".join(f"{c}\n" for c in sorted(set(captions))), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("rt_recon/assets/embedded_model"))
    parser.add_argument("--docs", type=Path, default=Path("docs/embedded"))
    parser.add_argument("--device", help="torch device to train on (default cpu; e.g. cuda)")
    parser.add_argument(
        "--checkpoint", type=Path,
        help="folder to save the run's state in and resume it from (training/checkpoint.py)",
    )  # fmt: skip
    parser.add_argument("--checkpoint-every", type=int, default=100, help="steps between saves")
    parser.add_argument(
        "--time-limit-min", type=float,
        help="with --checkpoint: stop after the first save past this many minutes (exit "
        f"status {ckpt.PAUSED_EXIT}); the same command continues the run",
    )  # fmt: skip
    for name, field in TrainConfig.__dataclass_fields__.items():
        if field.type in ("int", "float"):
            parser.add_argument(f"--{name.replace('_', '-')}", type=eval(field.type))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    overrides = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}
    cfg = TrainConfig(**{k: v for k, v in overrides.items() if v is not None})
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    from rt_recon.simulators.world import StimulusWorld
    from training.evaluate_model import evaluate_and_plot

    torch.manual_seed(cfg.seed)
    world = StimulusWorld(seed=cfg.seed, image_size=cfg.image_size, version=cfg.world_version)
    t0 = time.perf_counter()
    ids = np.arange(world.n_stimuli)
    holdout, train_ids = world.holdout_ids(), world.training_ids()  # the world's one split
    log.info("drawing %d stimuli", len(ids))
    pixels = torch.from_numpy(world.images(ids)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    captions = [world.caption(int(i)) for i in ids]
    vae, tokenizer, text_encoder, unet, scheduler = build_components(cfg, world.vocabulary())
    device = torch.device(cfg.device)
    vae, text_encoder, unet = (m.to(device) for m in (vae, text_encoder, unet))
    pixels = pixels.to(device)
    token_ids = tokenizer(
        captions,
        padding="max_length",
        max_length=cfg.max_tokens,
        truncation=True,
        return_tensors="pt",
    ).input_ids.to(device)
    empty = tokenizer(
        [""], padding="max_length", max_length=cfg.max_tokens, return_tensors="pt"
    ).input_ids[0]
    timings = {"draw_s": time.perf_counter() - t0}

    checkpoint = None
    if args.checkpoint is not None:
        limit = None if args.time_limit_min is None else 60 * args.time_limit_min
        checkpoint = ckpt.Checkpoint(args.checkpoint, asdict(cfg), args.checkpoint_every, limit)
    try:
        ema, scaling, curves, seconds = train(
            cfg, pixels, token_ids, empty, train_ids, (vae, text_encoder, unet, scheduler),
            checkpoint,
        )  # fmt: skip
    except ckpt.Paused as paused:
        log.info("paused at %s: run the same command again to continue", paused)
        return ckpt.PAUSED_EXIT
    timings.update(seconds)  # summed over the sessions of a resumed run
    vae, text_encoder, ema = (m.to("cpu") for m in (vae, text_encoder, ema))
    save_model(args.out, vae, tokenizer, text_encoder, ema, scheduler, scaling)
    # the bank leaves out world 1's held-out captions too: a world-1 session never snaps to
    # its own test picture's caption
    write_caption_bank(args.out, [captions[int(i)] for i in world.never_held_out_ids()])
    write_world_record(args.out, cfg, len(train_ids))
    # this session's wall time, and the run's: a resumed run's earlier sessions add their
    # training seconds (not their drawing)
    timings["session_s"] = time.perf_counter() - t0
    timings["total_s"] = timings["session_s"] + timings["earlier_sessions_s"]

    args.docs.mkdir(parents=True, exist_ok=True)
    metrics = evaluate_and_plot(args.out, world, holdout, train_ids, curves, args.docs)
    record = {
        "command": "python -m training.train_embedded "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "config": asdict(cfg),
        "timings_s": timings,
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads"
        + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""),
        "versions": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "diffusers": __import__("diffusers").__version__,
        },
        "model_mb": folder_mb(args.out),
        "latent_scaling_factor": scaling,
        "final": {"vae_l1": curves["vae"][-1]["l1"], "unet_mse": curves["unet"][-1]["mse"]},
        "metrics": metrics,
    }
    (args.docs / "record.json").write_text(json.dumps(record, indent=2))
    (args.docs / "curves.json").write_text(json.dumps(curves))
    log.info(
        "done in %.0f s; model %.1f MB; metrics %s", timings["total_s"], record["model_mb"], metrics
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
