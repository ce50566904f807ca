"""Trial estimates: the matched filter mixes a neighbouring trial in, least squares does not."""

import numpy as np
import pytest

from rt_recon.decode.hrf_library import LIBRARY_PEAKS_S, responses, trial_design
from rt_recon.decode.trial_estimate import TemporalModel, TrialEstimator, matched_weights
from rt_recon.errors import BundleError
from rt_recon.hrf import matched_window

TR_S, DURATION, LAG = 1.5, 3.0, 6


def _model(mode: str, n_window: int, peaks=(5.0,), groups=None) -> TemporalModel:
    resp = responses(peaks, DURATION, TR_S)
    return TemporalModel(
        mode, LAG, n_window, matched_weights(resp, LAG, n_window), resp, groups, period_trs=3
    )


def _two_trials(amplitudes, onsets, n_trs=40, peaks=(5.0,)):
    """Noise-free ``(n_trs, n_voxels)``: voxel ``v`` has HRF ``peaks[v]`` and responds
    ``amplitudes[i, v]`` to trial ``i``; a constant baseline of 0.3."""
    resp = responses(peaks, DURATION, TR_S)
    out = np.zeros((n_trs, len(peaks)))
    for v in range(len(peaks)):
        out[:, v] = trial_design(resp[v], onsets, n_trs) @ amplitudes[:, v]
    return (out + 0.3).astype(np.float32)


def test_matched_weights_are_todays_window_for_the_canonical_hrf():
    weights, lag = matched_window(TR_S, DURATION, 4)
    resp = responses([5.0], DURATION, TR_S)
    np.testing.assert_allclose(matched_weights(resp, lag, 4)[0], weights, atol=1e-12)


def test_lss_separates_two_overlapping_trials_that_the_window_mixes():
    first, second = 10, 13  # three TRs apart: the first's tail overlaps the second's window
    series = _two_trials(np.array([[2.0], [-1.0]]), [first, second]) - 0.3

    def estimate(mode, n_window, values):
        at = {t: row for t, row in enumerate(values)}.get
        est = TrialEstimator(_model(mode, n_window), 1)
        return est.estimate(at, second + LAG, second, [first, second])[0]

    # the window's response to a unit amplitude of the second trial alone
    unit = estimate("window", 4, _two_trials(np.array([[0.0], [1.0]]), [first, second]) - 0.3)
    assert estimate("lss", 8, series) == pytest.approx(-1.0, abs=1e-4)  # its own amplitude
    leak = estimate("window", 4, series) / unit - (-1.0)
    assert leak == pytest.approx(2.0 * 0.343, abs=0.01)  # 34% of the first trial's 2


def test_lss_weights_ignore_the_other_trials():
    est = TrialEstimator(_model("lss", 8, peaks=(4.0, 6.5), groups=np.array([0, 1])), 2)
    onsets = [14, 17, 20, 23]
    w = est.group_weights(20, onsets)
    resp = responses((4.0, 6.5), DURATION, TR_S)
    rel = LAG - np.arange(8)

    def sample(g, lags):
        return np.array([resp[g][r] if 0 <= r < resp.shape[1] else 0.0 for r in lags])

    for g in range(2):
        assert w[g] @ sample(g, rel) == pytest.approx(1.0, abs=1e-5)
        others = sum(sample(g, rel - (o - 20)) for o in onsets if o != 20)
        assert w[g] @ others == pytest.approx(0.0, abs=1e-5)


def test_each_voxel_uses_its_own_groups_weights():
    peaks = (LIBRARY_PEAKS_S[2], LIBRARY_PEAKS_S[14])
    series = _two_trials(np.array([[1.0, 1.0]]), [10], peaks=peaks) - 0.3
    at = {t: row for t, row in enumerate(series)}.get
    grouped = TrialEstimator(_model("window", 4, peaks, np.array([0, 1])), 2).estimate(at, 16, 10)
    for v in range(2):
        alone = TrialEstimator(_model("window", 4, (peaks[v],)), 1)
        expected = alone.estimate(
            lambda t, v=v: None if at(t) is None else at(t)[v : v + 1], 16, 10
        )
        assert grouped[v] == pytest.approx(expected[0], rel=1e-6)


def test_regular_schedule_is_assumed_without_onsets():
    est = TrialEstimator(_model("lss", 8), 1)
    known = [20 + 3 * j for j in range(-10, 11)]
    np.testing.assert_allclose(est.group_weights(20, None), est.group_weights(20, known))
    assert not np.allclose(est.group_weights(20, [20]), est.group_weights(20, known))


def test_partial_windows():
    series = np.ones((30, 1), dtype=np.float32)
    at = {t: row for t, row in enumerate(series)}.get
    window = TrialEstimator(_model("window", 4), 1)
    # the matched filter divides by the weights of the TRs present: the mean of ones is one
    assert window.estimate(at, 13, 10)[0] == pytest.approx(1.0)
    assert window.estimate(at, 5, 10)[0] == 0.0  # before the window: nothing
    lss = TrialEstimator(_model("lss", 8), 1)
    # least squares counts TRs not yet there as zero: a partial window sums fewer terms
    w = lss.group_weights(10, [10])[0]
    assert lss.estimate(at, 16, 10, [10])[0] == pytest.approx(w.sum(), rel=1e-5)
    assert lss.estimate(at, 14, 10, [10])[0] == pytest.approx(w[2:].sum(), rel=1e-5)


def test_a_temporal_model_refuses_inconsistent_arrays():
    resp = responses([5.0], DURATION, TR_S)
    with pytest.raises(BundleError, match="must be"):
        TemporalModel("window", LAG, 4, np.ones((1, 3)), resp)
    with pytest.raises(BundleError, match="'window' or 'lss'"):
        TemporalModel("box", LAG, 4, np.ones((1, 4)), resp)
    with pytest.raises(BundleError, match="groups outside"):
        TemporalModel("window", LAG, 4, np.ones((1, 4)), resp, np.array([0, 1]))
    model = TemporalModel("window", LAG, 4, np.ones((1, 4)), resp, np.array([0, 0]))
    with pytest.raises(BundleError, match="reads 3"):
        TrialEstimator(model, 3)
