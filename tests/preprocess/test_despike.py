import numpy as np
import pytest

from rt_recon.errors import DataError, ShapeMismatchError
from rt_recon.preprocess.despike import SpikeDetector, clipped_second_moment


def noisy_run(n=120, v=2000, seed=0):
    rng = np.random.default_rng(seed)
    baseline = rng.uniform(500, 1500, size=v)
    drift = np.linspace(0, 20, n)[:, None]
    return baseline + drift + rng.normal(0, 10, size=(n, v))


def test_clipped_second_moment():
    assert clipped_second_moment(50.0) == pytest.approx(1.0)
    z = np.random.default_rng(0).normal(size=2_000_000)
    assert clipped_second_moment(2.0) == pytest.approx(np.mean(np.minimum(z**2, 4.0)), rel=5e-3)


def test_flags_an_injected_volume_spike_and_clips_it():
    data = noisy_run()
    clean = data.copy()
    data[60, :300] += 200.0  # a slice-like artefact: 15 % of voxels, +20 SD
    data[80, 5] += 150.0  # one voxel spiking alone: clipped, TR not flagged
    stage = SpikeDetector(data.shape[1], threshold=4.0, volume_fraction=0.01)
    out = np.array([stage.update(row) for row in data])
    assert stage.flagged_trs == [60]
    assert out.dtype == np.float32
    # The spiking voxels are clipped to 4 robust SD (about 43 here) above their level,
    # far below the +200 injected...
    error = out[60, :300] - clean[60, :300]
    assert 20.0 < error.mean() < 60.0 and error.max() < 110.0
    assert out[80, 5] - clean[80, 5] < 110.0
    # ...while the spike-free voxels pass through untouched.
    np.testing.assert_array_equal(out[60, 300:], data[60, 300:].astype(np.float32))


def test_gaussian_noise_with_drift_is_left_alone():
    data = noisy_run(seed=3)
    stage = SpikeDetector(data.shape[1], threshold=4.0)
    out = np.array([stage.update(row) for row in data])
    assert stage.flagged_trs == []
    changed = np.mean(out != data.astype(np.float32))
    assert changed < 1e-3  # about 6e-5 of Gaussian values lie beyond 4 SD


def test_warmup_passes_volumes_through_and_a_constant_voxel_does_not_freeze():
    data = noisy_run(n=40, v=10, seed=4)
    data[:, 0] = 100.0  # constant during warm-up: zero MAD
    data[20:, 0] = 130.0  # then a lasting step
    stage = SpikeDetector(10, warmup=10)
    out = np.array([stage.update(row) for row in data])
    np.testing.assert_array_equal(out[:10], data[:10].astype(np.float32))
    assert out[20, 0] < 110.0  # the step is clipped at first...
    np.testing.assert_allclose(out[-5:, 0], 130.0, atol=0.5)  # ...then absorbed


def test_bad_input_is_refused():
    stage = SpikeDetector(4)
    with pytest.raises(
        ShapeMismatchError, match=r"expected a volume of shape \(4,\), found \(2, 2\)"
    ):
        stage.update(np.zeros((2, 2)))
    with pytest.raises(DataError, match="NaN/Inf"):
        stage.update(np.array([1.0, np.nan, 1.0, 1.0]))
    with pytest.raises(ValueError, match="warmup"):
        SpikeDetector(4, warmup=2)
