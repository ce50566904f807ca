import numpy as np

from rt_recon.preprocess.zscore import RunningZScore


def test_running_zscore_equals_batch_zscore_of_the_prefix():
    rng = np.random.default_rng(1)
    data = rng.normal(5.0, 3.0, size=(30, 7))
    data[:, 3] = 2.0  # a constant voxel
    z = RunningZScore(7, warmup=4)
    for t, x in enumerate(data):
        out = z.update(x)
        assert out.dtype == np.float32
        if t == 0:
            np.testing.assert_array_equal(out, 0)
            continue
        prefix = data[: t + 1]
        std = prefix.std(axis=0, ddof=1)
        expected = np.divide(x - prefix.mean(axis=0), std, out=np.zeros(7), where=std > 0)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
        assert out[3] == 0.0
        assert z.warming_up == (t + 1 < 4)


def test_reset_forgets_the_run():
    z = RunningZScore(2, warmup=2)
    for x in ([1.0, 2.0], [3.0, 5.0], [2.0, 2.0]):
        z.update(np.array(x))
    z.reset()
    assert z.count == 0 and z.warming_up
    np.testing.assert_array_equal(z.update(np.array([9.0, 9.0])), 0)
