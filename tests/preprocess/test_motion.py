import numpy as np
import pytest

from rt_recon.errors import DataError, ShapeMismatchError
from rt_recon.preprocess.motion import MotionCorrection
from tests.preprocess._synthetic import SHAPE, BlobHead, oblique_affine, sample

INNER = (slice(5, -5),) * 3


@pytest.fixture(scope="module")
def head():
    return BlobHead(seed=0)


@pytest.fixture(scope="module")
def reference(head):
    return sample(head, oblique_affine())


@pytest.fixture(scope="module")
def corrector(reference):
    return MotionCorrection(reference, oblique_affine())


@pytest.mark.parametrize(
    "params",
    [
        [0.5, -0.3, 0.8, 0.01, -0.02, 0.015],
        [1.5, 1.0, -2.0, 0.03, 0.02, -0.04],
        [-0.2, 0.0, 0.0, 0.0, 0.0, 0.005],
    ],
)
def test_recovers_a_known_rigid_motion(head, corrector, params):
    moved = sample(head, oblique_affine(), np.array(params))
    corrector.reset()
    corrector.estimate(moved)
    np.testing.assert_allclose(corrector.params[:3], params[:3], atol=0.05)  # mm
    np.testing.assert_allclose(corrector.params[3:], params[3:], atol=0.001)  # rad


def test_reslice_brings_the_volume_back_onto_the_reference(head, reference, corrector):
    moved = sample(head, oblique_affine(), np.array([1.5, 1.0, -2.0, 0.03, 0.02, -0.04]))
    corrector.reset()
    out = corrector.update(moved)
    assert out.shape == SHAPE and out.dtype == np.float32
    before = np.abs(moved - reference)[INNER].mean()
    after = np.abs(out - reference)[INNER].mean()
    assert after < 0.2 * before
    assert np.corrcoef(out[INNER].ravel(), reference[INNER].ravel())[0, 1] > 0.995


def test_identical_volume_gives_zero_motion(reference, corrector):
    corrector.reset()
    corrector.estimate(reference)
    np.testing.assert_allclose(corrector.params, 0.0, atol=1e-6)


def test_warm_start_from_the_previous_tr(head, corrector):
    moved = sample(head, oblique_affine(), np.array([1.0, -0.5, 0.5, 0.02, 0.0, -0.01]))
    corrector.reset()
    corrector.estimate(moved)
    cold_iterations, first = corrector.iterations, corrector.params.copy()
    corrector.estimate(moved)  # the same volume again starts at the answer
    assert corrector.iterations < cold_iterations
    assert corrector.iterations <= 2
    np.testing.assert_allclose(corrector.params, first, atol=1e-4)


def test_flat_volumes_in_x_fastest_order_give_flat_output(head, corrector):
    moved = sample(head, oblique_affine(), np.array([0.4, 0.0, 0.0, 0.0, 0.01, 0.0]))
    corrector.reset()
    grid = corrector.update(moved)
    corrector.reset()
    flat = corrector.update(np.ravel(moved, order="F"))
    assert flat.shape == (moved.size,)
    np.testing.assert_allclose(flat, np.ravel(grid, order="F"), rtol=1e-5, atol=1e-3)


def test_volumes_on_another_grid_are_aligned_in_world_coordinates(head, reference):
    # The same head stored with x reversed: a different voxel order, the same world.
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = SHAPE[0] - 1
    other_affine = oblique_affine() @ flip
    params = np.array([0.6, -0.4, 0.3, 0.01, 0.0, 0.02])
    moved = sample(head, other_affine, params)
    mc = MotionCorrection(reference, oblique_affine(), volume_affine=other_affine)
    out = mc.update(moved)
    np.testing.assert_allclose(mc.params[:3], params[:3], atol=0.05)
    np.testing.assert_allclose(mc.params[3:], params[3:], atol=0.001)
    assert np.corrcoef(out[INNER].ravel(), reference[INNER].ravel())[0, 1] > 0.995


def test_wrong_shape_names_expected_and_found(corrector):
    with pytest.raises(ShapeMismatchError, match=r"expected a volume of shape \(40, 44, 30\)"):
        corrector.update(np.zeros((40, 44, 29), dtype=np.float32))
    with pytest.raises(ShapeMismatchError, match=r"\(52800,\), found \(52799,\)"):
        corrector.update(np.zeros(52799, dtype=np.float32))


def test_nan_or_inf_volume_is_a_data_error(reference, corrector):
    bad = reference.copy()
    bad[3, 4, 5] = np.nan
    bad[6, 7, 8] = np.inf
    with pytest.raises(DataError, match="found 2 NaN/Inf values"):
        corrector.update(bad)


def test_a_volume_that_misses_the_reference_is_a_data_error(reference):
    far = oblique_affine()
    far[:3, 3] += 1000.0
    mc = MotionCorrection(reference, oblique_affine(), volume_affine=far)
    with pytest.raises(DataError, match="sample points fall inside the volume"):
        mc.update(reference)


def test_bad_reference_or_settings_are_refused(reference):
    with pytest.raises(ShapeMismatchError, match="expected an"):
        MotionCorrection(reference[0], oblique_affine())
    with pytest.raises(ShapeMismatchError, match="reference_affine must be a finite"):
        MotionCorrection(reference, np.eye(3))
    with pytest.raises(ValueError, match="quality"):
        MotionCorrection(reference, oblique_affine(), quality=0.0)


def test_fewer_points_with_lower_quality(reference):
    strict = MotionCorrection(reference, oblique_affine(), quality=0.95)
    loose = MotionCorrection(reference, oblique_affine(), quality=0.5)
    assert loose.n_points < strict.n_points
