"""A training run paused at its time limit and resumed, over and over, ends with the weights
of an uninterrupted run, bit for bit (training/checkpoint.py); a checkpoint of another
configuration is refused; nothing is pickled."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from rt_recon.simulators.world import StimulusWorld
from training.checkpoint import Checkpoint, Paused
from training.train_embedded import TrainConfig, build_components, train

CFG = TrainConfig(vae_steps=3, vae_batch=4, unet_steps=3, unet_batch=4, uncond_prob=0.5)


def _inputs(cfg: TrainConfig):
    world = StimulusWorld(seed=0, image_size=cfg.image_size)
    components = build_components(cfg, world.vocabulary())
    tokenizer = components[1]
    ids = list(range(8))
    pixels = torch.from_numpy(world.images(ids)).permute(0, 3, 1, 2).float() / 127.5 - 1
    tokens = tokenizer(
        [world.caption(i) for i in ids], padding="max_length", max_length=cfg.max_tokens,
        return_tensors="pt",
    ).input_ids  # fmt: skip
    empty = torch.tensor(
        tokenizer([""], padding="max_length", max_length=cfg.max_tokens).input_ids[0]
    )
    vae, _, text_encoder, unet, scheduler = components
    return pixels, tokens, empty, torch.arange(6), (vae, text_encoder, unet, scheduler)


def _weights(modules) -> dict[str, torch.Tensor]:
    return {f"{i}.{k}": v for i, m in enumerate(modules) for k, v in m.state_dict().items()}


def test_a_run_paused_after_every_step_ends_where_an_uninterrupted_one_does(tmp_path):
    pixels, tokens, empty, train_ids, parts = _inputs(CFG)
    ema, scaling, curves, _ = train(CFG, pixels, tokens, empty, train_ids, parts)
    expected = _weights([parts[0], parts[1], ema])

    pauses = 0
    while True:  # each pass is a new process: fresh components, the checkpoint on disk
        pixels, tokens, empty, train_ids, fresh = _inputs(CFG)
        checkpoint = Checkpoint(tmp_path / "ckpt", asdict(CFG), every=1, time_limit_s=0.0)
        try:
            ema2, scaling2, curves2, seconds = train(
                CFG, pixels, tokens, empty, train_ids, fresh, checkpoint
            )
            break
        except Paused:
            pauses += 1
            assert pauses < 20
    assert pauses == CFG.vae_steps + CFG.unet_steps  # one save and stop after each step
    got = _weights([fresh[0], fresh[1], ema2])
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(got[key], value), key
    assert scaling2 == scaling and curves2 == curves
    assert set(seconds) == {"vae_s", "unet_s", "earlier_sessions_s"}
    assert min(seconds.values()) > 0
    # the last session ran the last UNet step: everything before it was earlier sessions'
    assert seconds["earlier_sessions_s"] < seconds["vae_s"] + seconds["unet_s"]
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["state.safetensors"]


def test_a_checkpoint_of_another_configuration_is_refused(tmp_path):
    pixels, tokens, empty, train_ids, parts = _inputs(CFG)
    first = Checkpoint(tmp_path, asdict(CFG), every=1, time_limit_s=0.0)
    with pytest.raises(Paused):
        train(CFG, pixels, tokens, empty, train_ids, parts, first)
    other = asdict(TrainConfig(vae_steps=3, vae_batch=4, unet_steps=5, unet_batch=4))
    with pytest.raises(ValueError, match="unet_steps: saved 3, now 5"):
        Checkpoint(tmp_path, other).load()
    moved = asdict(CFG) | {"threads": 2, "device": "cpu"}  # these do not change the result
    meta, _ = Checkpoint(tmp_path, moved).load()
    assert meta["stage"] == "vae" and meta["step"] == 0
    with pytest.raises(ValueError, match="checkpoint-every must be >= 1"):
        Checkpoint(tmp_path, asdict(CFG), every=0)
