"""The preprocessing spec: which per-TR stages run, with which settings (one home for them).

A decoder bundle carries the spec its decoders were fitted with
(:mod:`rt_recon.decode.bundle`); fitting and the online decoder build their
chain from it (:meth:`PreprocessSpec.build`), so features are computed the
same way in both. The spec is made from the config's ``fit`` section
(:meth:`PreprocessSpec.from_fit`), written as JSON into the bundle and read
back without loss (:meth:`to_json` / :meth:`from_json`). Every default lives
here or in the stage it configures (SPM's realignment settings in
:mod:`rt_recon.preprocess.motion`, the despike threshold in
:mod:`rt_recon.preprocess.despike`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from rt_recon.config import FitSection
from rt_recon.errors import BundleError
from rt_recon.preprocess.chain import PreprocessChain
from rt_recon.preprocess.despike import DEFAULT_THRESHOLD, SpikeDetector
from rt_recon.preprocess.detrend import OnlineDetrend
from rt_recon.preprocess.fd import FramewiseDisplacement
from rt_recon.preprocess.highpass import RecursiveHighPass
from rt_recon.preprocess.mask import VoxelSelection
from rt_recon.preprocess.motion import SPM_FWHM_MM, SPM_QUALITY, SPM_SEP_MM, MotionCorrection
from rt_recon.preprocess.zscore import RunningZScore


def _keys(entry: Any, name: str, allowed: set[str], required: set[str]) -> Mapping[str, Any]:
    """``entry`` as a mapping with no unknown and no missing keys, or a BundleError."""
    if not isinstance(entry, Mapping):
        raise BundleError(f"preprocess.{name} must be an object, found {entry!r}")
    unknown, missing = set(entry) - allowed, required - set(entry)
    if unknown or missing:
        raise BundleError(
            f"preprocess.{name}: expected keys {sorted(allowed)} ({sorted(required)} required), "
            f"found unknown {sorted(unknown)}, missing {sorted(missing)}"
        )
    return entry


@dataclass(frozen=True)
class MotionSpec:
    """Rigid realignment to the bundle's reference volume (SPM-style).

    Attributes:
        reference_affine: the reference's ``(4, 4)`` voxel-to-RAS+ affine, mm.
        fwhm: smoothing before estimation, mm; ``sep``: sampling distance, mm;
        quality: fraction of the most informative sample points kept.
    """

    reference_affine: np.ndarray
    fwhm: float = SPM_FWHM_MM
    sep: float = SPM_SEP_MM
    quality: float = SPM_QUALITY

    def __post_init__(self) -> None:
        affine = np.asarray(self.reference_affine, dtype=np.float64).reshape(4, 4)
        object.__setattr__(self, "reference_affine", affine)

    def to_json(self) -> dict[str, Any]:
        return {
            "reference_affine": self.reference_affine.ravel().tolist(),
            "fwhm": self.fwhm,
            "sep": self.sep,
            "quality": self.quality,
        }

    @classmethod
    def from_json(cls, entry: Any) -> MotionSpec:
        entry = _keys(entry, "motion", {"reference_affine", "fwhm", "sep", "quality"},
                      {"reference_affine"})  # fmt: skip
        return cls(**{k: v for k, v in entry.items()})


@dataclass(frozen=True)
class DespikeSpec:
    """Clip voxel values more than ``threshold`` robust z away from their running level."""

    threshold: float = DEFAULT_THRESHOLD

    def to_json(self) -> dict[str, Any]:
        return {"threshold": self.threshold}

    @classmethod
    def from_json(cls, entry: Any) -> DespikeSpec:
        return cls(**_keys(entry, "despike", {"threshold"}, set()))


@dataclass(frozen=True)
class HighpassSpec:
    """A recursive high-pass filter with a cutoff period of ``cutoff_trs`` TRs."""

    cutoff_trs: float

    def to_json(self) -> dict[str, Any]:
        return {"method": "highpass", "cutoff_trs": self.cutoff_trs}


@dataclass(frozen=True)
class GlmSpec:
    """A polynomial drift model of ``degree``, refitted every TR; with ``motion``, the six
    motion parameters as confounds."""

    degree: int = 2
    motion: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"method": "glm", "degree": self.degree, "motion": self.motion}


def _detrend_from_json(entry: Any) -> HighpassSpec | GlmSpec:
    if not isinstance(entry, Mapping) or entry.get("method") not in ("highpass", "glm"):
        raise BundleError(
            f"preprocess.detrend must name method 'highpass' or 'glm', found {entry!r}"
        )
    if entry["method"] == "highpass":
        entry = _keys(entry, "detrend", {"method", "cutoff_trs"}, {"method", "cutoff_trs"})
        return HighpassSpec(float(entry["cutoff_trs"]))
    entry = _keys(entry, "detrend", {"method", "degree", "motion"}, {"method"})
    return GlmSpec(**{k: v for k, v in entry.items() if k != "method"})


@dataclass(frozen=True)
class PreprocessSpec:
    """Which stages run, in the chain's fixed order: motion -> select -> despike -> detrend
    -> z-score (:class:`~rt_recon.preprocess.chain.PreprocessChain`).

    Attributes:
        zscore_warmup_trs: TRs of running z-score before estimates are trusted.
        motion, despike, detrend: each stage's settings, None where it does not run.
    """

    zscore_warmup_trs: int = 4
    motion: MotionSpec | None = None
    despike: DespikeSpec | None = None
    detrend: HighpassSpec | GlmSpec | None = None

    @classmethod
    def from_fit(
        cls, fit: FitSection, reference_affine: np.ndarray | None, tr_s: float
    ) -> PreprocessSpec:
        """The spec a fit with ``fit`` applies.

        ``reference_affine``: of the motion-correction reference (None: no
        realignment); ``tr_s``: seconds per TR, to express the high-pass cutoff in TRs.
        """
        detrend: HighpassSpec | GlmSpec | None = None
        if fit.detrend == "highpass":
            detrend = HighpassSpec(cutoff_trs=fit.highpass_cutoff_s / tr_s)
        elif fit.detrend == "glm":
            detrend = GlmSpec(degree=fit.glm_degree, motion=fit.glm_motion)
        realign = fit.motion_correction and reference_affine is not None
        return cls(
            zscore_warmup_trs=fit.zscore_warmup_trs,
            motion=MotionSpec(reference_affine) if realign else None,
            despike=DespikeSpec() if fit.despike else None,
            detrend=detrend,
        )

    def to_json(self) -> dict[str, Any]:
        """The bundle's ``preprocess`` entry (stages that do not run are left out)."""
        out: dict[str, Any] = {"zscore_warmup_trs": self.zscore_warmup_trs}
        for name in ("motion", "despike", "detrend"):
            stage = getattr(self, name)
            if stage is not None:
                out[name] = stage.to_json()
        return out

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> PreprocessSpec:
        """Read :meth:`to_json` back; BundleError naming an unknown or missing key."""
        entry = _keys(entry, "(spec)", {"zscore_warmup_trs", "motion", "despike", "detrend"},
                      {"zscore_warmup_trs"})  # fmt: skip
        return cls(
            zscore_warmup_trs=int(entry["zscore_warmup_trs"]),
            motion=MotionSpec.from_json(entry["motion"]) if entry.get("motion") else None,
            despike=DespikeSpec.from_json(entry["despike"]) if entry.get("despike") else None,
            detrend=_detrend_from_json(entry["detrend"]) if entry.get("detrend") else None,
        )

    def build(
        self,
        voxels: np.ndarray,
        shape: tuple[int, int, int],
        affine: np.ndarray,
        reference: np.ndarray | None = None,
    ) -> PreprocessChain:
        """The chain this spec describes, for volumes of ``shape`` and RAS+ ``affine``.

        Args:
            voxels: ``(n_selected,)`` sorted channel indices to keep (of the reference grid
                when realigning, else of the volumes).
            reference: the ``(x, y, z)`` motion-correction reference (the bundle's);
                required when :attr:`motion` is set.
        """
        n = len(voxels)
        motion = None
        grid = tuple(int(s) for s in shape)
        if self.motion is not None:
            if reference is None:
                raise BundleError("the preprocessing realigns volumes but has no reference volume")
            motion = MotionCorrection(
                reference,
                self.motion.reference_affine,
                volume_affine=np.asarray(affine, dtype=np.float64).reshape(4, 4),
                volume_shape=grid,
                fwhm=self.motion.fwhm,
                sep=self.motion.sep,
                quality=self.motion.quality,
            )
            grid = motion.reference_shape
        detrend = None
        if isinstance(self.detrend, HighpassSpec):
            detrend = RecursiveHighPass(n, cutoff_trs=self.detrend.cutoff_trs)
        elif isinstance(self.detrend, GlmSpec):
            confounds = 6 if (self.detrend.motion and motion is not None) else 0
            detrend = OnlineDetrend(n, degree=self.detrend.degree, n_confounds=confounds)
        return PreprocessChain(
            motion=motion,
            select=VoxelSelection(np.asarray(voxels, dtype=np.int64), grid),
            despike=SpikeDetector(n, threshold=self.despike.threshold) if self.despike else None,
            detrend=detrend,
            zscore=RunningZScore(n, warmup=self.zscore_warmup_trs),
            fd=FramewiseDisplacement() if motion is not None else None,
        )
