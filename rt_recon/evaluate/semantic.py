"""Reconstruction scores that a flat picture of the right background cannot earn.

In the synthetic world every picture is one shape on a plain background, so
two-way identification in pixels is earned mostly on the background colour
(a flat picture of the reconstruction's own border colour scores about 60%).
The figures here follow the field instead (docs/metrics.md):

- **identification** in the feature space of a frozen network trained on
  other pictures of the world (:mod:`rt_recon.evaluate.metric_net`), as
  MindEye (Scotti et al. 2023) uses AlexNet and CLIP features: two-way, each
  trial's reconstruction against every other trial's true picture, with a
  bootstrap 95% interval over trials (a trial's score is the fraction of
  distractors it beats; 2,000 seeded resamples of the trials);
- **same-background identification**: the same, the distractors restricted to
  trials whose true picture has the same background (as the network reads it
  from the true pictures), so background colour alone earns chance;
- **attribute agreement**: per attribute, how often the network reads the
  reconstruction as it reads the true picture;
- the pixel figures (identification in RGB pixels at 32x32, PixCorr, SSIM).

Every figure is printed beside the same figure for baselines, each scored by
exactly the same functions (:func:`score_set`): shuffled pairing, flat
pictures of the reconstruction's own border colour and of the true
background, and the baselines only a caller that can draw the world supplies
(:data:`WORLD_BASELINES`: the true picture with a wrong shape, the nearest
training picture by decoded latents). A baseline that was not computed says
why (:attr:`SemanticReport.not_available`).

A trial without a frame counts as a failure, as in
:mod:`rt_recon.evaluate.trials`: figures are over the trials scored and say
``n scored of n shown``; identification over all shown counts each missing
trial as 0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from rt_recon.errors import ShapeMismatchError
from rt_recon.evaluate.metric_net import MetricNet, load_metric_net
from rt_recon.evaluate.metrics import (
    PIXEL_SPACE,
    _standardise,
    correlation_matrix,
    two_way_identification,
)
from rt_recon.evaluate.ssim import mean_ssim
from rt_recon.evaluate.trials import coverage, identification_shown, match_size, score

log = logging.getLogger(__name__)

FEATURE_SPACE = "metric-net features"
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
SHUFFLES = 5
SHUFFLE_SEED = 0

SHUFFLED = "shuffled pairing"
FLAT_OWN = "flat, reconstruction's border colour"
FLAT_TRUE = "flat, true background"
WRONG_SHAPE = "true picture, wrong shape"
NEAREST_TRAINING = "nearest training picture by decoded latents"
#: Baselines that need the world (its drawing code, its training pictures): supplied by the
#: caller as pictures, one per scored trial.
WORLD_BASELINES = (WRONG_SHAPE, NEAREST_TRAINING)
#: Every baseline, in the order they are printed.
BASELINES = (SHUFFLED, FLAT_OWN, FLAT_TRUE, *WORLD_BASELINES)
#: Short names for one-line printouts.
SHORT = {
    SHUFFLED: "shuffled",
    FLAT_OWN: "flat own border",
    FLAT_TRUE: "flat true background",
    WRONG_SHAPE: "wrong shape",
    NEAREST_TRAINING: "nearest training",
}


@dataclass
class ScoredSet:
    """Every figure for one set of reconstructions (or a baseline's pictures) paired with
    the true pictures: ``n`` trials scored of ``n_shown``."""

    n: int
    n_shown: int
    identification: float  # two-way, in FEATURE_SPACE, over the n scored trials
    identification_ci: tuple[float, float]  # bootstrap 95% over trials
    same_background: float | None  # None: no trial has a same-background distractor
    same_background_ci: tuple[float, float] | None
    n_same_background: int  # trials with at least one same-background distractor
    attributes: dict[str, float]  # per head: reconstruction read as the true picture
    pixel_identification: float  # two-way, in PIXEL_SPACE
    pixcorr: float
    ssim: float

    @property
    def identification_shown(self) -> float:
        """Identification over every trial shown, a trial without a frame a failure (0)."""
        return identification_shown(self.identification, self.n, self.n_shown - self.n)

    def to_json(self) -> dict:
        return {**asdict(self), "identification_shown": self.identification_shown}


@dataclass
class SemanticReport:
    """The model's figures beside each baseline's; ``net_accuracy`` is how often the metric
    network reads the true held-out pictures right, per attribute (its config), and
    ``n_classes`` how many classes each attribute has."""

    model: ScoredSet
    baselines: dict[str, ScoredSet] = field(default_factory=dict)
    not_available: dict[str, str] = field(default_factory=dict)  # baseline -> why
    net_accuracy: dict[str, float] = field(default_factory=dict)
    n_classes: dict[str, int] = field(default_factory=dict)

    def _beside(self, value: Callable[[ScoredSet], float | None], fmt: str) -> str:
        parts = []
        for name in BASELINES:
            if name in self.baselines:
                figure = value(self.baselines[name])
                parts.append(f"{SHORT[name]} {'n/a' if figure is None else fmt.format(figure)}")
            elif name in self.not_available:
                parts.append(f"{SHORT[name]} not available")
        return "; baselines: " + ", ".join(parts) if parts else ""

    def lines(self) -> list[str]:
        """The headline figures, one per line, each with its baselines."""
        m = self.model
        low, high = m.identification_ci
        first = (
            f"two-way identification {100 * m.identification:.1f}% "
            f"[95% CI {100 * low:.1f}-{100 * high:.1f}] (chance 50%, {FEATURE_SPACE}) on "
            f"{coverage(m.n, m.n_shown)}"
        )
        if m.n_shown > m.n:
            first += (
                f" ({100 * m.identification_shown:.1f}% over all {m.n_shown} shown, the "
                f"{m.n_shown - m.n} without a frame counted as failures)"
            )
        lines = [first + self._beside(lambda s: 100 * s.identification, "{:.1f}%")]
        if m.same_background is None:
            lines.append(
                "same-background identification: no trial has a same-background distractor"
            )
        else:
            lo, hi = m.same_background_ci or (np.nan, np.nan)
            lines.append(
                f"same-background identification {100 * m.same_background:.1f}% "
                f"[95% CI {100 * lo:.1f}-{100 * hi:.1f}] (chance 50%) on {m.n_same_background} "
                "trials with a same-background distractor"
                + self._beside(
                    lambda s: None if s.same_background is None else 100 * s.same_background,
                    "{:.1f}%",
                )
            )
        if "shape" in m.attributes:
            net = self.net_accuracy.get("shape")
            reads = f"; the net reads true held-out shapes at {100 * net:.1f}%" if net else ""
            lines.append(
                f"shape read as the true picture's {100 * m.attributes['shape']:.1f}% "
                f"(chance {self._chance('shape')}){reads}"
                + self._beside(lambda s: 100 * s.attributes["shape"], "{:.1f}%")
            )
        lines.append(
            f"pixels: identification {100 * m.pixel_identification:.1f}% ({PIXEL_SPACE})"
            + self._beside(lambda s: 100 * s.pixel_identification, "{:.1f}%")
        )
        lines.append(
            f"pixels: PixCorr {m.pixcorr:.3f}" + self._beside(lambda s: s.pixcorr, "{:.3f}")
        )
        lines.append(f"pixels: SSIM {m.ssim:.3f}" + self._beside(lambda s: s.ssim, "{:.3f}"))
        return lines

    def _chance(self, head: str) -> str:
        n = self.n_classes.get(head, 0)
        return f"{100 / n:.0f}%" if n else "unknown"

    def table(self) -> tuple[list[str], list[list[str]]]:
        """``(column names, rows)``: one row per figure, the model then each baseline (``n/a``
        where a figure is undefined, ``not available`` where the baseline was not computed)."""
        names = [n for n in BASELINES if n in self.baselines or n in self.not_available]
        columns = ["figure", "model", *names]
        figures = [
            (f"two-way identification ({FEATURE_SPACE})", lambda s: _pct(s.identification)),
            ("95% interval (bootstrap over trials)", lambda s: _interval(s.identification_ci)),
            ("identification, same-background distractors", lambda s: _pct(s.same_background)),
            *[
                (f"{head} read as the true picture's", lambda s, h=head: _pct(s.attributes[h]))
                for head in self.model.attributes
            ],
            (f"two-way identification ({PIXEL_SPACE})", lambda s: _pct(s.pixel_identification)),
            ("PixCorr", lambda s: f"{s.pixcorr:.3f}"),
            ("SSIM", lambda s: f"{s.ssim:.3f}"),
            ("n scored of n shown", lambda s: coverage(s.n, s.n_shown)),
        ]
        rows = []
        for label, value in figures:
            row = [label, value(self.model)]
            for name in names:
                row.append(
                    value(self.baselines[name]) if name in self.baselines else "not available"
                )
            rows.append(row)
        return columns, rows

    def to_json(self) -> dict:
        return {
            "feature_space": FEATURE_SPACE,
            "model": self.model.to_json(),
            "baselines": {name: s.to_json() for name, s in self.baselines.items()},
            "not_available": dict(self.not_available),
            "net_accuracy_held_out": dict(self.net_accuracy),
        }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _interval(ci: tuple[float, float] | None) -> str:
    return "n/a" if ci is None else f"{100 * ci[0]:.1f}-{100 * ci[1]:.1f}%"


# -- the scores --------------------------------------------------------------------------------


def trial_wins(corr: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """Per trial ``i``: the fraction of distractors ``j != i`` (where ``allowed[i, j]``) whose
    true picture correlates with reconstruction ``i`` less than its own does; NaN for a trial
    with no distractor. ``corr``: ``(n, n)``, reconstruction ``i`` vs truth ``j``."""
    n = len(corr)
    mask = ~np.eye(n, dtype=bool) if allowed is None else allowed & ~np.eye(n, dtype=bool)
    wins = ((corr < np.diag(corr)[:, None]) & mask).sum(axis=1)
    counts = mask.sum(axis=1)
    return np.where(counts > 0, wins / np.maximum(counts, 1), np.nan)


def trial_identification(
    recons: np.ndarray,
    truths: np.ndarray,
    net: MetricNet | None = None,
    truth_features: np.ndarray | None = None,
) -> np.ndarray:
    """Per trial, two-way identification in :data:`FEATURE_SPACE`: the fraction of the other
    trials' true pictures that correlate with its reconstruction less than its own does,
    ``(n,)`` in ``[0, 1]``; their mean is :func:`score_set`'s ``identification``.
    ``(n, H, W, 3)`` uint8 ``recons`` paired with ``truths``; ``truth_features``: the
    network's features of ``truths``, when the caller has them."""
    if recons.ndim != 4 or len(recons) != len(truths) or len(recons) < 2:
        raise ShapeMismatchError(
            f"reconstructions {recons.shape} and truths {truths.shape}: expected (n >= 2, H, W, "
            "3) pictures, one per true picture"
        )
    net = net or load_metric_net()
    recons = match_size(recons, truths.shape[1:3])
    ft = net.features(truths) if truth_features is None else truth_features
    return trial_wins(correlation_matrix(net.features(recons), ft))


def bootstrap_interval(
    per_trial: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of the mean of ``per_trial`` over trials resampled with
    replacement (``resamples`` times, seeded)."""
    values = np.asarray(per_trial, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def border_colour(images: np.ndarray, width: int = 2) -> np.ndarray:
    """``(n, 3)`` median colour of each picture's outer ``width`` pixels."""
    ring = np.ones(images.shape[1:3], dtype=bool)
    ring[width:-width, width:-width] = False
    return np.median(images[:, ring], axis=1)


def flat_pictures(images: np.ndarray) -> np.ndarray:
    """Each picture replaced by a flat picture of its own border colour."""
    colours = np.round(border_colour(images)).astype(np.uint8)
    return np.broadcast_to(colours[:, None, None, :], images.shape).copy()


def score_set(
    recons: np.ndarray,
    truths: np.ndarray,
    n_shown: int | None = None,
    net: MetricNet | None = None,
    truth_readings: Mapping[str, list[str]] | None = None,
    truth_features: np.ndarray | None = None,
) -> ScoredSet:
    """Every figure for ``(n, H, W, 3)`` uint8 ``recons`` paired with ``truths``.

    ``n_shown``: trials shown (default ``n``; the others had no frame). ``truth_readings``
    and ``truth_features``: the network's reading of ``truths``, when the caller has it.
    """
    if recons.ndim != 4 or len(recons) != len(truths):
        raise ShapeMismatchError(
            f"reconstructions {recons.shape} and truths {truths.shape}: expected (n, H, W, 3) "
            "pictures, one per true picture"
        )
    net = net or load_metric_net()
    recons = match_size(recons, truths.shape[1:3])
    fr = net.features(recons)
    ft = net.features(truths) if truth_features is None else truth_features
    readings = net.attributes(truths) if truth_readings is None else truth_readings
    corr = correlation_matrix(fr, ft)
    per_trial = trial_wins(corr)
    backgrounds = np.array(readings.get("background", ["?"] * len(truths)))
    same = trial_wins(corr, backgrounds[:, None] == backgrounds[None, :])
    has_same = np.isfinite(same)
    read = net.attributes(recons)
    pixels = score(recons, truths)
    return ScoredSet(
        n=len(recons),
        n_shown=len(recons) if n_shown is None else n_shown,
        identification=two_way_identification(fr, ft),
        identification_ci=bootstrap_interval(per_trial),
        same_background=float(np.mean(same[has_same])) if has_same.any() else None,
        same_background_ci=bootstrap_interval(same) if has_same.any() else None,
        n_same_background=int(has_same.sum()),
        attributes={
            head: float(np.mean(np.array(read[head]) == np.array(readings[head])))
            for head in net.head_classes
        },
        pixel_identification=pixels.identification,
        pixcorr=pixels.pixcorr,
        ssim=mean_ssim(recons, truths),
    )


def _mean_sets(sets: list[ScoredSet]) -> ScoredSet:
    """Each figure's mean over ``sets`` (intervals: the mean of each bound)."""

    def mean(values: list) -> float | None:
        kept = [v for v in values if v is not None]
        return float(np.mean(kept)) if kept else None

    def mean_pair(pairs: list) -> tuple[float, float] | None:
        kept = [p for p in pairs if p is not None]
        return (mean([p[0] for p in kept]), mean([p[1] for p in kept])) if kept else None  # type: ignore[return-value]

    first = sets[0]
    return replace(
        first,
        identification=mean([s.identification for s in sets]),
        identification_ci=mean_pair([s.identification_ci for s in sets]),
        same_background=mean([s.same_background for s in sets]),
        same_background_ci=mean_pair([s.same_background_ci for s in sets]),
        n_same_background=round(float(np.mean([s.n_same_background for s in sets]))),
        attributes={h: float(np.mean([s.attributes[h] for s in sets])) for h in first.attributes},
        pixel_identification=float(np.mean([s.pixel_identification for s in sets])),
        pixcorr=float(np.mean([s.pixcorr for s in sets])),
        ssim=float(np.mean([s.ssim for s in sets])),
    )


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation of ``range(n)`` that moves every index (one cycle)."""
    order = rng.permutation(n)
    perm = np.empty(n, dtype=int)
    perm[order] = np.roll(order, -1)
    return perm


def evaluate_semantic(
    recons: np.ndarray,
    truths: np.ndarray,
    n_shown: int | None = None,
    world_baselines: Mapping[str, np.ndarray] | None = None,
    not_available: Mapping[str, str] | None = None,
    net: MetricNet | str | Path | None = None,
) -> SemanticReport:
    """The model's figures and every baseline's, all from :func:`score_set`.

    ``world_baselines``: name (of :data:`WORLD_BASELINES`) -> ``(n, H, W, 3)`` uint8, one
    picture per scored trial; those left out are listed as not available with the reason in
    ``not_available`` (default: none was supplied).
    """
    net = net if isinstance(net, MetricNet) else load_metric_net(net)
    truths = np.asarray(truths)
    recons = match_size(np.asarray(recons), truths.shape[1:3])
    readings = net.attributes(truths)
    features = net.features(truths)

    def scored(pictures: np.ndarray, truth_index: np.ndarray | None = None) -> ScoredSet:
        if truth_index is None:
            return score_set(pictures, truths, n_shown, net, readings, features)
        return score_set(
            pictures,
            truths[truth_index],
            n_shown,
            net,
            {h: [v[i] for i in truth_index] for h, v in readings.items()},
            features[truth_index],
        )

    report = SemanticReport(
        model=scored(recons),
        net_accuracy=dict(net.held_out_accuracy),
        n_classes={head: len(classes) for head, classes in net.head_classes.items()},
    )
    rng = np.random.default_rng(SHUFFLE_SEED)
    report.baselines[SHUFFLED] = _mean_sets(
        [scored(recons, derangement(len(recons), rng)) for _ in range(SHUFFLES)]
    )
    report.baselines[FLAT_OWN] = scored(flat_pictures(recons))
    report.baselines[FLAT_TRUE] = scored(flat_pictures(truths))
    given = dict(world_baselines or {})
    unknown = sorted(set(given) - set(WORLD_BASELINES))
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; expected some of {list(WORLD_BASELINES)}")
    for name in WORLD_BASELINES:
        if name in given:
            pictures = np.asarray(given[name])
            if len(pictures) != len(recons):
                raise ShapeMismatchError(
                    f"baseline {name!r} has {len(pictures)} pictures for {len(recons)} trials"
                )
            report.baselines[name] = scored(match_size(pictures, truths.shape[1:3]))
        else:
            report.not_available[name] = (not_available or {}).get(name, "not supplied")
    return report


def nearest_by_latents(
    decoded: Mapping[str, np.ndarray], bank: Mapping[str, np.ndarray]
) -> np.ndarray:
    """For each of ``n`` decoded trials, the index of the bank entry (``m`` training
    pictures' encoded targets) nearest by correlation: per head (``z``, ``c``), the Pearson
    correlation of the flattened arrays, summed over heads; ``(n,)`` indices into the bank."""
    heads = sorted(set(decoded) & set(bank))
    if not heads:
        raise ShapeMismatchError(
            f"decoded heads {sorted(decoded)} and bank heads {sorted(bank)} share none"
        )
    total = None
    for head in heads:
        d = np.asarray(decoded[head]).reshape(len(decoded[head]), -1)
        b = np.asarray(bank[head]).reshape(len(bank[head]), -1)
        if d.shape[1] != b.shape[1]:
            raise ShapeMismatchError(f"head {head!r}: decoded {d.shape[1:]} vs bank {b.shape[1:]}")
        corr = _standardise(d) @ _standardise(b).T
        total = corr if total is None else total + corr
    return np.argmax(total, axis=1)
