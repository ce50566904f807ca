"""Scores a flat picture of the right background cannot earn (rt_recon.evaluate.semantic).

Constructed cases on the world's held-out pictures (the metric network never saw
them): the true pictures as reconstructions score 100%, shuffled pairing about
50%, and the baselines come out in the order they must. Then must-show 3 of
issue #16: on reconstructions from the real pipeline (a synthetic session at the
demo's defaults, decoders fitted for the embedded model, the held-out test run
decoded and rendered offline by the objects the live nodes use), neither a flat
picture of the true background nor the true picture with a wrong shape comes
within 10 points of the model on the headline metric.
"""

from __future__ import annotations

import numpy as np
import pytest

from rt_recon.apps.demo import wrong_shape_pictures
from rt_recon.errors import ShapeMismatchError
from rt_recon.evaluate.semantic import (
    FEATURE_SPACE,
    FLAT_OWN,
    FLAT_TRUE,
    NEAREST_TRAINING,
    SHUFFLED,
    WRONG_SHAPE,
    bootstrap_interval,
    border_colour,
    derangement,
    evaluate_semantic,
    flat_pictures,
    nearest_by_latents,
    score_set,
    trial_wins,
)
from rt_recon.simulators.world import StimulusWorld

N = 48


@pytest.fixture(scope="module")
def world() -> StimulusWorld:
    """World version 1: every background plain, so a flat picture of the border colour is
    the true background, the case these constructed tests need (the shipped net knows both
    versions; in version 2 a flat picture is not a gradient or texture, test below)."""
    return StimulusWorld(seed=0, version=1)


def test_a_flat_picture_of_a_patterned_background_is_not_that_background():
    """Why world version 2 exists: its gradients and textures are not their border colour."""
    from rt_recon.evaluate.metric_net import load_metric_net
    from rt_recon.simulators.world import BACKGROUNDS

    world = StimulusWorld(seed=0, version=2)
    ids = world.holdout_ids()[:120]
    truths = world.images(ids)
    backgrounds = [world.stimulus(int(i)).background for i in ids]
    read = load_metric_net().attributes(flat_pictures(truths))["background"]
    plain = [b in BACKGROUNDS for b in backgrounds]
    right = np.array([r == b for r, b in zip(read, backgrounds, strict=True)])
    assert right[plain].mean() >= 0.9  # a plain background is its border colour
    assert right[~np.array(plain)].mean() <= 0.5


@pytest.fixture(scope="module")
def held_out(world):
    """``N`` held-out pictures (every background among them) and their ids."""
    ids = world.holdout_ids()[:N]
    return ids, world.images(ids)


@pytest.fixture(scope="module")
def perfect(world, held_out):
    """The true pictures scored as their own reconstructions, with every baseline."""
    ids, truths = held_out
    return evaluate_semantic(
        truths, truths, world_baselines={WRONG_SHAPE: wrong_shape_pictures(world, ids)}
    )


def test_trial_wins_counts_the_distractors_beaten():
    corr = np.array([[0.9, 0.5, 0.95], [0.1, 0.2, 0.3], [0.0, 0.0, 0.5]])
    np.testing.assert_allclose(trial_wins(corr), [0.5, 0.5, 1.0])
    allowed = np.array([[1, 1, 0], [0, 1, 0], [1, 1, 1]], dtype=bool)
    wins = trial_wins(corr, allowed)
    assert wins[0] == 1.0 and np.isnan(wins[1]) and wins[2] == 1.0  # trial 1: no distractor


def test_the_bootstrap_interval_is_seeded_and_holds_the_mean():
    scores = np.random.default_rng(3).uniform(0.4, 1.0, 40)
    low, high = bootstrap_interval(scores)
    assert low < scores.mean() < high
    assert (low, high) == bootstrap_interval(scores)
    assert high - low < 0.15
    assert bootstrap_interval(np.ones(10)) == (1.0, 1.0)


def test_a_derangement_moves_every_trial():
    rng = np.random.default_rng(0)
    for n in (2, 3, 36):
        perm = derangement(n, rng)
        assert sorted(perm) == list(range(n)) and not np.any(perm == np.arange(n))


def test_flat_pictures_take_the_border_colour(held_out):
    _, truths = held_out
    flat = flat_pictures(truths)
    assert flat.shape == truths.shape
    np.testing.assert_array_equal(flat[:, 10, 20], np.round(border_colour(truths)))
    assert all(len(np.unique(f.reshape(-1, 3), axis=0)) == 1 for f in flat)


def test_the_true_pictures_score_100_and_shuffled_pairing_about_50(perfect):
    model = perfect.model
    assert model.identification == 1.0 and model.identification_ci == (1.0, 1.0)
    assert model.same_background == 1.0
    assert model.n_same_background == N  # 48 pictures, 4 backgrounds: every one has company
    assert all(v == 1.0 for v in model.attributes.values())
    assert model.pixel_identification == 1.0 and model.pixcorr == pytest.approx(1.0)
    assert model.ssim == pytest.approx(1.0)
    shuffled = perfect.baselines[SHUFFLED]
    assert 0.4 <= shuffled.identification <= 0.6
    assert 0.35 <= shuffled.same_background <= 0.65
    assert shuffled.attributes["shape"] < 0.4


def test_the_baselines_come_out_in_the_right_order(perfect):
    model, base = perfect.model, perfect.baselines
    flat_true, wrong = base[FLAT_TRUE], base[WRONG_SHAPE]
    # a flat picture of the true background: the net reads its background, nothing else
    assert flat_true.attributes["background"] == 1.0
    assert flat_true.attributes["shape"] < 0.4
    assert flat_true.same_background <= 0.65  # background alone earns chance
    # the wrong shape keeps everything else: the net sees it, and only the shape is wrong
    assert wrong.attributes["shape"] <= 0.1
    assert min(v for k, v in wrong.attributes.items() if k != "shape") >= 0.9
    # the order: the true picture, then the wrong shape, then the flat true background,
    # then shuffled pairing (chance)
    assert model.identification > wrong.identification > flat_true.identification
    assert flat_true.identification > base[SHUFFLED].identification - 0.05
    assert model.same_background > wrong.same_background > flat_true.same_background
    # the reconstruction's own border colour is the true background here
    assert base[FLAT_OWN].identification == flat_true.identification


def test_a_missing_baseline_says_why_and_every_figure_sits_beside_its_baselines(held_out):
    _, truths = held_out
    report = evaluate_semantic(
        truths, truths, n_shown=N + 4, not_available={WRONG_SHAPE: "no world"}
    )
    assert report.not_available == {WRONG_SHAPE: "no world", NEAREST_TRAINING: "not supplied"}
    lines = report.lines()
    assert lines[0].startswith(
        "two-way identification 100.0% [95% CI 100.0-100.0] "
        f"(chance 50%, {FEATURE_SPACE}) on 48 scored of 52 shown"
    )
    assert "(92.3% over all 52 shown, the 4 without a frame counted as failures)" in lines[0]
    assert "wrong shape not available" in lines[0] and "shuffled " in lines[0]
    assert lines[1].startswith("same-background identification 100.0%")
    assert lines[2].startswith("shape read as the true picture's 100.0% (chance 17%)")
    assert lines[3].startswith("pixels: identification 100.0% (RGB pixels at 32x32)")
    columns, rows = report.table()
    assert columns == [
        "figure",
        "model",
        SHUFFLED,
        FLAT_OWN,
        FLAT_TRUE,
        WRONG_SHAPE,
        NEAREST_TRAINING,
    ]
    assert all(row[-1] == "not available" for row in rows)
    assert report.model.identification_shown == pytest.approx(48 / 52)
    json_ = report.to_json()
    assert json_["model"]["n_shown"] == 52 and json_["not_available"][WRONG_SHAPE] == "no world"


def test_baseline_pictures_must_match_the_trials(held_out):
    _, truths = held_out
    with pytest.raises(ShapeMismatchError, match="3 pictures for 48 trials"):
        evaluate_semantic(truths, truths, world_baselines={WRONG_SHAPE: truths[:3]})
    with pytest.raises(ShapeMismatchError):
        score_set(truths[:3], truths)


def test_the_nearest_training_picture_is_found_by_correlation_of_each_head():
    rng = np.random.default_rng(0)
    bank = {"z": rng.normal(size=(20, 4, 3, 3)), "c": rng.normal(size=(20, 5, 6))}
    pick = [7, 3, 3, 19]
    decoded = {h: bank[h][pick] * 2.0 + 0.3 * rng.normal(size=bank[h][pick].shape) for h in bank}
    np.testing.assert_array_equal(nearest_by_latents(decoded, bank), pick)
    with pytest.raises(ShapeMismatchError):
        nearest_by_latents({"q": decoded["z"]}, bank)


# -- must-show 3 -----------------------------------------------------------------------------


#: Measured 2026-12-05 on the demo's test run (docs/metrics.md): world version 2, the shipped
#: decoder recipe (c snapped to the caption bank), 4 steps at strength 0.75: model 94.8%, the
#: true picture with a wrong shape 94.8% (over five test runs x three renderer seeds: 96.2%
#: against 96.4%). Beating it by 10 points means scoring above 100% on this metric: a picture
#: right in five of six attributes scores above 90% in any feature space where they count
#: (docs/metrics.md, "What the wrong-shape baseline asks"). The case fails, strictly: the day
#: it passes, the mark must go.
_WRONG_SHAPE_NOT_YET = pytest.mark.xfail(
    strict=True,
    reason="issue #16 must-show 3 not met: the wrong-shape picture scores 96.4% (5 runs x 3 "
    "seeds) against the model's 96.2%; 10 points above it is beyond the metric's range",
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "baseline", [FLAT_TRUE, pytest.param(WRONG_SHAPE, marks=_WRONG_SHAPE_NOT_YET)]
)
def test_the_model_beats_the_baseline_by_10_points_on_the_headline(demo_offline_run, baseline):
    """Issue #16, must-show 3: neither a flat picture of the true background nor the true
    picture with a wrong shape comes within 10 points of the model's feature-space
    identification, on reconstructions from the real pipeline (``demo_offline_run``)."""
    report = demo_offline_run.report
    print("\n" + "\n".join(report.lines()))  # the measured numbers (pytest -s, or a failure)
    model = report.model.identification
    other = report.baselines[baseline].identification
    assert model >= other + 0.10, (
        f"model {100 * model:.1f}%, {baseline} {100 * other:.1f}% ({FEATURE_SPACE})"
    )
