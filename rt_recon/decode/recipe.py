"""What a decoder fit does beyond ridge: the recipe, stored in the bundle.

Five independent choices, the first four linear per TR so that the online
decoder applies exactly what the fit computed (:mod:`rt_recon.decode.online`):

* ``hrf``: ``"canonical"`` (every voxel the canonical HRF) or ``"library"``
  (each voxel the HRF of a library that fits its training runs best,
  :mod:`rt_recon.decode.hrf_library`);
* ``denoise_pcs``: 0, or that many principal components of a pool of voxels
  outside the ROIs removed from every decoded voxel per TR
  (:mod:`rt_recon.decode.denoise`);
* ``trial_estimate``: ``"window"`` (a matched filter over the window: today's
  estimate) or ``"lss"`` (least squares on the window's TRs, the trial's own
  response against one regressor for all other trials, as
  least-squares-separate does over a run; :mod:`rt_recon.decode.trial_estimate`);
* ``select_voxels``: None (every ROI voxel), a fraction of each head's ROI
  voxels to keep, or ``"auto"`` (the fraction chosen by the training
  cross-validation), ranked by cross-validated encoding R^2
  (:mod:`rt_recon.decode.select`);
* ``snap_c``: the decoded ``c`` as it is (False), or replaced by the nearest
  caption of a bank of the render model's captions (True; a nonlinear last
  step, :mod:`rt_recon.decode.caption_bank`).

The default recipe is the decoder rt_recon shipped before recipes existed
(``canonical``, no denoising, ``window``, every voxel, no snapping), the one a version-1
bundle holds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from rt_recon.errors import BundleError, DataError

HrfChoice = Literal["canonical", "library"]
TrialEstimate = Literal["window", "lss"]

#: Fractions of ROI voxels ``select_voxels="auto"`` tries.
AUTO_FRACTIONS: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class DecoderRecipe:
    """How features are estimated and which voxels are kept (see the module docstring).

    Attributes:
        hrf: ``"canonical"`` or ``"library"``.
        denoise_pcs: noise components removed per TR (0: none).
        trial_estimate: ``"window"`` or ``"lss"``.
        select_voxels: None, a fraction in (0, 1], or ``"auto"``.
        lss_window_trs: TRs of the least-squares window (``"lss"`` only); the
            matched filter keeps the fit's ``hrf_window_trs``.
        pool_size: most voxels in the noise pool (``denoise_pcs > 0`` only).
        snap_c: replace the decoded ``c`` by the nearest caption of the bundle's bank.
    """

    hrf: HrfChoice = "canonical"
    denoise_pcs: int = 0
    trial_estimate: TrialEstimate = "window"
    select_voxels: float | Literal["auto"] | None = None
    lss_window_trs: int = 8
    pool_size: int = 2000
    snap_c: bool = False

    def __post_init__(self) -> None:
        if self.hrf not in ("canonical", "library"):
            raise DataError(f"recipe hrf must be 'canonical' or 'library', found {self.hrf!r}")
        if self.trial_estimate not in ("window", "lss"):
            raise DataError(
                f"recipe trial_estimate must be 'window' or 'lss', found {self.trial_estimate!r}"
            )
        if not isinstance(self.denoise_pcs, int) or self.denoise_pcs < 0:
            raise DataError(f"recipe denoise_pcs must be an integer >= 0, found {self.denoise_pcs}")
        sel = self.select_voxels
        number = isinstance(sel, int | float) and not isinstance(sel, bool)
        if sel is not None and sel != "auto" and not (number and 0 < sel <= 1):  # type: ignore[operator]
            raise DataError(
                f"recipe select_voxels must be None, 'auto' or a fraction in (0, 1], found {sel!r}"
            )
        if number:
            object.__setattr__(self, "select_voxels", float(sel))  # type: ignore[arg-type]
        if self.lss_window_trs < 3:
            raise DataError(f"recipe lss_window_trs must be >= 3, found {self.lss_window_trs}")
        if not isinstance(self.snap_c, bool):
            raise DataError(f"recipe snap_c must be true or false, found {self.snap_c!r}")
        if self.pool_size < 1:
            raise DataError(f"recipe pool_size must be >= 1, found {self.pool_size}")

    @property
    def name(self) -> str:
        """A short label, e.g. ``library+pcs5+lss+select(auto)``; ``today`` for the default."""
        parts = []
        if self.hrf == "library":
            parts.append("library")
        if self.denoise_pcs:
            parts.append(f"pcs{self.denoise_pcs}")
        if self.trial_estimate == "lss":
            parts.append("lss")
        if self.select_voxels is not None:
            parts.append(f"select({self.select_voxels})")
        if self.snap_c:
            parts.append("snap")
        return "+".join(parts) or "today"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, entry: Any) -> DecoderRecipe:
        if not isinstance(entry, dict):
            raise BundleError(f"bundle recipe must be an object, found {entry!r}")
        unknown = sorted(set(entry) - set(cls.__dataclass_fields__))
        if unknown:
            raise BundleError(f"bundle recipe has unknown keys {unknown}")
        try:
            return cls(**entry)
        except (DataError, TypeError) as exc:
            raise BundleError(f"bundle recipe: {exc}") from None
