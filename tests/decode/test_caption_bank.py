"""Snapping the decoded c to a caption bank (rt_recon.decode.caption_bank): the nearest entry
by centred cosine, stored in the bundle, applied by the online decoder after the confidence,
fitted from a caption file; and the embedded model's bank, which holds no held-out caption."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rt_recon.decode.bundle import DecoderBundle
from rt_recon.decode.caption_bank import BANK_FILE, VARIANCE, CaptionBank, read_bank_file
from rt_recon.decode.online import OnlineDecoder
from rt_recon.errors import BundleError, DataError


def _bank(n: int = 40, shape: tuple[int, ...] = (4, 6), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


def test_each_entry_snaps_to_itself_and_nearest_is_the_centred_cosine():
    entries = _bank()
    bank = CaptionBank.build(entries, source="test")
    for i, entry in enumerate(entries):
        assert bank.nearest(entry) == i
        np.testing.assert_allclose(bank.snap(entry), entry, atol=5e-3)  # float16 storage
        assert bank.snap(entry).shape == entry.shape and bank.snap(entry).dtype == np.float32
    flat = entries.reshape(len(entries), -1)
    centred = flat - flat.mean(axis=0)
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    queries = np.random.default_rng(1).normal(size=(200, flat.shape[1])).astype(np.float32)
    # 40 entries in 24 dimensions: the kept components span the centred bank exactly
    for q in queries:
        expected = int(np.argmax(unit @ (q - flat.mean(axis=0))))
        assert bank.nearest(q.reshape(4, 6)) == expected
    # a decoded c half-way from entry 3 towards entry 7, plus a little noise: still entry 3
    q = 0.7 * entries[3] + 0.3 * entries[7] + 0.01 * queries[0].reshape(4, 6)
    assert bank.nearest(q) == 3


def test_the_comparison_space_keeps_the_stated_share_of_variance():
    rng = np.random.default_rng(2)
    low_rank = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 64))
    bank = CaptionBank.build(low_rank + 1e-4 * rng.normal(size=(300, 64)))
    assert 5 <= len(bank.components) < 64
    np.testing.assert_allclose(
        bank.components @ bank.components.T, np.eye(len(bank.components)), atol=1e-5
    )
    assert VARIANCE == 0.999


def test_bad_banks_and_queries_are_refused_with_what_was_found():
    with pytest.raises(DataError, match="at least 2 captions, found 1"):
        CaptionBank.build(_bank(n=1))
    with pytest.raises(DataError, match="same c"):
        CaptionBank.build(np.ones((5, 8)))
    bank = CaptionBank.build(_bank())
    with pytest.raises(DataError, match="c has 10 values, the caption bank's entries 24"):
        bank.nearest(np.zeros(10))


def test_bank_files_one_caption_a_line(tmp_path):
    path = tmp_path / "bank.txt"
    path.write_text("a red circle\n\n  a blue square  \n", encoding="utf-8")
    assert read_bank_file(path) == ["a red circle", "a blue square"]
    path.write_text("only one\n", encoding="utf-8")
    with pytest.raises(DataError, match="at least 2 captions, found 1"):
        read_bank_file(path)
    with pytest.raises(DataError, match=r"caption bank not found: .*missing\.txt"):
        read_bank_file(tmp_path / "missing.txt")


@pytest.fixture(scope="module")
def snapped(small_bundle_path):
    """The shared small bundle, and the same heads with a bank of random c's of its shape."""
    bundle = DecoderBundle.load(small_bundle_path)
    entries = _bank(n=50, shape=tuple(bundle.heads["c"].target_shape), seed=3)
    return bundle, bundle.with_caption_bank(CaptionBank.build(entries, source="random")), entries


def test_a_snapping_bundle_round_trips_and_needs_its_bank(tmp_path, snapped):
    plain, bundle, _ = snapped
    assert bundle.recipe.snap_c and not plain.recipe.snap_c
    assert bundle.recipe.name.endswith("snap")
    loaded = DecoderBundle.load(bundle.save(tmp_path / "snap.safetensors"))
    assert loaded.recipe.snap_c and len(loaded.caption_bank) == 50
    np.testing.assert_array_equal(loaded.caption_bank.scores, bundle.caption_bank.scores)
    assert loaded.report["caption_bank"] == {
        "n": 50,
        "components": len(bundle.caption_bank.components),
        "source": "random",
    }
    with pytest.raises(BundleError, match="snaps c to a caption bank but the bundle has none"):
        dataclasses.replace(plain, recipe=dataclasses.replace(plain.recipe, snap_c=True))
    wrong = CaptionBank.build(_bank(n=10, shape=(3,)))
    with pytest.raises(BundleError, match="entries have 3 values, the c head predicts"):
        plain.with_caption_bank(wrong)


def test_the_online_decoder_snaps_c_after_the_confidence(small_dataset, snapped):
    from rt_recon.acquire.nifti import load_nifti_run

    plain, bundle, _ = snapped
    files = (
        small_dataset.runs("test")[0] if small_dataset.runs("test") else small_dataset.runs()[-1]
    )
    volumes = load_nifti_run(files.bold, files.events).volumes
    a, b = OnlineDecoder(plain), OnlineDecoder(bundle)
    chosen = set()
    for volume in volumes:
        out_a, out_b = a.update(volume), b.update(volume)
        np.testing.assert_array_equal(out_b["z"], out_a["z"])
        np.testing.assert_array_equal(out_b["c"], bundle.caption_bank.snap(out_a["c"]))
        assert a.confidence == b.confidence  # read from the linear prediction
        chosen.add(bundle.caption_bank.nearest(out_a["c"]))
    assert len(chosen) > 1  # the decoder's c moves between captions, it is not stuck on one


def test_a_fit_that_snaps_encodes_the_bank_it_is_given(tmp_path, small_dataset, tiny_model_dir):
    from rt_recon.apps.fit import fit_dataset, fit_from_inputs
    from rt_recon.apps.fit_inputs import FitInputs
    from rt_recon.config import FitSection
    from rt_recon.render.model import load_render_model
    from rt_recon.simulators.world import StimulusWorld

    model = load_render_model(tiny_model_dir, with_text=True)
    fit = FitSection(alphas=(1.0, 100.0, 1e4), recipe={"snap_c": True})
    with pytest.raises(DataError, match=f"snap_c.*{BANK_FILE} does not exist: give --caption-bank"):
        fit_dataset(small_dataset, model, fit)
    world = StimulusWorld()
    captions = [world.caption(int(i)) for i in world.training_ids()[:30]]
    bank_file = tmp_path / "bank.txt"
    bank_file.write_text("\n".join(captions), encoding="utf-8")
    inputs = FitInputs.from_dataset(small_dataset)
    bundle = fit_from_inputs(inputs, model, fit, caption_bank=bank_file).bundle
    plain = fit_dataset(small_dataset, model, FitSection(alphas=(1.0, 100.0, 1e4)))
    assert bundle.recipe.snap_c and len(bundle.caption_bank) == 30
    assert bundle.caption_bank.source == str(bank_file)
    for head in ("z", "c"):  # the heads do not depend on the bank
        np.testing.assert_array_equal(bundle.heads[head].weights, plain.heads[head].weights)


def test_the_embedded_models_bank_is_its_training_captions_and_no_held_out_one():
    from rt_recon.render.embedded import EMBEDDED_DIR
    from rt_recon.simulators.world import StimulusWorld

    bank = read_bank_file(EMBEDDED_DIR / BANK_FILE)
    world = StimulusWorld(seed=0, image_size=64, version=2)  # the world it was trained on
    trained_on = {world.caption(int(i)) for i in world.training_ids()}
    assert bank == sorted({world.caption(int(i)) for i in world.never_held_out_ids()})
    assert set(bank) <= trained_on and len(bank) > 29_000
    for version in (1, 2):  # no held-out caption of either world (1's are 2's plain ones)
        held = StimulusWorld(seed=0, image_size=64, version=version)
        held_out = {held.caption(int(i)) for i in held.holdout_ids()}
        assert len(held_out) == 512 and not held_out & set(bank)
