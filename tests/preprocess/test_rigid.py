import numpy as np
import pytest

from rt_recon.preprocess.rigid import move_origin, rigid_jacobian, rigid_matrix, rigid_params


def test_matrix_is_spm_order_translation_then_x_y_z_rotations():
    pitch, roll, yaw = 0.1, -0.2, 0.3
    m = rigid_matrix([1.0, 2.0, 3.0, pitch, roll, yaw])
    c, s = np.cos, np.sin
    rx = np.array([[1, 0, 0], [0, c(pitch), s(pitch)], [0, -s(pitch), c(pitch)]])
    ry = np.array([[c(roll), 0, s(roll)], [0, 1, 0], [-s(roll), 0, c(roll)]])
    rz = np.array([[c(yaw), s(yaw), 0], [-s(yaw), c(yaw), 0], [0, 0, 1]])
    np.testing.assert_allclose(m[:3, :3], rx @ ry @ rz, atol=1e-15)
    np.testing.assert_allclose(m[:3, 3], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_params_round_trip(seed):
    rng = np.random.default_rng(seed)
    params = np.concatenate([rng.uniform(-20, 20, 3), rng.uniform(-1.2, 1.2, 3)])
    np.testing.assert_allclose(rigid_params(rigid_matrix(params)), params, atol=1e-12)


def test_jacobian_matches_finite_differences():
    points = np.random.default_rng(0).normal(0, 40, size=(20, 3))
    jac = rigid_jacobian(points)
    h = 1e-7
    for k in range(6):
        step = np.zeros(6)
        step[k] = h
        m = rigid_matrix(step)
        moved = points @ m[:3, :3].T + m[:3, 3]
        np.testing.assert_allclose(jac[:, :, k], (moved - points) / h, atol=1e-5)


def test_move_origin_describes_the_same_motion():
    params = np.array([0.5, -0.2, 0.1, 0.02, -0.01, 0.03])
    shift = np.array([10.0, -20.0, 35.0])
    moved = move_origin(params, shift)
    np.testing.assert_allclose(moved[3:], params[3:], atol=1e-12)
    point = np.array([3.0, 4.0, -5.0])
    # The motion maps world point w to Q w; in the shifted world w + s maps to Q w + s.
    q, q_shifted = rigid_matrix(params), rigid_matrix(moved)
    np.testing.assert_allclose(
        q_shifted[:3, :3] @ (point + shift) + q_shifted[:3, 3], q[:3, :3] @ point + q[:3, 3] + shift
    )
    assert move_origin(np.stack([params, params]), shift).shape == (2, 6)
