"""The first volume of a run aligned to the reference with no earlier estimate
(``MotionCorrection.align``): known rigid offsets of the analytic synthetic head."""

import numpy as np
import pytest

from rt_recon.errors import DataError
from rt_recon.preprocess.motion import MotionCorrection, rotation_angle_deg
from rt_recon.preprocess.rigid import rigid_matrix
from tests.preprocess._synthetic import SHAPE, BlobHead, oblique_affine, sample

#: The largest head offset the tests hold align() to (docs/preprocessing.md, "The first
#: volume of a run", measures it further).
LARGEST_MM, LARGEST_DEG = 12.0, 10.0


@pytest.fixture(scope="module")
def head():
    return BlobHead(seed=0)


@pytest.fixture(scope="module")
def corrector(head):
    return MotionCorrection(sample(head, oblique_affine()), oblique_affine())


def offset(mm: float, deg: float, seed: int) -> np.ndarray:
    """``(6,)`` parameters: a translation of length ``mm`` and three angles whose norm is
    ``deg`` degrees (composed, a rotation of about that angle), directions drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    direction, axis = rng.normal(size=3), rng.normal(size=3)
    return np.concatenate(
        [mm * direction / np.linalg.norm(direction), np.deg2rad(deg) * axis / np.linalg.norm(axis)]
    )


def errors(found: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Translation error (mm) and the angle (degrees) of the rotation between two transforms."""
    return (
        float(np.linalg.norm(found[:3, 3] - truth[:3, 3])),
        rotation_angle_deg(np.linalg.inv(truth) @ found),
    )


@pytest.mark.parametrize(("mm", "deg"), [(3.0, 2.0), (LARGEST_MM, LARGEST_DEG)])
def test_align_recovers_a_known_head_offset(head, corrector, mm, deg):
    truth = offset(mm, deg, seed=1)
    angle = rotation_angle_deg(rigid_matrix(truth))
    assert angle == pytest.approx(deg, abs=0.2)  # three angles compose to about their norm
    corrector.reset()
    alignment = corrector.align(sample(head, oblique_affine(), truth))
    assert alignment.converged and alignment.residual < 1e-3
    moved_mm, turned_deg = errors(alignment.matrix, rigid_matrix(truth))
    assert moved_mm < 0.1 and turned_deg < 0.1, (moved_mm, turned_deg)
    assert alignment.translation_mm == pytest.approx(mm, abs=0.1)
    assert alignment.rotation_deg == pytest.approx(angle, abs=0.1)


def test_the_runs_per_tr_fits_start_from_the_alignment(head, corrector):
    truth = offset(3.0, 2.0, seed=2)
    volume = sample(head, oblique_affine(), truth)
    corrector.reset()
    alignment = corrector.align(volume)
    assert corrector.count == 0  # not a TR
    np.testing.assert_array_equal(corrector.matrix, alignment.matrix)
    np.testing.assert_array_equal(corrector.params, alignment.params)
    corrector.estimate(volume)  # the same volume again: already there
    assert corrector.iterations == 1 and corrector.count == 1
    np.testing.assert_allclose(corrector.params, alignment.params, atol=1e-4)


def test_a_volume_that_does_not_fit_cannot_be_aligned(head, corrector):
    corrector.reset()
    far = sample(head, oblique_affine(), np.array([400.0, 0.0, 0.0, 0.0, 0.0, 0.0]))
    with pytest.raises(DataError, match="expected tissue there"):
        corrector.align(far)  # the head left the field of view: nothing but zeros
    with pytest.raises(DataError, match="NaN"):
        corrector.align(np.full(SHAPE, np.nan, np.float32))
    assert corrector.count == 0
