"""Pieces of the embedded model's training that a retrain relies on (the full run takes
about 100 minutes and is recorded in docs/embedded/record.json, not run here)."""

from __future__ import annotations

import torch

from rt_recon.simulators.world import StimulusWorld
from training.train_embedded import TrainConfig, build_components, drop_captions


def test_conditioning_dropout_replaces_whole_captions_with_the_empty_one():
    tokens = torch.arange(4000).reshape(1000, 4) + 10
    empty = torch.tensor([1, 2, 0, 0])
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(drop_captions(tokens, empty, 0.0, generator), tokens)
    assert (drop_captions(tokens, empty, 1.0, generator) == empty).all()
    out = drop_captions(tokens, empty, 0.1, generator)
    dropped = (out == empty).all(dim=1)
    kept = (out == tokens).all(dim=1)
    assert (dropped | kept).all()  # a caption is dropped whole or kept whole
    assert 60 < int(dropped.sum()) < 140  # about 10% of 1,000


def test_the_empty_caption_tokenises_and_world_2_captions_fit_the_tokenizer():
    cfg = TrainConfig(world_version=2)
    world = StimulusWorld(seed=0, image_size=32, version=2)
    _, tokenizer, *_ = build_components(cfg, world.vocabulary())
    empty = tokenizer([""], padding="max_length", max_length=cfg.max_tokens).input_ids[0]
    assert len(empty) == cfg.max_tokens
    unk = tokenizer.unk_token_id
    for i in range(0, world.n_stimuli, 997):
        ids = tokenizer(world.caption(i)).input_ids
        assert unk not in ids and len(ids) <= cfg.max_tokens, world.caption(i)


def test_a_few_training_steps_run_on_the_configured_device():
    """The VAE and UNet loops move what they draw to ``cfg.device`` (cpu here; cuda on a GPU)."""
    from training.train_embedded import encode_all, train_unet, train_vae

    cfg = TrainConfig(vae_steps=2, vae_batch=4, unet_steps=2, unet_batch=4, uncond_prob=0.5)
    world = StimulusWorld(seed=0, image_size=cfg.image_size)
    vae, tokenizer, text_encoder, unet, scheduler = build_components(cfg, world.vocabulary())
    device = torch.device(cfg.device)
    ids = list(range(8))
    pixels = torch.from_numpy(world.images(ids)).permute(0, 3, 1, 2).float() / 127.5 - 1
    tokens = tokenizer(
        [world.caption(i) for i in ids], padding="max_length", max_length=cfg.max_tokens,
        return_tensors="pt",
    ).input_ids.to(device)  # fmt: skip
    empty = tokenizer([""], padding="max_length", max_length=cfg.max_tokens).input_ids[0]
    curves: dict[str, list] = {"vae": [], "unet": []}
    train_vae(vae.to(device), pixels.to(device), cfg, curves["vae"])
    latents = encode_all(vae, pixels.to(device))
    ema = train_unet(
        unet.to(device), text_encoder.to(device), latents, tokens, scheduler, cfg,
        curves["unet"], empty=torch.tensor(empty),
    )  # fmt: skip
    assert len(curves["vae"]) == 2 and len(curves["unet"]) == 2
    assert all(torch.isfinite(torch.tensor(c["mse"])) for c in curves["unet"])
    assert next(ema.parameters()).device.type == device.type
