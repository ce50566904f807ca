import numpy as np

from rt_recon.config import SimulationSection
from rt_recon.simulators.reliability import split_half_reliability


def test_default_noise_is_realistic_and_reliability_grows_with_snr():
    sim = SimulationSection()  # the default SNR of the embedded demo
    default = split_half_reliability(sim)
    roi = np.concatenate([default["ev"], default["hv"]])
    assert np.median(roi) <= 0.3  # single trials are noisy, as in real fMRI
    assert np.median(roi) > 0.05  # but not pure noise
    clean = split_half_reliability(sim.model_copy(update={"snr": 4 * sim.snr}))
    assert np.median(np.concatenate([clean["ev"], clean["hv"]])) > np.median(roi) + 0.2
