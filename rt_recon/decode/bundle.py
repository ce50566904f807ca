"""The decoder bundle: one ``.safetensors`` file per subject and render model.

Arrays are safetensors tensors named ``<head>.<field>``; everything else is
JSON in the safetensors metadata under the key ``rt_recon_bundle`` (never
pickle). Per head (``z``, ``c``):

* ``<head>.voxels`` ``(n_selected,)`` int64: the stream channels it reads;
* ``<head>.weights`` ``(n_selected, n_targets)`` float32;
* ``<head>.intercept`` ``(n_targets,)`` float32;
* ``<head>.alphas`` ``(n_targets,)`` float32: the chosen ridge penalties;
* ``<head>.components`` ``(k, n_targets)`` float32, for a low-rank head only
  (then ``weights`` is ``(n_selected, k)``: it predicts the targets' first
  ``k`` principal-component scores).

``preprocess.reference`` ``(x, y, z)`` float32 is the motion-correction
reference volume, when the preprocessing realigns volumes.

Version 2 adds the decoder's recipe (:class:`~rt_recon.decode.recipe.DecoderRecipe`,
JSON under ``recipe``) and what it fitted:

* ``temporal.window_weights`` ``(K, n_window)`` float32, ``temporal.responses``
  ``(K, n_response)`` float64 and, for ``K > 1`` HRF groups,
  ``temporal.voxel_group`` ``(n_decoded,)`` int64 (the group of each voxel any
  head reads, ascending channel order); JSON under ``temporal``: mode, lag,
  window length, the period assumed between trials, the groups' HRF peaks
  (:class:`~rt_recon.decode.trial_estimate.TemporalModel`);
* for a recipe that denoises, ``denoise.pool`` ``(n_pool,)`` int64,
  ``denoise.components`` ``(n_pool, k)`` and ``denoise.weights``
  ``(k, n_decoded)`` float32 (:class:`~rt_recon.decode.denoise.NoiseModel`).

Optional, in any version: the per-TR confidence's null
(:class:`~rt_recon.decode.confidence.ConfidenceModel`: ``confidence.null``,
``confidence.<head>.scale``, JSON under ``confidence``); a bundle without it loads
with ``confidence`` None and its decoder reports confidence None.

Optional, for a recipe that snaps ``c`` (``recipe.snap_c``): the caption bank
(:class:`~rt_recon.decode.caption_bank.CaptionBank`: ``caption_bank.embeddings``
float16, ``.mean``, ``.components``, ``.scores``, JSON under ``caption_bank``).

A version-1 bundle loads as the default recipe (canonical HRF, no denoising,
the matched-filter window of its ``hrf_weights``, every voxel) and decodes as
it did.

The JSON holds the bundle version, the stream the decoder was fitted on
(:class:`StreamSpec`: shape, channel count, mask id, affine), the
preprocessing spec (:class:`~rt_recon.preprocess.PreprocessSpec`: motion
correction with the reference's affine, despiking, detrending, running
z-score warm-up) together with the decoder's temporal window
(:class:`WindowSpec`: HRF weights, lag, TR) under ``preprocess``, the render
model it targets (:class:`ModelSpec`: fingerprint, latent and conditioning
shapes, picture size) and a fit report. Each spec is typed, written and read
back here without loss; loading a bundle against a stream or a render model
it does not fit is an error naming both sides.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from rt_recon._safetensors import save_arrays
from rt_recon.decode import caption_bank as bank_store
from rt_recon.decode import confidence as confidence_store
from rt_recon.decode.caption_bank import CaptionBank
from rt_recon.decode.confidence import ConfidenceModel
from rt_recon.decode.denoise import NoiseModel
from rt_recon.decode.recipe import DecoderRecipe
from rt_recon.decode.specs import (
    BUNDLE_VERSION,
    METADATA_KEY,
    READABLE_VERSIONS,
    ModelSpec,
    StreamSpec,
    read_bundle_file,
    read_specs,
    require_entry,
)
from rt_recon.decode.trial_estimate import TemporalModel
from rt_recon.errors import BundleError
from rt_recon.preprocess import PreprocessSpec
from rt_recon.protocol import VolumeStreamMeta

__all__ = [
    "BUNDLE_VERSION",
    "READABLE_VERSIONS",
    "DecoderBundle",
    "DecoderHead",
    "ModelSpec",
    "StreamSpec",
    "WindowSpec",
]

_HEAD_ARRAYS = ("voxels", "weights", "intercept", "alphas")


@dataclass(frozen=True)
class WindowSpec:
    """The decoder's temporal model: estimates are HRF-weighted sums over the window.

    Attributes:
        hrf_weights: weight ``m`` applies to the volume ``m`` TRs before the estimate's TR;
        lag_trs: TRs from a trial's onset to its complete estimate;
        tr_s: the repetition time fitted on, seconds (``tr`` in the JSON).
    """

    hrf_weights: tuple[float, ...]
    lag_trs: int
    tr_s: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "hrf_weights", tuple(float(w) for w in self.hrf_weights))

    def to_json(self) -> dict[str, Any]:
        return {"hrf_weights": list(self.hrf_weights), "lag_trs": self.lag_trs, "tr": self.tr_s}

    @classmethod
    def from_json(cls, entry: Any) -> WindowSpec:
        entry = require_entry(entry, "preprocess", ("hrf_weights", "lag_trs", "tr"))
        return cls(tuple(entry["hrf_weights"]), int(entry["lag_trs"]), float(entry["tr"]))


@dataclass
class DecoderHead:
    """One linear map from selected, preprocessed voxels to a flattened target.

    Full rank: ``target = x @ weights + intercept``. Low rank (target PCA):
    ``target = (x @ weights) @ components + intercept``, where ``weights``
    predicts ``k`` principal-component scores of the targets and
    ``components`` (``(k, n_targets)``) maps them back.
    """

    name: str
    voxels: np.ndarray  # (n_selected,) int64 channel indices
    weights: np.ndarray  # (n_selected, n_targets) float32, or (n_selected, k) when low rank
    intercept: np.ndarray  # (n_targets,) float32
    alphas: np.ndarray  # (n_targets,) or (k,) float32: ridge penalty per output of weights
    target_shape: tuple[int, ...]
    components: np.ndarray | None = None  # (k, n_targets) float32 for a low-rank head

    def __post_init__(self) -> None:
        n_sel, n_out = self.weights.shape
        n_targets = math.prod(self.target_shape)
        if self.voxels.shape != (n_sel,):
            raise BundleError(
                f"head {self.name!r}: {self.voxels.shape[0]} voxels but weights have {n_sel} rows"
            )
        if self.components is not None and self.components.shape != (n_out, n_targets):
            raise BundleError(
                f"head {self.name!r}: components must be ({n_out}, {n_targets}) for {n_out} "
                f"scores and target shape {self.target_shape}, found {self.components.shape}"
            )
        if self.components is None and n_out != n_targets:
            raise BundleError(
                f"head {self.name!r}: target shape {self.target_shape} needs "
                f"{n_targets} outputs, weights have {n_out}"
            )
        if self.intercept.shape != (n_targets,):
            raise BundleError(f"head {self.name!r}: intercept shape {self.intercept.shape}")

    def predict(self, x: np.ndarray) -> np.ndarray:
        """``(..., n_selected)`` estimates of the head's voxels -> ``(..., n_targets)`` flat
        targets (the projection the online decoder applies every TR)."""
        latent = x @ self.weights
        if self.components is not None:
            latent = latent @ self.components
        return latent + self.intercept

    @property
    def rank(self) -> int | None:
        """``k`` for a low-rank head, None for full rank."""
        return None if self.components is None else int(self.components.shape[0])


@dataclass
class DecoderBundle:
    """Heads, and the typed specs of the stream, preprocessing, window and model they fit."""

    heads: dict[str, DecoderHead]
    stream: StreamSpec
    preprocess: PreprocessSpec
    window: WindowSpec
    model: ModelSpec
    report: dict[str, Any] = field(default_factory=dict)
    version: int = BUNDLE_VERSION
    reference: np.ndarray | None = None  # (x, y, z) motion-correction reference volume
    recipe: DecoderRecipe = field(default_factory=DecoderRecipe)
    temporal: TemporalModel | None = None  # None: the canonical matched filter of ``window``
    noise: NoiseModel | None = None  # the noise model of a recipe that denoises
    confidence: ConfidenceModel | None = None  # the per-TR confidence's null (optional)
    caption_bank: CaptionBank | None = None  # what ``c`` snaps to (``recipe.snap_c``)

    def __post_init__(self) -> None:
        if self.recipe.snap_c and self.caption_bank is None:
            raise BundleError("the recipe snaps c to a caption bank but the bundle has none")

    @property
    def temporal_model(self) -> TemporalModel:
        """The trial estimator's weights: ``temporal``, or the single canonical window a
        version-1 bundle (or one built by hand) describes with ``window.hrf_weights``."""
        if self.temporal is not None:
            return self.temporal
        weights = np.asarray(self.window.hrf_weights, dtype=np.float64)
        lag = self.window.lag_trs
        response = np.zeros(max(lag + 1, len(weights)))
        for m, w in enumerate(weights):
            if lag - m >= 0:
                response[lag - m] = w
        return TemporalModel("window", lag, len(weights), weights[None, :], response[None, :])

    def with_caption_bank(self, bank: CaptionBank) -> DecoderBundle:
        """This bundle with its decoded ``c`` snapped to ``bank`` (the heads unchanged)."""
        head = self.heads.get("c")
        if head is None:
            raise BundleError(f"snapping c needs a 'c' head; the bundle has {sorted(self.heads)}")
        size = int(np.prod(head.target_shape))
        if bank.mean.size != size:
            raise BundleError(
                f"the caption bank's entries have {bank.mean.size} values, the c head predicts "
                f"{size} ({tuple(head.target_shape)}): encode the bank with this render model"
            )
        report = {**self.report, bank_store.KEY: bank.to_json()}
        recipe = replace(self.recipe, snap_c=True)
        return replace(self, recipe=recipe, caption_bank=bank, report=report)

    # ----------------------------------------------------------------- checks

    def check_stream(self, meta: VolumeStreamMeta) -> None:
        """Raise ShapeMismatchError unless the stream is the one the bundle was fitted on."""
        self.stream.check(meta)

    def check_model(self, loaded: ModelSpec, where: str = "") -> None:
        """Raise BundleError unless ``loaded`` is the render model the bundle was fitted for."""
        self.model.check(loaded, where)

    # --------------------------------------------------------------------- I/O

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {}
        heads_meta = {}
        for name, head in self.heads.items():
            tensors[f"{name}.voxels"] = head.voxels.astype(np.int64)
            tensors[f"{name}.weights"] = head.weights.astype(np.float32)
            tensors[f"{name}.intercept"] = head.intercept.astype(np.float32)
            tensors[f"{name}.alphas"] = head.alphas.astype(np.float32)
            if head.components is not None:
                tensors[f"{name}.components"] = head.components.astype(np.float32)
            heads_meta[name] = {"target_shape": list(head.target_shape), "rank": head.rank}
        if self.reference is not None:
            tensors["preprocess.reference"] = self.reference.astype(np.float32)
        meta = {
            "version": BUNDLE_VERSION,
            "heads": heads_meta,
            "stream": self.stream.to_json(),
            "preprocess": {**self.preprocess.to_json(), **self.window.to_json()},
            "model": self.model.to_json(),
            "recipe": self.recipe.to_json(),
            "report": self.report,
        }
        if self.temporal is not None:
            meta["temporal"] = self.temporal.to_json()
            tensors.update(self.temporal.arrays())
        if self.noise is not None:
            tensors.update(self.noise.arrays())
        if self.confidence is not None:
            meta[confidence_store.KEY] = self.confidence.to_json()
            tensors.update(self.confidence.arrays())
        if self.caption_bank is not None:
            meta[bank_store.KEY] = self.caption_bank.to_json()
            tensors.update(self.caption_bank.arrays())
        tmp = path.with_name(path.name + ".partial")
        save_arrays(tensors, tmp, metadata={METADATA_KEY: json.dumps(meta)})
        tmp.replace(path)  # atomic: a reader never sees half a bundle
        return path

    @classmethod
    def read_specs(cls, path: str | Path) -> tuple[StreamSpec, ModelSpec]:
        """The stream and render model a bundle file fits (:func:`~rt_recon.decode.specs.
        read_specs`: metadata alone, no arrays, no heavy imports)."""
        return read_specs(path)

    @classmethod
    def load(cls, path: str | Path) -> DecoderBundle:
        path, meta, arrays = read_bundle_file(path, with_arrays=True)
        heads = {}
        for name, head_meta in meta["heads"].items():
            missing = [f"{name}.{a}" for a in _HEAD_ARRAYS if f"{name}.{a}" not in arrays]
            if missing:
                raise BundleError(f"{path}: head {name!r} lacks arrays {missing}")
            if head_meta.get("rank") is not None and f"{name}.components" not in arrays:
                raise BundleError(f"{path}: low-rank head {name!r} lacks {name}.components")
            heads[name] = DecoderHead(
                name=name,
                target_shape=tuple(head_meta["target_shape"]),
                components=arrays.get(f"{name}.components"),
                **{a: arrays[f"{name}.{a}"] for a in _HEAD_ARRAYS},
            )
        try:
            window = WindowSpec.from_json(meta["preprocess"])
            spec = {k: v for k, v in meta["preprocess"].items() if k not in window.to_json()}
            stream, model = StreamSpec.from_json(meta["stream"]), ModelSpec.from_json(meta["model"])
            preprocess = PreprocessSpec.from_json(spec)
            recipe = (
                DecoderRecipe.from_json(meta["recipe"]) if "recipe" in meta else DecoderRecipe()
            )
            temporal = (
                TemporalModel.from_stored(meta["temporal"], arrays) if "temporal" in meta else None
            )
            noise = NoiseModel.from_arrays(arrays)
            confidence = (
                ConfidenceModel.from_stored(
                    meta[confidence_store.KEY],
                    arrays,
                    {name: head.intercept for name, head in heads.items()},
                )
                if confidence_store.KEY in meta
                else None
            )
            bank = (
                CaptionBank.from_stored(meta[bank_store.KEY], arrays)
                if bank_store.KEY in meta
                else None
            )
            if recipe.snap_c and bank is None:
                raise BundleError("the recipe snaps c to a caption bank but the file has none")
        except BundleError as exc:
            raise BundleError(f"{path}: {exc}") from None
        return cls(
            heads=heads,
            stream=stream,
            preprocess=preprocess,
            window=window,
            model=model,
            report=meta.get("report", {}),
            version=meta["version"],
            reference=arrays.get("preprocess.reference"),
            recipe=recipe,
            temporal=temporal,
            noise=noise,
            confidence=confidence,
            caption_bank=bank,
        )
