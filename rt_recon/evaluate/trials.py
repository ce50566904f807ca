"""Score a run's reconstructions trial by trial against the pictures that were shown.

Each trial is scored on the frame of its scored TR, ``lag`` TRs after its
onset: the TR at which the decoder's HRF window holds that trial's response,
the TR the decoders were fitted on (the protocol's trial rule,
:func:`rt_recon.protocol.trial_samples`).

**Scored of shown.** A trial whose frame was never rendered (a latest-only
renderer skipped its TR, a TR was missed) cannot be compared: it is counted,
never silently dropped. Every figure is stated with the trials it rests on,
``n scored of n shown`` (:func:`coverage`), beside identification over all
trials shown with each trial without a frame counted as a failure
(``identification_shown``: a missing trial wins none of its comparisons). A
figure resting on few trials is flagged (:func:`coverage_warnings`): fewer
than :data:`MIN_SCORED_TRIALS` scored, or fewer than
:data:`MIN_SCORED_FRACTION` of those shown.
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

#: A figure over fewer scored trials than this is flagged: each trial is more than a tenth
#: of it, and its spread over trials is wide.
MIN_SCORED_TRIALS = 10

#: A figure over less than this fraction of the trials shown is flagged: most frames are
#: missing, and the trials that kept theirs need not be typical.
MIN_SCORED_FRACTION = 0.5


class TrialCoverage:
    """What the scored figures rest on, for a result with ``n_trials`` scored (with a frame),
    ``n_missing`` without a frame and ``identification`` over the scored ones."""

    n_trials: int
    n_missing: int
    identification: float

    @property
    def n_shown(self) -> int:
        """Trials presented (stimulus markers): scored plus missing."""
        return self.n_trials + self.n_missing

    @property
    def identification_shown(self) -> float:
        """Identification over every trial shown, a trial without a frame a failure (0)."""
        return identification_shown(self.identification, self.n_trials, self.n_missing)

    @property
    def warnings(self) -> list[str]:
        """Why the figures should not be read alone (few trials scored); empty when fine."""
        return coverage_warnings(self.n_trials, self.n_shown)


@dataclass
class TrialScores(TrialCoverage):
    n_trials: int  # trials scored: those with a frame
    n_missing: int  # trials whose frame never arrived
    identification: float  # two-way, in :data:`PIXEL_SPACE`, over the scored trials
    pixcorr: float
    feature_space: str = PIXEL_SPACE


def identification_shown(identification: float, n_scored: int, n_missing: int) -> float:
    """Two-way identification over all ``n_scored + n_missing`` trials shown: the scored
    trials' mean ``identification``, each trial without a frame counted as a failure (0)."""
    n_shown = n_scored + n_missing
    return identification * n_scored / n_shown if n_shown else 0.0


def coverage(n_scored: int, n_shown: int) -> str:
    """``"3 scored of 36 shown"``: the trials a figure rests on, and those presented."""
    return f"{n_scored} scored of {n_shown} shown"


def coverage_warnings(n_scored: int, n_shown: int) -> list[str]:
    """Why a figure over ``n_scored`` of ``n_shown`` trials should not be read alone
    (empty when it can): fewer than :data:`MIN_SCORED_FRACTION` of the trials shown
    scored, fewer than :data:`MIN_SCORED_TRIALS` scored."""
    warnings = []
    if n_scored < MIN_SCORED_FRACTION * n_shown:
        warnings.append(
            f"only {n_scored} of the {n_shown} trials shown have a frame (under "
            f"{MIN_SCORED_FRACTION:.0%}): the figures describe the trials that kept their "
            "frames, not the session; look for skipped or missed TRs"
        )
    if n_scored < MIN_SCORED_TRIALS:
        share = f"{100 / n_scored:.0f}%" if n_scored else "all"
        warnings.append(
            f"only {n_scored} trials scored (under {MIN_SCORED_TRIALS}): each one is {share} "
            "of every figure; too few to read as the session's accuracy"
        )
    return warnings


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
    samples = trial_samples(events, n_trs, tr_s, lag)
    if not samples:
        raise DataError(
            "no trial events (events with a stimulus_id whose response ends inside the run): "
            "nothing to score"
        )
    for frame_tr, stimulus_id in samples:
        if frame_tr not in frames:
            missing += 1
            continue
        ids.append(stimulus_id)
        recons.append(frames[frame_tr])
        truths.append(truth_images[stimulus_id])
    require_scorable(len(ids), len(samples))
    return ids, np.stack(recons), np.stack(truths), missing


def require_scorable(n_scored: int, n_shown: int, where: str = "") -> None:
    """Raise DataError unless at least two of the ``n_shown`` trials have a frame."""
    if n_scored < 2:
        raise DataError(
            f"{where + ': ' if where else ''}only {n_scored} of the {n_shown} trials shown "
            "have a frame; scoring needs at least 2 (the others' frames were never rendered "
            "or recorded: TRs the renderer skipped or the decoder missed)"
        )


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
