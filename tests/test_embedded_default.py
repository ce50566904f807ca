"""Acceptance of the embedded default: the held-out test run of the demo's default session
(the realistic participant) is identified from synthetic fMRI, in the metric network's
features, against same-background distractors, and by its shape.

``demo_offline_run`` (tests/conftest.py) is what ``rt-recon demo`` computes, offline: a
fresh session of the shipped config, decoders fitted for the embedded model, the test run
decoded and rendered by the objects the nodes use. It is one run and one renderer seed,
so the thresholds come from the spread measured over five test runs (participant seeds
0-4) x three renderer seeds (``python -m benchmarks.bench_accuracy``, docs/metrics.md,
2026-12-05: world version 2, the embedded model retrained on it, the shipped recipe with c
snapped to the caption bank, 4 steps at strength 0.75): each is the mean minus three SDs
over those 15 figures, rounded down. A figure under it is very unlikely to be an unlucky run
of today's model; the plain ridge decoder (90.0%, 86.9%, 38.3%) would fall under the
shape threshold on most runs.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

#: bench_accuracy on the test runs, the shipped decoder recipe: identification 96.2% ± 1.5%
#: (mean ± SD over the 15).
MIN_IDENTIFICATION = 0.91
#: same-background identification 95.3% ± 3.1%.
MIN_SAME_BACKGROUND = 0.86
#: shape agreement 58.9% ± 6.1% (chance 1/6).
MIN_SHAPE = 0.40


def test_held_out_pictures_are_identified_beyond_their_background(demo_offline_run):
    report, run = demo_offline_run.report, demo_offline_run.run
    sim = demo_offline_run.config.simulation
    assert sim.participant == "realistic"  # the shipped default
    model = report.model
    assert model.n == model.n_shown == sim.trials_per_run  # every trial has its frame
    print("\n" + "\n".join(report.lines()))
    assert model.identification >= MIN_IDENTIFICATION
    assert model.same_background >= MIN_SAME_BACKGROUND
    assert model.attributes["shape"] >= MIN_SHAPE
    lo, hi = model.identification_ci
    assert lo < model.identification < hi  # the interval is around the figure it qualifies
    # the pixel figures the evaluation reports are the ones of the offline run
    assert model.pixel_identification == pytest.approx(run.scores.identification)
