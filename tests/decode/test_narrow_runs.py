"""A fit preprocesses the training runs once over the widest set of voxels it needs and
narrows them (narrow_runs): the narrowed runs must equal a fresh extraction of the subset,
bit for bit, with motion correction, despiking and a GLM detrend on the motion parameters."""

import numpy as np
import pytest

from rt_recon.apps.fit_inputs import FitInputs
from rt_recon.config import FitSection
from rt_recon.decode.bundle import StreamSpec
from rt_recon.decode.fit import extract_runs, narrow_runs
from rt_recon.errors import DataError


@pytest.fixture(scope="module")
def runs_and_stream(small_dataset):
    inputs = FitInputs.from_dataset(small_dataset)
    shape, affine = inputs.grid
    stream = StreamSpec(shape, int(np.prod(shape)), "full", np.asarray(affine))
    return [r.training_run() for r in inputs.train], stream


@pytest.mark.parametrize("detrend", ["glm", "highpass", "none"])
def test_narrowed_runs_equal_a_fresh_extraction_of_the_subset(runs_and_stream, detrend):
    runs, stream = runs_and_stream
    fit = FitSection(motion_correction=True, despike=True, detrend=detrend)
    rng = np.random.default_rng(0)
    wide = np.sort(rng.choice(stream.n_channels, 600, replace=False))
    subset = np.sort(rng.choice(wide, 150, replace=False))
    extracted = extract_runs(runs, wide, fit, stream)
    assert extracted.params is not None and np.abs(np.concatenate(extracted.params)).max() > 0
    narrowed = narrow_runs(extracted, subset)
    fresh = extract_runs(runs, subset, fit, stream, reference=extracted.reference)
    np.testing.assert_array_equal(narrowed.voxels, fresh.voxels)
    for a, b in zip(narrowed.series, fresh.series, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(narrowed.realigned, fresh.realigned, strict=True):
        np.testing.assert_array_equal(a, b)


def test_narrowing_to_voxels_that_were_not_extracted_is_refused(runs_and_stream):
    runs, stream = runs_and_stream
    fit = FitSection(motion_correction=False, despike=False, detrend="none")
    extracted = extract_runs(runs, np.arange(10, 50), fit, stream)
    with pytest.raises(DataError, match="were not extracted"):
        narrow_runs(extracted, np.arange(40, 60))
