import numpy as np
import pytest

from rt_recon.errors import DataError, ShapeMismatchError
from rt_recon.preprocess.chain import PreprocessChain
from rt_recon.preprocess.despike import SpikeDetector
from rt_recon.preprocess.detrend import OnlineDetrend
from rt_recon.preprocess.fd import FramewiseDisplacement
from rt_recon.preprocess.mask import VoxelSelection
from rt_recon.preprocess.motion import MotionCorrection
from rt_recon.preprocess.zscore import RunningZScore
from tests.preprocess._synthetic import SHAPE, BlobHead, oblique_affine, sample

N_TRS = 14


@pytest.fixture(scope="module")
def run():
    """A drifting, moving head: ``(reference, volumes (N_TRS, x, y, z), true params)``."""
    head, affine = BlobHead(seed=1), oblique_affine()
    rng = np.random.default_rng(5)
    params = np.cumsum(rng.normal(0, [0.1, 0.1, 0.1, 0.002, 0.002, 0.002], (N_TRS, 6)), axis=0)
    noise = rng.normal(0, 2.0, size=(N_TRS, *SHAPE))
    volumes = np.stack(
        [
            sample(head, affine, p) * (1 + 0.002 * t) + n
            for t, (p, n) in enumerate(zip(params, noise, strict=True))
        ]
    ).astype(np.float32)
    volumes[10, :, :, 12] += 400.0  # a slice spike at TR 10
    return sample(head, affine), volumes, params


def stages(reference, mask):
    n = int(mask.sum())
    return dict(
        motion=MotionCorrection(reference, oblique_affine()),
        select=VoxelSelection.from_mask(mask),
        despike=SpikeDetector(n, warmup=10),
        detrend=OnlineDetrend(n, degree=1, n_confounds=6),
        zscore=RunningZScore(n, warmup=4),
        fd=FramewiseDisplacement(),
    )


def test_chain_equals_the_stages_run_by_hand(run):
    reference, volumes, true_params = run
    mask = reference > 300.0
    chain = PreprocessChain(**stages(reference, mask))
    by_hand = stages(reference, mask)
    for t, volume in enumerate(volumes):
        flat = np.ravel(volume, order="F")  # the stream's layout
        out = chain.update(flat)
        x = by_hand["select"].update(by_hand["motion"].update(volume))
        x = by_hand["despike"].update(x)
        x = by_hand["detrend"].update(x, by_hand["motion"].params)
        x = by_hand["zscore"].update(x)
        fd = by_hand["fd"].update(by_hand["motion"].params)
        assert out.shape == (mask.sum(),) and out.dtype == np.float32
        np.testing.assert_allclose(out, x, atol=2e-3)
        q = chain.quality
        assert q.index == t and q.iterations >= 1
        if t != 10:  # the slice spike at TR 10 biases the rigid fit (least squares)
            np.testing.assert_allclose(q.params, true_params[t], atol=0.05)
        assert q.fd_mm == pytest.approx(fd)
    assert chain.despike.flagged_trs == [10]
    assert chain.quality.warming_up == ["OnlineDetrend"]  # 14 TRs < 2 x 8 regressors
    chain.reset()
    assert chain.count == 0 and chain.despike.flagged_trs == []


def test_stages_are_optional_and_output_is_flat_x_fastest(run):
    reference, volumes, _ = run
    chain = PreprocessChain(zscore=RunningZScore(reference.size))
    out = chain.update(volumes[0])
    assert out.shape == (reference.size,)
    chain = PreprocessChain(motion=MotionCorrection(reference, oblique_affine()))
    out = chain.update(volumes[3])
    np.testing.assert_array_equal(out, np.ravel(chain.motion.reslice(volumes[3]), order="F"))


def test_inconsistent_stages_are_refused(run):
    reference, volumes, _ = run
    motion = MotionCorrection(reference, oblique_affine())
    with pytest.raises(ShapeMismatchError, match="6 motion confounds but no motion stage"):
        PreprocessChain(detrend=OnlineDetrend(10, n_confounds=6))
    with pytest.raises(ShapeMismatchError, match="n_confounds=3"):
        PreprocessChain(motion=motion, detrend=OnlineDetrend(10, n_confounds=3))
    with pytest.raises(ShapeMismatchError, match="needs a motion stage"):
        PreprocessChain(fd=FramewiseDisplacement())
    with pytest.raises(ShapeMismatchError, match=r"\(2, 2, 2\) volumes, the motion reference"):
        PreprocessChain(motion=motion, select=VoxelSelection(np.array([0]), (2, 2, 2)))
    chain = PreprocessChain(motion=motion)
    bad = volumes[0].copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN/Inf"):
        chain.update(bad)
