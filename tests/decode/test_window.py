import numpy as np

from rt_recon.decode.window import HrfWindow
from rt_recon.hrf import block_response, double_gamma, matched_window


def test_window_is_a_causal_weighted_sum_of_the_last_k():
    weights = np.array([0.5, 0.3, 0.2])
    window = HrfWindow(weights, dim=2)
    series = np.arange(14, dtype=np.float32).reshape(7, 2)
    for t, value in enumerate(series):
        out = window.update(value)
        expected = sum(weights[k] * series[t - k] for k in range(3) if t - k >= 0)
        np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_window_commutes_with_a_linear_projection():
    rng = np.random.default_rng(0)
    weights, _ = matched_window(1.5, 3.0, 4)
    x = rng.normal(size=(12, 9)).astype(np.float32)
    w = rng.normal(size=(9, 3)).astype(np.float32)
    on_features, on_projections = HrfWindow(weights, 9), HrfWindow(weights, 3)
    for xt in x:
        np.testing.assert_allclose(
            on_features.update(xt) @ w, on_projections.update(xt @ w), rtol=1e-4, atol=1e-5
        )


def test_canonical_hrf_peaks_near_five_seconds_with_an_undershoot():
    t = np.arange(0, 30, 0.1)
    h = double_gamma(t)
    assert 4.5 <= t[np.argmax(h)] <= 5.5
    assert h[(t > 12) & (t < 20)].min() < 0
    assert double_gamma(np.array([-1.0]))[0] == 0


def test_matched_window_sums_to_one_and_covers_the_response_peak():
    weights, lag = matched_window(1.5, 3.0, 4)
    assert np.isclose(weights.sum(), 1) and np.all(weights >= 0)
    response = block_response(3.0, np.arange(20) * 1.5)
    peak = int(np.argmax(response))
    assert lag - 3 <= peak <= lag  # the window [lag-3, lag] holds the peak
