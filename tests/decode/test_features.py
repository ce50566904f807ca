"""The decoder's preprocessing chain on synthetic scanner data with head motion."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import load_file

from rt_recon.acquire.nifti import load_mask, load_nifti_run
from rt_recon.config import FitSection
from rt_recon.decode.features import FeatureExtractor
from rt_recon.errors import DataError, ShapeMismatchError
from rt_recon.preprocess import DespikeSpec, PreprocessSpec
from rt_recon.preprocess.highpass import RecursiveHighPass
from tests.conftest import SMALL_SIM


def _extractor(dataset):
    fit = FitSection()
    files = dataset.runs("train")[0]
    run = load_nifti_run(files.bold, files.events)
    voxels = load_mask(dataset.mask_path("ev"), run.shape)
    reference = run.volumes[:5].mean(axis=0).reshape(run.shape, order="F")
    spec = PreprocessSpec.from_fit(fit, run.affine, run.tr_s)
    return run, FeatureExtractor(spec, voxels, run.shape, run.affine, reference)


def test_realignment_recovers_the_simulated_head_motion(small_dataset):
    run, extractor = _extractor(small_dataset)
    estimated = []
    for volume in run.volumes:
        extractor.update(volume)
        estimated.append(extractor.quality.params)
    estimated = np.array(estimated)
    truth = load_file(str(small_dataset.root / "groundtruth" / "sub-01_run-01_truth.safetensors"))
    moved = truth["motion"][:, :3]  # the head moved by M; realignment undoes it: about -M
    for axis in range(3):
        if moved[:, axis].std() > 0.05:
            r = np.corrcoef(estimated[:, axis], -moved[:, axis])[0, 1]
            assert r > 0.8, f"axis {axis}: r = {r:.2f}"
    assert extractor.quality.fd_mm is not None and extractor.quality.fd_mm >= 0


def test_features_have_the_selected_voxels_and_settle_after_warm_up(small_dataset):
    run, extractor = _extractor(small_dataset)
    assert extractor.warming_up
    out = [extractor.update(v) for v in run.volumes]
    assert out[-1].shape == (len(extractor.voxels),) and out[-1].dtype == np.float32
    assert not extractor.warming_up
    late = np.array(out[SMALL_SIM.lead_in_trs + 5 :])
    assert np.isfinite(late).all() and 0.3 < late.std() < 2.0  # z-scored scale


def test_bad_volumes_are_clear_errors(small_dataset):
    run, extractor = _extractor(small_dataset)
    volume = run.volumes[0].copy()
    with pytest.raises(ShapeMismatchError, match="expects"):
        extractor.update(volume[:-1])
    volume[10] = np.nan
    with pytest.raises(DataError, match="1 NaN/Inf"):
        extractor.update(volume)


def test_high_pass_removes_drift_and_keeps_a_trial_length_response():
    tr_s = 1.5
    t = np.arange(240)
    drift = 0.02 * t  # 0.02 per TR
    bump = np.zeros_like(drift, dtype=float)
    bump[150:153] = 1.0  # a 3-TR response
    stage = RecursiveHighPass(1, cutoff_trs=128 / tr_s)
    out = np.array([stage.update(np.array([x]))[0] for x in drift + bump])
    # a steady ramp leaves only a constant lag (slope * tau); at the bump's second TR the
    # running mean (tau = 13.6 TRs) has followed it by ~1 - (1 - 1/14)^2: ~86% remains
    assert np.std(out[100:145]) < 0.02
    assert out[151] - out[145] > 0.8
    with pytest.raises(ValueError, match="cutoff_trs"):
        RecursiveHighPass(3, cutoff_trs=1.0)


def test_the_despike_threshold_of_the_spec_is_the_one_applied(small_dataset):
    files = small_dataset.runs("train")[0]
    run = load_nifti_run(files.bold, files.events)
    voxels = load_mask(small_dataset.mask_path("ev"), run.shape)
    for threshold in (2.5, 6.0):
        spec = PreprocessSpec(despike=DespikeSpec(threshold=threshold))
        chain = FeatureExtractor(spec, voxels, run.shape, run.affine).chain
        assert chain.despike is not None and chain.despike.threshold == threshold
