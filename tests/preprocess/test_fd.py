import numpy as np
import pytest

from rt_recon.errors import DataError, ShapeMismatchError
from rt_recon.preprocess.fd import FramewiseDisplacement, framewise_displacement

PARAMS = np.array(
    [
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [0.1, -0.2, 0.05, 0.001, 0.0, -0.002],
        [0.1, -0.2, 0.05, 0.001, 0.0, -0.002],
        [-0.4, 0.1, 0.0, 0.0, 0.004, 0.0],
    ]
)
# By hand: |dt| summed + 50 mm * |drot| summed.
EXPECTED = [
    0.0,
    0.1 + 0.2 + 0.05 + 50 * (0.001 + 0.002),  # 0.50
    0.0,
    0.5 + 0.3 + 0.05 + 50 * (0.001 + 0.004 + 0.002),  # 1.20
]


def test_batch_fd_matches_the_hand_computation():
    np.testing.assert_allclose(framewise_displacement(PARAMS), EXPECTED, atol=1e-12)


def test_online_fd_matches_batch_and_flags_above_threshold():
    fd = FramewiseDisplacement(threshold_mm=0.5)
    values = [fd.update(p) for p in PARAMS]
    np.testing.assert_allclose(values, EXPECTED, atol=1e-12)
    assert fd.flagged_trs == [3]  # 0.50 is not above 0.5
    fd.reset()
    assert fd.update(PARAMS[3]) == 0.0 and fd.flagged_trs == []


def test_radius_scales_rotations_only():
    params = np.array([[0, 0, 0, 0, 0, 0], [1.0, 0, 0, 0.01, 0, 0]])
    np.testing.assert_allclose(framewise_displacement(params, radius_mm=80.0), [0.0, 1.8])


def test_bad_parameters_are_refused():
    fd = FramewiseDisplacement()
    with pytest.raises(
        ShapeMismatchError, match=r"expected motion parameters of shape \(6,\), found \(5,\)"
    ):
        fd.update(np.zeros(5))
    with pytest.raises(DataError, match="NaN/Inf"):
        fd.update(np.array([0, 0, np.nan, 0, 0, 0]))
    with pytest.raises(ValueError, match=r"\(n_trs, 6\)"):
        framewise_displacement(np.zeros((4, 3)))
