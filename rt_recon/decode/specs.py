"""What a decoder bundle file is fitted for, read without loading the decoder.

The stream a bundle fits (:class:`StreamSpec`), the render model its targets
came from (:class:`ModelSpec`), and the file's metadata and version checks
(:func:`read_bundle_file`). Kept apart from :mod:`rt_recon.decode.bundle` so
that a node needing only shapes (the recorder) imports numpy and safetensors,
not the decoder's torch and scipy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open

from rt_recon.errors import BundleError, ShapeMismatchError
from rt_recon.protocol import VolumeStreamMeta

BUNDLE_VERSION = 2
#: Versions this rt_recon reads (1: before recipes; loads as the default recipe).
READABLE_VERSIONS = (1, 2)
METADATA_KEY = "rt_recon_bundle"


def require_entry(entry: Any, name: str, keys: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(entry, Mapping):
        raise BundleError(f"bundle {name} must be an object, found {entry!r}")
    missing = [k for k in keys if k not in entry]
    if missing:
        raise BundleError(f"bundle {name} lacks {missing} (has {sorted(entry)})")
    return entry


@dataclass(frozen=True)
class StreamSpec:
    """The volume stream a bundle was fitted on.

    Attributes:
        shape: ``(x, y, z)`` voxels; n_channels: values per volume on the wire;
        mask_id: ``"full"`` or the mask the channels are; affine: ``(4, 4)`` RAS+ mm,
        or None when unknown.
    """

    shape: tuple[int, int, int]
    n_channels: int
    mask_id: str = "full"
    affine: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if self.affine is not None:
            affine = np.asarray(self.affine, dtype=np.float64).reshape(4, 4)
            object.__setattr__(self, "affine", affine)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "shape": list(self.shape),
            "n_channels": self.n_channels,
            "mask_id": self.mask_id,
        }
        if self.affine is not None:
            out["affine"] = self.affine.ravel().tolist()
        return out

    @classmethod
    def from_json(cls, entry: Any) -> StreamSpec:
        entry = require_entry(entry, "stream", ("shape", "n_channels", "mask_id"))
        return cls(
            shape=tuple(entry["shape"]),  # type: ignore[arg-type]
            n_channels=int(entry["n_channels"]),
            mask_id=str(entry["mask_id"]),
            affine=entry.get("affine"),
        )

    def check(self, meta: VolumeStreamMeta) -> None:
        """Raise ShapeMismatchError unless ``meta`` is a stream like the one fitted on."""
        if meta.n_channels != self.n_channels:
            raise ShapeMismatchError(
                f"decoder bundle was fitted on {self.n_channels} voxels "
                f"(shape {self.shape}, mask {self.mask_id!r}), but the stream "
                f"sends {meta.n_channels} voxels (shape {meta.shape}, mask {meta.mask_id!r})"
            )
        if tuple(meta.shape) != self.shape or meta.mask_id != self.mask_id:
            raise ShapeMismatchError(
                f"decoder bundle was fitted on volumes of shape {self.shape} with "
                f"mask {self.mask_id!r}, the stream sends shape {meta.shape} with mask "
                f"{meta.mask_id!r}"
            )


@dataclass(frozen=True)
class ModelSpec:
    """The render model a bundle's targets came from (``RenderModel.describe()``).

    Attributes:
        fingerprint: the model's id (:func:`rt_recon.render.model.model_fingerprint`).
        latent_shape: ``z``'s ``(C, h, w)``; cond_shape: ``c``'s ``(L, D)``;
        image_size: the picture's side in pixels.
    """

    fingerprint: str
    latent_shape: tuple[int, ...]
    cond_shape: tuple[int, ...]
    image_size: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "latent_shape", tuple(int(s) for s in self.latent_shape))
        object.__setattr__(self, "cond_shape", tuple(int(s) for s in self.cond_shape))

    def to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "latent_shape": list(self.latent_shape),
            "cond_shape": list(self.cond_shape),
            "image_size": self.image_size,
        }

    @classmethod
    def from_json(cls, entry: Any) -> ModelSpec:
        keys = ("fingerprint", "latent_shape", "cond_shape", "image_size")
        entry = require_entry(entry, "model", keys)
        return cls(
            fingerprint=str(entry["fingerprint"]),
            latent_shape=tuple(entry["latent_shape"]),
            cond_shape=tuple(entry["cond_shape"]),
            image_size=int(entry["image_size"]),
        )

    def check(self, loaded: ModelSpec, where: str = "") -> None:
        """Raise BundleError unless ``loaded`` is the model this bundle was fitted for.

        ``where`` (e.g. the model's path) is named in the message.
        """
        shapes = ""
        if (loaded.latent_shape, loaded.cond_shape) != (self.latent_shape, self.cond_shape):
            shapes = (
                f" (z {self.latent_shape} vs {loaded.latent_shape}, "
                f"c {self.cond_shape} vs {loaded.cond_shape})"
            )
        self.check_fingerprint(loaded.fingerprint, where, shapes)

    def check_fingerprint(self, fingerprint: str, where: str = "", detail: str = "") -> None:
        """Raise BundleError unless ``fingerprint`` is this bundle's render model's."""
        if fingerprint == self.fingerprint:
            return
        place = f" at {where}" if where else ""
        raise BundleError(
            f"decoder bundle was fitted for render model {self.fingerprint}, but the render "
            f"model{place} is {fingerprint}{detail}; refit with `rt-recon fit --model` "
            "that model, or render with the one the bundle was fitted for"
        )


def read_bundle_file(path: str | Path, with_arrays: bool) -> tuple[Path, dict[str, Any], dict]:
    """``(path, metadata, arrays)`` of a bundle file (arrays empty unless asked for)."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"decoder bundle not found: {path} (expected a .safetensors file)")
    try:
        with safe_open(str(path), framework="numpy") as fh:
            raw = (fh.metadata() or {}).get(METADATA_KEY)
            keys = list(fh.keys()) if with_arrays else []
            arrays = {key: fh.get_tensor(key) for key in keys}
    except (SafetensorError, OSError, ValueError) as exc:
        raise BundleError(f"{path}: not a safetensors decoder bundle: {exc}") from None
    if raw is None:
        raise BundleError(f"{path}: safetensors file has no {METADATA_KEY!r} metadata")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: bundle metadata is not JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("version") not in READABLE_VERSIONS:
        found = meta.get("version") if isinstance(meta, dict) else meta
        raise BundleError(
            f"{path}: bundle version {found!r}, this rt_recon reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}; refit with `rt-recon fit`"
        )
    return path, meta, arrays


def read_specs(path: str | Path) -> tuple[StreamSpec, ModelSpec]:
    """The stream and render model a bundle file fits, from its metadata alone (no arrays
    read: cheap for a node that needs only the shapes, such as the recorder)."""
    path, meta, _ = read_bundle_file(path, with_arrays=False)
    try:
        return StreamSpec.from_json(meta.get("stream")), ModelSpec.from_json(meta.get("model"))
    except BundleError as exc:
        raise BundleError(f"{path}: {exc}") from None
