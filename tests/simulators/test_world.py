import numpy as np
import pytest

from rt_recon.simulators.world import BLANK_ID, HOLDOUT_SIZE, StimulusWorld


def test_stimuli_are_deterministic_distinct_and_captioned():
    a, b = StimulusWorld(seed=5, version=1), StimulusWorld(seed=5, version=1)
    np.testing.assert_array_equal(a.image(17), b.image(17))
    assert a.caption(17) == b.caption(17)
    assert StimulusWorld(seed=6, version=1).caption(17) != a.caption(17) or not np.array_equal(
        StimulusWorld(seed=6, version=1).image(17), a.image(17)
    )
    captions = {a.caption(i) for i in range(500)}
    assert len(captions) == 500
    assert a.n_stimuli == 10368


def test_picture_matches_its_caption():
    world = StimulusWorld(seed=0, image_size=64, version=1)  # plain backgrounds
    for i in range(40):
        stim = world.stimulus(i)
        image = world.image(i).astype(int)
        assert image.shape == (64, 64, 3)
        corner = image[1, 1]  # the background shows in the corner
        from rt_recon.simulators.world import BACKGROUNDS, COLOURS, POSITIONS

        assert np.abs(corner - BACKGROUNDS[stim.background]).max() <= 2
        fx, fy = POSITIONS[stim.position]
        y, x = int(fy * 64), int(fx * 64)
        patch = image[y - 1 : y + 2, x - 1 : x + 2].reshape(-1, 3)
        colour = np.array(COLOURS[stim.colour])
        if stim.shape != "ring":  # a ring is hollow at its centre
            distance = np.abs(patch - colour).max(axis=1).min()
            shade = np.abs(patch - colour * 0.35).max(axis=1).min()
            assert min(distance, shade) <= 6, stim.caption
        assert stim.colour in stim.caption and stim.shape in stim.caption


def test_blank_and_bad_ids():
    world = StimulusWorld(image_size=32)
    assert np.all(world.image(BLANK_ID) == 128)
    assert "blank" in world.caption(BLANK_ID)
    with pytest.raises(IndexError, match="stimulus id"):
        world.stimulus(world.n_stimuli)


def test_semantic_features_are_one_hot_per_attribute():
    world = StimulusWorld(version=1)
    features = world.semantic_features([0, 1, BLANK_ID])
    assert features.shape[1] == 6 + 8 + 3 + 2 + 9 + 4
    assert features[0].sum() == 6 and features[1].sum() == 6 and features[2].sum() == 0
    assert set(world.vocabulary()) >= set(world.caption(3).split())


def test_the_held_out_pictures_are_the_same_combinations_in_every_world():
    """The embedded model left out world 0's draw (training/train_embedded.py): every seed's
    world holds out those same pictures under its own ids."""
    first = StimulusWorld(seed=0, version=1)
    held = first.holdout_ids()
    reference = np.random.default_rng(0).choice(first.n_stimuli, size=HOLDOUT_SIZE, replace=False)
    assert np.array_equal(held, np.sort(reference))
    captions = sorted(first.caption(int(i)) for i in held)
    for seed in (1, 3):
        world = StimulusWorld(seed=seed, version=1)
        ids = world.holdout_ids()
        assert sorted(world.caption(int(i)) for i in ids) == captions
        assert not np.array_equal(ids, held)  # other ids, the same pictures
        assert len(np.intersect1d(world.training_ids(), ids)) == 0
        assert len(world.training_ids()) + len(ids) == world.n_stimuli


#: sha256 of world 1's pictures ``range(0, 10368, 211)`` at seed 0, 64 px: the first embedded
#: model was trained on this world, and version 1's sessions are cached by keys that assume
#: it does not change.
WORLD_1_PICTURES_SHA256 = "8272a5a82c0479cdc8a46cac79550bc17d625d0e63ae1ebb19c7b6415dd251af"


def test_world_1_is_unchanged_and_the_default_is_the_sessions():
    import hashlib

    from rt_recon.config import SimulationSection
    from rt_recon.simulators.world import DEFAULT_VERSION

    assert StimulusWorld().version == DEFAULT_VERSION == SimulationSection().world_version == 2
    world = StimulusWorld(seed=0, version=1)
    assert world.version == 1 and world.n_stimuli == 10368
    digest = hashlib.sha256(world.images(range(0, 10368, 211)).tobytes()).hexdigest()
    assert digest == WORLD_1_PICTURES_SHA256


def test_world_2_has_twelve_backgrounds_drawn_as_named():
    from rt_recon.simulators.world import BACKGROUNDS, PATTERNED_BACKGROUNDS

    world = StimulusWorld(seed=0, version=2)
    backgrounds = dict(world.axes)["background"]
    assert len(backgrounds) == 12 and world.n_stimuli == 6 * 8 * 3 * 2 * 9 * 12
    assert set(world.vocabulary()) >= set(backgrounds)
    found: dict[str, np.ndarray] = {}
    for i in range(world.n_stimuli):
        stim = world.stimulus(i)
        if stim.background not in found and stim.position == "bottom-right":
            found[stim.background] = world.image(i).astype(float)  # its top-left is background
        if len(found) == len(backgrounds):
            break
    for name, image in found.items():
        corner = image[:20, :20].reshape(-1, 3)
        spread = corner.std(axis=0).max()
        if name in BACKGROUNDS:  # flat
            assert spread < 1 and np.abs(corner[0] - BACKGROUNDS[name]).max() <= 2, name
            continue
        kind, first, _ = PATTERNED_BACKGROUNDS[name]
        assert spread > 5, f"{name} is not patterned"
        if kind in ("vertical", "diagonal"):  # the first colour at the top-left corner
            assert np.abs(image[0, 0] - first).max() < 12, name
        if kind in ("vertical", "horizontal", "diagonal"):  # smooth: no jumps between pixels
            assert np.abs(np.diff(image[:20, :20], axis=0)).max() < 12, name
    assert len(found) == 12
    # the same pictures held out in every seed's version-2 world, as in version 1
    held = StimulusWorld(seed=0, version=2).holdout_ids()
    other = StimulusWorld(seed=2, version=2)
    captions = sorted(world.caption(int(i)) for i in held)
    assert sorted(other.caption(int(i)) for i in other.holdout_ids()) == captions
    with pytest.raises(ValueError, match="world version"):
        StimulusWorld(version=3)
