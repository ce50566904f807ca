"""Acceptance of the embedded default: held-out pictures are identified from synthetic fMRI.

A CI-sized run of the demo's science, offline, on the easy participant (the
demo's default until the realistic one): a synthetic session at its default
SNR, decoders fitted for the embedded model, the held-out test run decoded and
rendered by the same objects the live nodes use.
"""

from __future__ import annotations

import pytest

from rt_recon.apps.fit import fit_dataset
from rt_recon.config import FitSection, RendererSection, SimulationSection
from rt_recon.evaluate.offline import evaluate_run
from rt_recon.render.embedded import EMBEDDED_DIR
from rt_recon.render.img2img import Img2ImgRenderer
from rt_recon.render.model import load_render_model
from rt_recon.simulators.session import generate_session

pytestmark = pytest.mark.slow


def test_held_out_test_run_is_identified_at_the_default_snr(tmp_path):
    sim = SimulationSection(participant="easy")
    dataset = generate_session(sim, tmp_path / "session")
    model = load_render_model(EMBEDDED_DIR, with_text=True)
    bundle = fit_dataset(dataset, model, FitSection())
    settings = RendererSection()
    renderer = Img2ImgRenderer(model, steps=settings.steps, strength=settings.strength)
    evaluation = evaluate_run(dataset, dataset.runs("test")[0], bundle, renderer)
    assert evaluation.scores.n_trials == sim.trials_per_run
    assert evaluation.scores.identification >= 0.8
