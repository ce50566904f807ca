"""Score a run's reconstructions trial by trial against the pictures that were shown.

Each trial is scored on the frame of its scored TR, ``lag`` TRs after its
onset: the TR at which the decoder's HRF window holds that trial's response,
the TR the decoders were fitted on (the protocol's trial rule,
:func:`rt_recon.protocol.trial_samples`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from rt_recon.errors import DataError
from rt_recon.evaluate.metrics import PIXEL_SPACE, pixcorr, pixel_features, two_way_identification
from rt_recon.protocol import trial_samples


@dataclass
class TrialScores:
    n_trials: int
    n_missing: int  # trials whose frame never arrived
    identification: float  # two-way, in :data:`PIXEL_SPACE`
    pixcorr: float
    feature_space: str = PIXEL_SPACE


def collect_trials(
    events: Sequence[dict],
    n_trs: int,
    tr_s: float,
    lag: int,
    frames: Mapping[int, np.ndarray],
    truth_images: Mapping[int, np.ndarray],
) -> tuple[list[int], np.ndarray, np.ndarray, int]:
    """``(stimulus ids, reconstructions, truths, n_missing)`` for the trials with a frame."""
    ids, recons, truths, missing = [], [], [], 0
    for frame_tr, stimulus_id in trial_samples(events, n_trs, tr_s, lag):
        if frame_tr not in frames:
            missing += 1
            continue
        ids.append(stimulus_id)
        recons.append(frames[frame_tr])
        truths.append(truth_images[stimulus_id])
    if len(ids) < 2:
        raise DataError(f"only {len(ids)} trial(s) have a rendered frame; need at least 2 to score")
    return ids, np.stack(recons), np.stack(truths), missing


def match_size(recons: np.ndarray, height_width: tuple[int, int]) -> np.ndarray:
    """Resize ``(n, H, W, 3)`` pictures to ``height_width`` (bicubic) unless they match."""
    if recons.shape[1:3] == tuple(height_width):
        return recons
    size = (height_width[1], height_width[0])
    return np.stack(
        [np.asarray(Image.fromarray(r).resize(size, Image.Resampling.BICUBIC)) for r in recons]
    )


def score(recons: np.ndarray, truths: np.ndarray, missing: int = 0) -> TrialScores:
    """Identification and PixCorr of ``(n, H, W, 3)`` uint8 reconstructions vs truths."""
    recons = match_size(recons, truths.shape[1:3])
    fr, ft = pixel_features(recons), pixel_features(truths)
    return TrialScores(
        n_trials=len(recons),
        n_missing=missing,
        identification=two_way_identification(fr, ft),
        pixcorr=pixcorr(fr, ft),
    )


def save_grid(recons: np.ndarray, truths: np.ndarray, path: str | Path, columns: int = 12) -> Path:
    """Truth above reconstruction, ``columns`` trials per row pair, 2x nearest upscaling."""
    side = truths.shape[1]
    n = len(truths)
    rows = int(np.ceil(n / columns))
    canvas = np.full((rows * (2 * side + 4), columns * (side + 2), 3), 255, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, columns)
        y, x = r * (2 * side + 4), col * (side + 2)
        canvas[y : y + side, x : x + side] = truths[i]
        canvas[y + side : y + 2 * side, x : x + side] = match_size(recons[i : i + 1], (side, side))[
            0
        ]
    image = Image.fromarray(canvas)
    image = image.resize((image.width * 2, image.height * 2), Image.Resampling.NEAREST)
    path = Path(path)
    image.save(path)
    return path
