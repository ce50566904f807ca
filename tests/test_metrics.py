import numpy as np
import pytest

from rt_recon.errors import ShapeMismatchError
from rt_recon.evaluate.metrics import pixcorr, pixel_features, two_way_identification


def test_perfect_reconstructions_identify_perfectly_and_shuffled_at_chance():
    rng = np.random.default_rng(0)
    truths = rng.normal(size=(40, 50))
    assert two_way_identification(truths, truths) == 1.0
    assert pixcorr(truths, truths) == pytest.approx(1.0)
    shuffled = [two_way_identification(truths[rng.permutation(40)], truths) for _ in range(20)]
    assert 0.4 < np.mean(shuffled) < 0.6


def test_identification_counts_the_fraction_of_beaten_distractors():
    truths = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    recons = np.array([[1.0, 0.2, 0], [0, 1.0, 0], [0, 1.0, 0.1]])  # third looks like the second
    # rec 0 beats both, rec 1 beats both, rec 2: corr with own truth lower than with truth 1
    corr_own = np.corrcoef(recons[2], truths[2])[0, 1]
    beaten = sum(np.corrcoef(recons[2], truths[j])[0, 1] < corr_own for j in (0, 1))
    assert two_way_identification(recons, truths) == pytest.approx((1 + 1 + beaten / 2) / 3)


def test_pixel_features_and_shape_errors():
    images = np.zeros((2, 64, 64, 3), np.uint8)
    images[1, :32] = 255
    features = pixel_features(images)
    assert features.shape == (2, 32 * 32 * 3) and features.max() == 1.0
    with pytest.raises(ShapeMismatchError, match="reconstructions have shape"):
        two_way_identification(features, features[:1])
