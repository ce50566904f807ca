"""Decode and render a recorded run offline, with the same objects the nodes use.

:class:`~rt_recon.decode.online.OnlineDecoder` fed the run's volumes in
order gives exactly the latents the decoder node publishes live (tested in
tests/nodes/test_pipeline.py); the renderer is the node's
:class:`~rt_recon.render.img2img.Img2ImgRenderer`. Only the frames of trial
TRs are rendered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rt_recon.acquire.nifti import load_nifti_run
from rt_recon.dataset import Dataset, RunFiles
from rt_recon.decode.bundle import DecoderBundle
from rt_recon.decode.online import OnlineDecoder
from rt_recon.errors import DataError
from rt_recon.evaluate.trials import TrialScores, collect_trials, score
from rt_recon.protocol import trial_samples
from rt_recon.render.img2img import Img2ImgRenderer


@dataclass
class RunEvaluation:
    scores: TrialScores
    stimulus_ids: list[int]
    recons: np.ndarray  # (n, H, W, 3) uint8
    truths: np.ndarray  # (n, H, W, 3) uint8


def decode_run(bundle: DecoderBundle, volumes: np.ndarray) -> list[dict[str, np.ndarray]]:
    """Latents for every TR of ``(n_trs, n_channels)`` volumes."""
    decoder = OnlineDecoder(bundle)
    return [decoder.update(volume) for volume in volumes]


def evaluate_run(
    dataset: Dataset, files: RunFiles, bundle: DecoderBundle, renderer: Img2ImgRenderer
) -> RunEvaluation:
    """Decode a run, render each trial's frame, score against the shown pictures."""
    run = load_nifti_run(files.bold, files.events)
    latents = decode_run(bundle, run.volumes)
    lag = bundle.window.lag_trs
    trial_trs = {t for t, _ in trial_samples(run.events, len(run.volumes), run.tr_s, lag)}
    if not trial_trs:
        raise DataError(
            f"no trial events in {files.events} (events with a stimulus_id whose response, "
            f"{lag} TRs after the onset, falls inside the run's {len(run.volumes)} volumes): "
            "nothing to score"
        )
    frames = {t: renderer.render(latents[t]["z"], latents[t]["c"]) for t in sorted(trial_trs)}
    ids = sorted({int(e["stimulus_id"]) for e in run.events if "stimulus_id" in e})
    truths = dict(zip(ids, dataset.stimulus_images(ids), strict=True))
    shown, recons, truth_arr, missing = collect_trials(
        run.events, len(run.volumes), run.tr_s, lag, frames, truths
    )
    return RunEvaluation(score(recons, truth_arr, missing), shown, recons, truth_arr)
