import numpy as np
import pytest

from rt_recon.errors import DataError, ShapeMismatchError
from rt_recon.preprocess.detrend import OnlineDetrend


def batch_last_residual(y: np.ndarray, design: np.ndarray) -> np.ndarray:
    beta = np.linalg.lstsq(design, y, rcond=None)[0]
    return y[-1] - design[-1] @ beta


def test_online_output_is_the_last_row_of_an_offline_glm_on_the_prefix():
    rng = np.random.default_rng(0)
    n, v = 40, 5
    confounds = rng.normal(size=(n, 6))
    y = rng.normal(100, 5, size=(n, v))
    stage = OnlineDetrend(v, degree=2, n_confounds=6, time_scale_trs=10)
    tau = np.arange(n) / 10
    design = np.column_stack([np.ones(n), tau, tau**2, confounds])
    for t in range(n):
        out = stage.update(y[t], confounds[t])
        assert out.dtype == np.float32
        expected = batch_last_residual(y[: t + 1], design[: t + 1])
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-3)
    assert not stage.warming_up


def test_removes_a_known_drift_and_keeps_the_signal():
    n = 200
    t = np.arange(n)
    signal = 3.0 * np.sin(2 * np.pi * t / 20)  # a 20-TR block design
    drift = 1000.0 + 0.5 * t - 0.002 * t**2  # 0.5 units/TR, curving
    rng = np.random.default_rng(1)
    y = (signal + drift)[:, None] + rng.normal(0, 0.5, size=(n, 3))
    stage = OnlineDetrend(3, degree=2)
    out = np.array([stage.update(row) for row in y])
    settled = slice(40, None)
    # The drift dwarfs the signal in the input, not in the output.
    assert abs(np.corrcoef(y[settled, 0], signal[settled])[0, 1]) < 0.5
    # Noise caps the correlation at 0.97 here; the early, short-prefix fits lower it a bit.
    for k in range(3):
        assert np.corrcoef(out[settled, k], signal[settled])[0, 1] > 0.9
    assert np.abs(out[settled].mean()) < 0.5
    np.testing.assert_allclose(out[settled].std(axis=0), signal[settled].std(), rtol=0.1)
    # A linear fit cannot follow the curving drift: the same checks fail.
    linear = OnlineDetrend(3, degree=1)
    out_linear = np.array([linear.update(row) for row in y])
    assert np.corrcoef(out_linear[settled, 0], signal[settled])[0, 1] < 0.7


def test_motion_confounds_are_regressed_out():
    n = 120
    rng = np.random.default_rng(2)
    motion = np.cumsum(rng.normal(0, 0.05, size=(n, 6)), axis=0)
    y = 500.0 + 40.0 * motion[:, [0]] + rng.normal(0, 0.2, size=(n, 2))
    without = OnlineDetrend(2, degree=1)
    with_motion = OnlineDetrend(2, degree=1, n_confounds=6)
    out_without = np.array([without.update(row) for row in y])
    out_with = np.array([with_motion.update(row, m) for row, m in zip(y, motion, strict=True)])
    assert out_with[30:].std() < 0.5 * out_without[30:].std()


def test_reset_forgets_the_run():
    stage = OnlineDetrend(2, degree=1)
    for value in (1.0, 5.0, 2.0):
        stage.update(np.full(2, value))
    stage.reset()
    assert stage.count == 0 and stage.warming_up
    np.testing.assert_allclose(stage.update(np.array([7.0, 9.0])), 0.0, atol=1e-9)


def test_bad_input_is_refused_with_expected_and_found():
    stage = OnlineDetrend(4, degree=1, n_confounds=6)
    with pytest.raises(
        ShapeMismatchError, match=r"expected a volume of shape \(4,\), found \(3,\)"
    ):
        stage.update(np.zeros(3), np.zeros(6))
    with pytest.raises(ShapeMismatchError, match="expected 6 confounds, found none"):
        stage.update(np.zeros(4))
    with pytest.raises(ShapeMismatchError, match=r"\(6,\), found \(5,\)"):
        stage.update(np.zeros(4), np.zeros(5))
    with pytest.raises(DataError, match="1 NaN/Inf"):
        stage.update(np.array([0.0, np.inf, 0.0, 0.0]), np.zeros(6))
    assert stage.count == 0  # nothing was folded in
