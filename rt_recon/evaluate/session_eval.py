"""Score a recorded session: each trial's frame against the picture shown, and the latency.

Pairing is by content, not by counting. The trials and their onsets follow
the protocol's trial rule (:mod:`rt_recon.protocol`, ``is_trial_event`` and
``onset_tr``: the recorded volume stamped nearest the trial's marker), the
same rule the decoder and the console apply live; a trial's frame is the one
rendered from the volume at its scored TR (``lag_trs`` later), found by the
CRC-32 the decoder puts in every header (a frame interpolated between two TRs' frames
is never one: :func:`~rt_recon.protocol.is_interpolated`). A session that dropped or
duplicated TRs is scored on the trials whose frames exist; the others are
counted as missing, and every figure is stated as ``n scored of n shown``
beside identification over all trials shown, a missing trial counted as a
failure, with a warning when few were scored
(:func:`~rt_recon.evaluate.trials.coverage_warnings`) and one naming each stretch of
TRs that was not decoded, and why (:mod:`rt_recon.evaluate.gaps`: a decoder
restart's downtime, volumes that never reached the decoder). Latency is judged by
the session's own budgets (its recorded config), so a GPU session meets GPU
budgets.

A recording with nothing to score (no stimulus markers, no frames, fewer
than two trials with a frame) is a :class:`~rt_recon.errors.DataError`
saying which, and what to do.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rt_recon.config import SessionConfig, validate_config
from rt_recon.errors import ConfigError, DataError
from rt_recon.evaluate.gaps import recorded_gaps
from rt_recon.evaluate.latency import StageSummary, stage_samples, summarise
from rt_recon.evaluate.metrics import PIXEL_SPACE, correlation_matrix, pixel_features
from rt_recon.evaluate.semantic import WORLD_BASELINES, SemanticReport, evaluate_semantic
from rt_recon.evaluate.ssim import mean_ssim
from rt_recon.evaluate.trials import (
    TrialCoverage,
    coverage,
    match_size,
    require_scorable,
    score,
)
from rt_recon.protocol import Marker, TrialWindow, is_interpolated, is_trial_event, onset_tr
from rt_recon.record.segments import SessionReader

log = logging.getLogger(__name__)


@dataclass
class TrialRow:
    trial: int
    stimulus_id: int
    onset_tr: int
    frame_tr: int | None  # None: no frame was rendered from that volume
    corr_own: float | None = None


@dataclass
class SessionEvaluation(TrialCoverage):
    recording: Path
    n_trials: int  # trials scored: those with a frame
    n_missing: int  # trials shown whose frame was never rendered or recorded
    identification: float
    pixcorr: float
    ssim: float
    feature_space: str
    latency: list[StageSummary]
    latency_samples: dict[str, list[float]] = field(default_factory=dict)  # ms per TR
    trials: list[TrialRow] = field(default_factory=list)
    recons: np.ndarray | None = None
    truths: np.ndarray | None = None
    #: One line per stretch of TRs without latents, and why (:mod:`rt_recon.evaluate.gaps`).
    not_decoded: list[str] = field(default_factory=list)
    #: The decoded latents each scored trial's frame was rendered from, ``{head: (n, ...)}``;
    #: None when the recording holds none for some scored frame.
    decoded: dict[str, np.ndarray] | None = None
    #: Feature-space identification, same-background identification, attributes and the
    #: pixel figures, each beside its baselines (:mod:`rt_recon.evaluate.semantic`).
    semantic: SemanticReport | None = None
    #: The render model the session's renderer ran (its recorded ``renderer.model``), if known.
    render_model: str | None = None
    #: The session's feedback condition as recorded (:mod:`rt_recon.record.feedback`; a
    #: blinded run's is revealed here); None for a recording made before conditions were.
    feedback: dict | None = None

    def feedback_line(self) -> str | None:
        """The condition in one line: ``feedback condition: yoked (blinded; shown the frames
        of PATH)``; None when the recording does not say."""
        fb = self.feedback
        if not fb:
            return None
        notes = ["blinded, revealed here"] if fb.get("blinded") else []
        if fb.get("yoked_recording"):
            notes.append(
                f"shown the frames of {fb['yoked_recording']} ({fb.get('yoked_digest')}); "
                "the frames scored are those shown"
            )
        return f"feedback condition: {fb.get('condition')}" + (
            f" ({'; '.join(notes)})" if notes else ""
        )

    @property
    def scored_stimulus_ids(self) -> list[int]:
        """The stimulus of each scored trial, in the order of ``recons`` and ``truths``."""
        return [r.stimulus_id for r in self.trials if r.frame_tr is not None]

    def add_world_baselines(
        self,
        pictures: Mapping[str, np.ndarray],
        not_available: Mapping[str, str] | None = None,
    ) -> None:
        """Score the baselines only the world can draw (name of
        :data:`~rt_recon.evaluate.semantic.WORLD_BASELINES` -> one ``(H, W, 3)`` picture per
        scored trial); those left out are stated as not available, with the reason given."""
        self.semantic = evaluate_semantic(
            self.recons, self.truths, self.n_shown, pictures, not_available
        )

    @property
    def warnings(self) -> list[str]:
        """Few trials scored (:func:`~rt_recon.evaluate.trials.coverage_warnings`), then
        every stretch of TRs that was not decoded (a decoder restart's downtime, ...)."""
        return [*super().warnings, *self.not_decoded]

    def headline(self) -> str:
        """The accuracy, one figure per line, each beside its baselines and with the trials
        it rests on (``n scored of n shown``): feature-space identification with its
        interval first, then same-background identification, shape, and the pixel figures."""
        if self.semantic is not None:
            return "\n".join(self.semantic.lines())
        return self.pixel_headline()

    def pixel_headline(self) -> str:
        """The pixel figures alone in one line (identification in RGB pixels, PixCorr, SSIM)."""
        line = (
            f"two-way identification {100 * self.identification:.1f}% "
            f"(chance 50%, {self.feature_space}) on {coverage(self.n_trials, self.n_shown)}"
        )
        if self.n_missing:
            line += (
                f"; {100 * self.identification_shown:.1f}% over all {self.n_shown} shown, "
                f"the {self.n_missing} without a frame counted as failures"
            )
        return f"{line}; PixCorr {self.pixcorr:.3f}, SSIM {self.ssim:.3f}"

    def metrics(self) -> dict:
        return {
            "n_trials": self.n_trials,
            "n_missing": self.n_missing,
            "n_shown": self.n_shown,
            "identification": self.identification,
            "identification_shown": self.identification_shown,
            "pixcorr": self.pixcorr,
            "ssim": self.ssim,
            "feature_space": self.feature_space,
            "semantic": None if self.semantic is None else self.semantic.to_json(),
            "warnings": self.warnings,
            "feedback": self.feedback,
            "latency_ms": {
                r.stage: {
                    "n": r.n,
                    "p50": r.p50_ms,
                    "p95": r.p95_ms,
                    "max": r.max_ms,
                    "budget": r.budget_ms,
                }
                for r in self.latency
            },
        }


#: Why the world-drawn baselines are missing when the caller supplies none.
NO_WORLD = "no stimulus world given (a recording of real data has none)"


def evaluate_recording(
    path: str | Path,
    stimuli: Mapping[int, np.ndarray],
    progress: Callable[[int, int], None] | None = None,
) -> SessionEvaluation:
    """Score the recording at ``path`` (with its later segments, if any:
    :mod:`rt_recon.record.segments`); ``stimuli`` maps stimulus id -> ``(H, W, 3)`` uint8.

    The world-drawn baselines are stated as not available; a caller that has the world
    adds them with :meth:`SessionEvaluation.add_world_baselines`."""
    with SessionReader(path) as reader:
        segments = reader.volumes()
        markers = reader.markers()
        headers, images = _tr_frames(*reader.frames())
        latents_headers, latents_z, latents_c = reader.latents()
        recorded = reader.attr("config")
        feedback = reader.attr("feedback")
        gaps = recorded_gaps(reader)
    budgets = _recorded_budgets(path, recorded)
    # the session's volumes in acquisition order, segment after segment (grids may differ:
    # a volume is known by its stamp and its CRC-32)
    stamps = np.concatenate([s for _, s in segments])
    volume_crcs = [zlib.crc32(v) for values, _ in segments for v in values]
    if len(stamps) == 0:
        raise DataError(f"{path}: the recording holds no volumes")
    events = [(m, t) for e, t in markers if is_trial_event(m := Marker.from_json(e))]
    if not events:
        raise DataError(_no_stimulus_markers(path, len(markers), recorded))
    if not headers:
        raise DataError(
            f"no frames in {path}: nothing to score ({len(events)} stimulus markers, "
            f"{len(stamps)} volumes, but no picture was recorded: was the renderer running, "
            "and the recorder subscribed to renderer.frames_endpoint?)"
        )
    frame_of_crc = {h.get("volume_crc32"): i for i, h in enumerate(headers)}
    lags = {h["lag_trs"] for h in headers if "lag_trs" in h}
    if len(lags) != 1:
        raise DataError(f"{path}: frames must carry one lag_trs, found {sorted(lags)}")
    window = TrialWindow(lags.pop(), 1)
    indices = range(len(stamps))  # recorded volumes, in acquisition order
    latents_of_crc = {h.get("volume_crc32"): i for i, h in enumerate(latents_headers)}
    rows, recons, truths, decoded_rows = [], [], [], []
    for k, (event, stamp) in enumerate(events):
        if progress is not None:
            progress(k + 1, len(events))
        onset = onset_tr(stamp, indices, stamps)
        sid = int(event.stimulus_id)  # type: ignore[arg-type]
        if sid not in stimuli:
            raise DataError(f"{path}: stimulus {sid} of trial {k} has no picture")
        scored = window.scored_tr(onset)
        frame = frame_of_crc.get(volume_crcs[scored]) if scored < len(stamps) else None
        rows.append(TrialRow(k, sid, onset, None if frame is None else int(headers[frame]["tr"])))
        if frame is not None:
            recons.append(images[frame])
            truths.append(stimuli[sid])
            decoded_rows.append(latents_of_crc.get(volume_crcs[scored]))
    require_scorable(len(recons), len(rows), str(path))
    times = [h["times"] for h in headers if "times" in h]
    truths_arr = np.stack(truths)
    recons_arr = match_size(np.stack(recons), truths_arr.shape[1:3])
    scores = score(recons_arr, truths_arr, missing=len(rows) - len(recons))
    own = np.diag(correlation_matrix(pixel_features(recons_arr), pixel_features(truths_arr)))
    for row, corr in zip([r for r in rows if r.frame_tr is not None], own, strict=True):
        row.corr_own = float(corr)
    decoded = None
    if decoded_rows and None not in decoded_rows:
        decoded = {"z": latents_z[decoded_rows], "c": latents_c[decoded_rows]}
    semantic = evaluate_semantic(
        recons_arr,
        truths_arr,
        len(rows),
        not_available=dict.fromkeys(WORLD_BASELINES, NO_WORLD),
    )
    return SessionEvaluation(
        recording=Path(path),
        n_trials=scores.n_trials,
        n_missing=scores.n_missing,
        identification=scores.identification,
        pixcorr=scores.pixcorr,
        ssim=mean_ssim(recons_arr, truths_arr),
        feature_space=PIXEL_SPACE,
        latency=summarise(times, budgets),
        latency_samples=stage_samples(times),
        trials=rows,
        recons=recons_arr,
        truths=truths_arr,
        not_decoded=[gap.describe() for gap in gaps],
        decoded=decoded,
        semantic=semantic,
        render_model=_recorded_render_model(recorded),
        feedback=feedback,
    )


def _tr_frames(headers: list[dict], images: np.ndarray) -> tuple[list[dict], np.ndarray]:
    """The TRs' own frames: a frame interpolated between two TRs' (``renderer.interpolate_fps``;
    the recorder keeps none, a file from elsewhere may) is no TR's picture, so it never stands
    in for a TR's missing frame nor counts in the latency."""
    keep = [i for i, header in enumerate(headers) if not is_interpolated(header)]
    if len(keep) == len(headers):
        return headers, images
    return [headers[i] for i in keep], images[keep]


def _no_stimulus_markers(path: str | Path, n_markers: int, recorded: object) -> str:
    """What to say about a recording without a trial marker, and what to do about it."""
    source_id = None
    if isinstance(recorded, dict):
        source_id = (recorded.get("stream") or {}).get("markers_source_id")
    stream = "stream.markers_source_id"
    if source_id:
        stream = f"{source_id!r} ({stream})"
    found = (
        "it holds no markers at all"
        if n_markers == 0
        else f"none of its {n_markers} markers is a trial: type 'event' (or none) with a "
        "stimulus_id"
    )
    return (
        f"no stimulus markers in {path}: nothing to score ({found}). Record the stimulus "
        f"program's marker stream {stream}: the recorder takes it only if it is on the "
        "network when the scanner's stream appears, so start the stimulus program before the "
        "scanner. A recording without markers can still be replayed (`rt-recon replay`), "
        "not scored"
    )


def _recorded_render_model(recorded: object) -> str | None:
    """``renderer.model`` of the recorded config, when it names one."""
    if not isinstance(recorded, dict):
        return None
    model = (recorded.get("renderer") or {}).get("model")
    return None if model is None else str(model)


def _recorded_budgets(path: str | Path, recorded: object) -> dict[str, float]:
    """The latency budgets of the session as recorded (its config); the defaults, with a
    warning, for a recording whose config this version cannot read."""
    if recorded is None:
        log.warning("%s holds no session config; judging latency by the default budgets", path)
        return SessionConfig().budgets_ms()
    try:
        return validate_config(recorded, f"{path} (recorded config)").budgets_ms()
    except ConfigError as exc:
        log.warning("%s; judging latency by the default budgets", exc)
        return SessionConfig().budgets_ms()
