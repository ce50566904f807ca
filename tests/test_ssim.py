import numpy as np
import pytest

from rt_recon.errors import ShapeMismatchError
from rt_recon.evaluate.ssim import mean_ssim, ssim, to_gray


def test_identical_images_score_one_and_noise_lowers_it_monotonically():
    rng = np.random.default_rng(0)
    image = rng.random((64, 64))
    assert ssim(image, image) == pytest.approx(1.0)
    scores = [
        ssim(image, np.clip(image + s * rng.normal(size=image.shape), 0, 1))
        for s in (0.05, 0.2, 0.5)
    ]
    assert 1 > scores[0] > scores[1] > scores[2]


def test_ssim_is_symmetric_and_sees_structure_not_just_brightness():
    rng = np.random.default_rng(1)
    a, b = rng.random((32, 32)), rng.random((32, 32))
    assert ssim(a, b) == pytest.approx(ssim(b, a))
    brighter = np.clip(a * 0.9 + 0.08, 0, 1)  # same structure, shifted luminance
    assert ssim(a, brighter) > 0.8 > ssim(a, b)


def test_constant_images_follow_the_luminance_term():
    a, b = np.full((16, 16), 0.2), np.full((16, 16), 0.6)
    expected = (2 * 0.2 * 0.6 + 0.01**2) / (0.2**2 + 0.6**2 + 0.01**2)  # contrast term is 1
    assert ssim(a, b) == pytest.approx(expected)


def test_colour_pictures_and_shape_errors():
    pictures = np.zeros((2, 8, 8, 3), np.uint8)
    pictures[1] = 255
    assert to_gray(pictures)[1].max() == pytest.approx(1.0)
    assert mean_ssim(pictures, pictures) == pytest.approx(1.0)
    with pytest.raises(ShapeMismatchError):
        mean_ssim(pictures, pictures[:1])
