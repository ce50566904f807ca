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

The JSON holds the bundle version, the stream the decoder was fitted on
(shape, channel count, mask id, affine), the preprocessing spec (motion
correction with the reference's affine, despiking, detrending, running
z-score warm-up, HRF window weights and lag), the render model it targets
(fingerprint, latent and conditioning shapes) and a fit report.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open

from rt_recon._safetensors import save_arrays
from rt_recon.errors import BundleError, ShapeMismatchError
from rt_recon.protocol import VolumeStreamMeta

BUNDLE_VERSION = 1
_METADATA_KEY = "rt_recon_bundle"
_HEAD_ARRAYS = ("voxels", "weights", "intercept", "alphas")


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

    @property
    def rank(self) -> int | None:
        """``k`` for a low-rank head, None for full rank."""
        return None if self.components is None else int(self.components.shape[0])


@dataclass
class DecoderBundle:
    heads: dict[str, DecoderHead]
    stream: dict[str, Any]  # shape, n_channels, mask_id, affine
    preprocess: dict[str, Any]  # zscore_warmup_trs, hrf_weights, lag_trs, tr
    model: dict[str, Any]  # fingerprint, latent_shape, cond_shape, image_size
    report: dict[str, Any] = field(default_factory=dict)
    version: int = BUNDLE_VERSION
    reference: np.ndarray | None = None  # (x, y, z) motion-correction reference volume

    # ----------------------------------------------------------------- checks

    def check_stream(self, meta: VolumeStreamMeta) -> None:
        """Raise ShapeMismatchError unless the stream is the one the bundle was fitted on."""
        fitted = self.stream
        if meta.n_channels != fitted["n_channels"]:
            raise ShapeMismatchError(
                f"decoder bundle was fitted on {fitted['n_channels']} voxels "
                f"(shape {tuple(fitted['shape'])}, mask {fitted['mask_id']!r}), but the stream "
                f"sends {meta.n_channels} voxels (shape {meta.shape}, mask {meta.mask_id!r})"
            )
        if tuple(meta.shape) != tuple(fitted["shape"]) or meta.mask_id != fitted["mask_id"]:
            raise ShapeMismatchError(
                f"decoder bundle was fitted on volumes of shape {tuple(fitted['shape'])} with "
                f"mask {fitted['mask_id']!r}, the stream sends shape {meta.shape} with mask "
                f"{meta.mask_id!r}"
            )

    def check_model(self, model: dict[str, Any]) -> None:
        """Raise ShapeMismatchError unless the render model takes this bundle's z and c."""
        for key in ("latent_shape", "cond_shape"):
            if list(model[key]) != list(self.model[key]):
                raise ShapeMismatchError(
                    f"decoder bundle predicts {key} {tuple(self.model[key])} for model "
                    f"{self.model['fingerprint']}, the loaded model "
                    f"{model['fingerprint']} needs {tuple(model[key])}"
                )

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
            "version": self.version,
            "heads": heads_meta,
            "stream": self.stream,
            "preprocess": self.preprocess,
            "model": self.model,
            "report": self.report,
        }
        tmp = path.with_name(path.name + ".partial")
        save_arrays(tensors, tmp, metadata={_METADATA_KEY: json.dumps(meta)})
        tmp.replace(path)  # atomic: a reader never sees half a bundle
        return path

    @classmethod
    def load(cls, path: str | Path) -> DecoderBundle:
        path = Path(path)
        if not path.is_file():
            raise BundleError(f"decoder bundle not found: {path} (expected a .safetensors file)")
        try:
            with safe_open(str(path), framework="numpy") as fh:
                raw = (fh.metadata() or {}).get(_METADATA_KEY)
                arrays = {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118
        except (SafetensorError, OSError, ValueError) as exc:
            raise BundleError(f"{path}: not a safetensors decoder bundle: {exc}") from None
        if raw is None:
            raise BundleError(f"{path}: safetensors file has no {_METADATA_KEY!r} metadata")
        meta = json.loads(raw)
        if meta.get("version") != BUNDLE_VERSION:
            raise BundleError(
                f"{path}: bundle version {meta.get('version')!r}, this rt_recon reads "
                f"version {BUNDLE_VERSION}; refit with `rt-recon fit`"
            )
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
        return cls(
            heads=heads,
            stream=meta["stream"],
            preprocess=meta["preprocess"],
            model=meta["model"],
            report=meta.get("report", {}),
            version=meta["version"],
            reference=arrays.get("preprocess.reference"),
        )
