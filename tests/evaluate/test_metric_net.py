"""The frozen metric network: the shipped one reads held-out pictures of the world, its
features are deterministic, and the training code writes weights that load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rt_recon.errors import ModelError, ShapeMismatchError
from rt_recon.evaluate.metric_net import (
    METRIC_NET_DIR,
    MetricNet,
    load_metric_net,
    read_metric_net,
)
from rt_recon.simulators.world import StimulusWorld
from training import train_metric_net

#: What the shipped network must read right on the world's 512 held-out pictures, per
#: attribute, clean (docs/metrics.md states the measured figures; these are their floors).
MIN_HELD_OUT_ACCURACY = {
    "shape": 0.95,
    "colour": 0.97,
    "texture": 0.95,
    "size": 0.97,
    "position": 0.97,
    "background": 0.99,
}


@pytest.fixture(scope="module")
def held_out():
    world = StimulusWorld(seed=0, version=2)  # the shipped net's world
    ids = world.holdout_ids()
    return world.images(ids), [world.stimulus(int(i)).attributes for i in ids]


def test_the_shipped_network_is_small_and_names_its_heads_in_the_world_order():
    net = load_metric_net()
    size = sum(p.stat().st_size for p in METRIC_NET_DIR.iterdir())
    assert size < 2_000_000
    world = StimulusWorld(seed=0, version=2)  # the shipped net's world
    assert net.head_classes == {name: list(values) for name, values in world.axes}
    assert net.trained_on["world_version"] == world.version
    assert net.trained_on["n_pictures"] == len(world.never_held_out_ids())
    assert set(net.held_out_accuracy) == set(net.head_classes)


def test_the_shipped_network_reads_the_held_out_pictures(held_out):
    images, truths = held_out
    net = load_metric_net()
    read = net.attributes(images)
    for head, floor in MIN_HELD_OUT_ACCURACY.items():
        accuracy = np.mean([r == t[head] for r, t in zip(read[head], truths, strict=True)])
        assert accuracy >= floor, (head, accuracy)
        # the accuracy its config states is what it does
        assert accuracy == pytest.approx(net.held_out_accuracy[head], abs=0.01)


def test_features_are_deterministic_and_resized_pictures_read_alike(held_out):
    images = held_out[0][:40]
    net = load_metric_net()
    first = net.features(images)
    assert first.shape == (40, net.embedding_dim) and first.dtype == np.float32
    np.testing.assert_array_equal(first, net.features(images))
    np.testing.assert_array_equal(first, read_metric_net(METRIC_NET_DIR).features(images))
    # a picture's features do not depend on the others in its batch (up to float rounding)
    np.testing.assert_allclose(first[:7], net.features(images[:7]), rtol=1e-4, atol=1e-5)
    big = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)  # 128x128, resized back to 64
    corr = [np.corrcoef(a, b)[0, 1] for a, b in zip(first, net.features(big), strict=True)]
    assert min(corr) > 0.95


def test_a_picture_that_is_not_rgb_uint8_is_refused():
    net = load_metric_net()
    with pytest.raises(ShapeMismatchError, match=r"\(n, H, W, 3\) uint8"):
        net.features(np.zeros((2, 64, 64, 3), dtype=np.float32))
    with pytest.raises(ShapeMismatchError):
        net.attributes(np.zeros((64, 64, 3), dtype=np.uint8))


def test_a_folder_without_a_network_says_what_to_do(tmp_path):
    with pytest.raises(ModelError, match=r"train one with `python -m training\.train_metric_net`"):
        read_metric_net(tmp_path)


def test_a_tiny_training_run_writes_weights_that_load(tmp_path):
    out, docs = tmp_path / "net", tmp_path / "docs"
    args = ["--out", str(out), "--docs", str(docs), "--steps", "3", "--batch", "8"]
    assert train_metric_net.main([*args, "--max-train", "32", "--max-holdout", "16"]) == 0
    net = read_metric_net(out)
    assert isinstance(net, MetricNet)
    assert not any(p.requires_grad for p in net.parameters())
    assert net.trained_on["n_pictures"] == 32
    assert set(net.held_out_accuracy) == set(net.head_classes)
    images = StimulusWorld(seed=0).images([0, 1, 2])
    assert net.features(images).shape == (3, net.embedding_dim)
    record = json.loads((docs / "record.json").read_text())
    assert record["config"]["steps"] == 3
    assert set(record["held_out_accuracy"]) == {"clean", "blur sigma 1.5", "blur sigma 3"}
    assert not list(out.glob("*.pt")) and not list(out.glob("*.pkl"))  # safetensors + JSON


def test_training_never_sees_a_held_out_picture():
    world = StimulusWorld(seed=0, version=2)  # the shipped net's world
    train_ids, holdout_ids = train_metric_net.split(world)
    assert len(holdout_ids) == 512 and len(train_ids) < world.n_stimuli - 512
    assert not set(train_ids.tolist()) & set(holdout_ids.tolist())
    # nor a picture world 1 holds out (its pictures are world 2's on plain backgrounds)
    first = StimulusWorld(seed=0, version=1)
    held_in_1 = {tuple(first.stimulus(int(i)).attributes.values()) for i in first.holdout_ids()}
    seen = {tuple(world.stimulus(int(i)).attributes.values()) for i in train_ids}
    assert not seen & held_in_1
    assert len(train_ids) == world.n_stimuli - len(
        held_in_1 | {tuple(world.stimulus(int(i)).attributes.values()) for i in holdout_ids}
    )
