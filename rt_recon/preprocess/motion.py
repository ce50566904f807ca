"""Rigid-body motion correction of each volume to a fixed reference, one TR at a time.

The method is SPM's least-squares realignment (Friston et al., 1995, "Spatial
registration and normalization of images", Hum. Brain Mapp. 3:165-189;
Friston et al., 1996, "Movement-related effects in fMRI time-series", Magn.
Reson. Med. 35:346-355; Ashburner & Friston, "Rigid body registration", in
Human Brain Function, 2nd ed., 2003) as OpenNFT runs it online against a
template: a Gauss-Newton fit of six rigid-body parameters, written here from
those descriptions:

* Once, on the reference: smooth it with a Gaussian of ``fwhm`` mm; sample it
  on a grid every ``sep`` mm, each point jittered by up to one voxel along each
  axis (SPM jitters by up to half a voxel; see "Sample points" below); take the
  intensities ``b`` and the derivative ``G`` of the reference with respect to
  each parameter at those points (chain rule: world gradient times the
  displacement of the point per unit parameter). Points that tell little about
  the parameters are dropped in rounds of 10 %, those of least leverage in
  ``[G b]`` first, until ``det([G b]^T [G b])`` has fallen to ``quality`` times
  its value with all points (Ashburner's "quality" setting).
* Each TR: smooth the volume the same way; iterate ``e = b - s F(Q)``, where
  ``F(Q)`` is the smoothed volume sampled at the sample points carried by the
  current transform ``Q`` and ``s = sum(b) / sum(F)`` a global intensity
  scale; solve ``G delta = -e`` in the least-squares sense and compose
  ``Q <- rigid(delta) @ Q`` until the update is below ``tolerance_mm``.
  ``G`` stays the reference's, so each iteration costs one interpolation at
  the sample points and a 6 x 6 solve. The fit starts from the previous
  TR's transform (warm start).
* Reslice the volume into the reference grid with the final transform.

The first volume of a run (:meth:`MotionCorrection.align`): the fit from the
identity, with no earlier TR to start from, reported as an :class:`Alignment`
(the transform, whether it converged, its relative residual); the run's per-TR
fits then start from it. Another session's head may sit several mm and
degrees from the reference; measured, this fit reaches it from the identity
far beyond that (docs/preprocessing.md, "The first volume of a run": to
within 0.05 mm and 0.05 degrees up to 45 mm and 45 degrees on the real Trio
template), because the reference's derivatives are fixed and the volume is
smoothed with 5 mm. A coarse-to-fine start (heavier smoothing and sparser
points first, and a start at the intensity centroids) was tried and found
the same transforms everywhere the plain fit did, at ~10x the cost, so it
was left out.

Conventions. Every coordinate is world RAS+ mm given by the affines, so the
reference and the volumes may have different voxel orders or grids. ``Q``
(:attr:`MotionCorrection.matrix`) maps a point of the volume's world to the
reference world where the same tissue lies; the parameters are
``rigid_params(Q)`` (:mod:`rt_recon.preprocess.rigid`): SPM's
``spm_imatrix(M_volume_realigned / M_reference)`` when both start on one grid.

Sample points. Interpolating the volume at a point errs by an amount that
depends on where the point falls inside its voxel (for trilinear sampling
``u (1 - u)`` times the local curvature, ``u`` the fractional position), and a
sub-voxel motion moves every point's ``u``. These errors cancel in ``G^T e`` only
if the points' fractional positions cover whole voxels evenly. SPM's jitter of
up to half a voxel does not when the grid step is close to a whole number of
voxels, as 4 mm is for 3.75 mm slices: each plane of the grid then holds all its
points in the same half of its voxels. With the same grid jittered by up to a whole voxel, the
worst error in recovering known motions of the real Trio template
(tests/preprocess/test_motion_truth.py) is 17-37 % smaller, at no cost per TR
(docs/preprocessing.md, "Measured against a known truth").

Speed choices (see benchmarks/bench_preprocess.py): the sample points, their
reference values and derivatives and the 6 x 6 normal matrix are computed
once; each TR smooths once (separable Gaussian, float32), interpolates only
the few thousand kept points per iteration (trilinear by default: the data
are already smoothed with a 5 mm kernel, see docs/preprocessing.md for the
comparison with 4th-degree B-splines) and reslices in one pass. Trilinear
sampling goes through torch's ``grid_sample`` (:mod:`._trilinear`), about
twice as fast here as ``scipy.ndimage``, which does the B-spline orders.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from rt_recon.errors import DataError, ShapeMismatchError
from rt_recon.preprocess._checks import check_volume
from rt_recon.preprocess._trilinear import TrilinearSampler, grid_points, voxel_points
from rt_recon.preprocess.rigid import rigid_jacobian, rigid_matrix, rigid_params

log = logging.getLogger(__name__)

#: SPM's realignment defaults (spm_realign: quality 0.9, 5 mm smoothing, 4 mm sampling),
#: which every motion spec starts from (:class:`rt_recon.preprocess.spec.MotionSpec`).
SPM_QUALITY = 0.9
SPM_FWHM_MM = 5.0
SPM_SEP_MM = 4.0

#: Lever arm (mm) turning a rotation update into a displacement for the stopping rule.
_LEVER_MM = 50.0


@dataclass(frozen=True)
class _Samples:
    """The reference's sample points and what the fit needs of them."""

    points: np.ndarray  # (3, n) voxel coordinates of the (padded) estimation grid
    values: np.ndarray  # (n,) smoothed reference at the points
    derivs: np.ndarray  # (n, 6) derivative of the values per rigid parameter
    normal_inv: np.ndarray  # (6, 6) inverse of derivs^T derivs


@dataclass(frozen=True)
class Alignment:
    """One volume rigidly aligned to the reference with no earlier estimate to start from
    (:meth:`MotionCorrection.align`).

    Attributes:
        matrix: ``(4, 4)`` transform, volume world -> reference world (as
            :attr:`MotionCorrection.matrix`).
        params: ``(6,)`` ``(tx, ty, tz, pitch, roll, yaw)``, mm and radians (SPM's convention).
        converged: the fit met its stopping rule within ``max_iterations``.
        iterations: Gauss-Newton iterations it took.
        residual: relative squared residual of the fit, ``|e|^2 / |b - mean(b)|^2`` over the
            sample points inside the volume (0: a perfect match).
    """

    matrix: np.ndarray
    params: np.ndarray
    converged: bool
    iterations: int
    residual: float

    @property
    def translation_mm(self) -> float:
        """Length of the translation, mm (of the transform about the world origin)."""
        return float(np.linalg.norm(self.params[:3]))

    @property
    def rotation_deg(self) -> float:
        """Angle of the rotation, degrees (whatever its axis)."""
        return rotation_angle_deg(self.matrix)


def rotation_angle_deg(matrix: np.ndarray) -> float:
    """The angle (degrees) of the rotation part of a ``(4, 4)`` rigid transform:
    ``arccos((trace(R) - 1) / 2)``."""
    cos = (np.trace(np.asarray(matrix, dtype=np.float64)[:3, :3]) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """``(3,)`` voxel edge lengths in mm: the column norms of the affine's 3 x 3 part."""
    return np.sqrt(np.sum(np.asarray(affine, dtype=np.float64)[:3, :3] ** 2, axis=0))


def smooth(volume: np.ndarray, affine: np.ndarray, fwhm_mm: float) -> np.ndarray:
    """Separable Gaussian smoothing of an ``(x, y, z)`` volume, FWHM in mm, zero outside.

    The kernel reaches 6 sigma each side. Returns float32.
    """
    sigma = fwhm_mm / np.sqrt(8.0 * np.log(2.0)) / voxel_sizes(affine)
    return ndimage.gaussian_filter(
        np.asarray(volume, dtype=np.float32), sigma, mode="constant", truncate=6.0
    )


class MotionCorrection:
    """Estimate the rigid motion of each volume to ``reference`` and reslice it there.

    ``update(volume)`` takes one volume, either ``(x, y, z)`` or flattened
    ``(n_voxels,)`` in x-fastest (Fortran) order, and returns the volume
    resliced onto the reference grid as float32 in the same layout (the
    reference's shape). After it, :attr:`params` holds
    ``(tx, ty, tz, pitch, roll, yaw)`` in mm and radians (SPM's convention,
    relative to the reference), :attr:`matrix` the ``(4, 4)`` transform and
    :attr:`iterations` the Gauss-Newton iterations used.

    Args:
        reference: ``(x, y, z)`` reference volume (e.g. the run's template EPI).
        reference_affine: ``(4, 4)`` voxel -> RAS+ mm affine of the reference.
        volume_affine: affine of the incoming volumes; default the reference's.
        volume_shape: ``(x, y, z)`` of the incoming volumes; default the reference's.
        quality: fraction of the sample points' information to keep (SPM's quality).
        fwhm: smoothing kernel before estimation, mm.
        sep: sample-point spacing on the reference, mm.
        order: spline order used to sample volumes while estimating (1 trilinear,
            2-5 B-spline); the reference derivatives always come from a cubic
            or higher B-spline.
        reslice_order: spline order of the final reslice (1 trilinear, 0-5).
        tolerance_mm: stop when no point 50 mm from the origin moves more than
            this in one iteration. 5 um (1/600 of a 3 mm voxel) takes 2 iterations per
            TR on the Trio run, where 1 um took 3 and moved no parameter by more than
            0.6 um or 12 urad (benchmarks/bench_preprocess.py).
        pad_slices: empty slices added at both ends of the third voxel axis of the
            reference and of each volume before estimation (world positions kept), so
            sample points reach past the slab's edges; OpenNFT pads 3 (its
            ``nrZeroPadVol``). Reslicing is unaffected.
        max_iterations: hard limit of Gauss-Newton iterations per volume.
        seed: seed of the sample-point jitter (the same seed gives the same points).
    """

    def __init__(
        self,
        reference: np.ndarray,
        reference_affine: np.ndarray,
        *,
        volume_affine: np.ndarray | None = None,
        volume_shape: tuple[int, int, int] | None = None,
        quality: float = SPM_QUALITY,
        fwhm: float = SPM_FWHM_MM,
        sep: float = SPM_SEP_MM,
        order: int = 1,
        reslice_order: int = 1,
        tolerance_mm: float = 5e-3,
        max_iterations: int = 64,
        pad_slices: int = 0,
        seed: int = 0,
    ):
        reference = np.asarray(reference)
        if reference.ndim != 3:
            raise ShapeMismatchError(
                f"MotionCorrection expected an (x, y, z) reference, found shape {reference.shape}"
            )
        if not np.isfinite(reference).all():
            raise DataError("MotionCorrection reference volume holds NaN/Inf values")
        if not 0.0 < quality <= 1.0:
            raise ValueError(f"quality must be in (0, 1], found {quality}")
        if not (1 <= order <= 5 and 0 <= reslice_order <= 5):
            raise ValueError(
                f"order must be 1-5 and reslice_order 0-5, found {order}, {reslice_order}"
            )
        self.reference_shape: tuple[int, int, int] = tuple(int(s) for s in reference.shape)
        self.reference_affine = _check_affine(reference_affine, "reference_affine")
        self.volume_affine = (
            self.reference_affine
            if volume_affine is None
            else _check_affine(volume_affine, "volume_affine")
        )
        self.volume_shape: tuple[int, int, int] = (
            self.reference_shape if volume_shape is None else tuple(int(s) for s in volume_shape)
        )
        self.fwhm, self.order, self.reslice_order = float(fwhm), int(order), int(reslice_order)
        self.tolerance_mm, self.max_iterations = float(tolerance_mm), int(max_iterations)
        if pad_slices < 0:
            raise ValueError(f"pad_slices must be >= 0, found {pad_slices}")
        self.pad_slices = int(pad_slices)
        self._volume_inv = np.linalg.inv(self.volume_affine)
        # Reference-grid coordinates of the last voxel selection resliced, keyed by the
        # identity of its index array (VoxelSelection.indices does not change).
        self._voxels: np.ndarray | None = None
        self._voxel_index = np.zeros((3, 0))
        self._voxel_points = voxel_points(np.zeros(0, dtype=np.int64), self.reference_shape)
        self._grid = grid_points(self.reference_shape) if reslice_order == 1 else None
        # Estimation grids: padded along the third axis, the affines moved so that every
        # voxel keeps its world position.
        unpad = np.eye(4)
        unpad[2, 3] = -self.pad_slices
        self._est_reference_affine = self.reference_affine @ unpad
        self._est_volume_inv = np.linalg.inv(self.volume_affine @ unpad)
        self._est_volume_shape = (*self.volume_shape[:2], self.volume_shape[2] + 2 * pad_slices)
        self._prepare_reference(
            self._pad(np.asarray(reference, dtype=np.float32)),
            float(sep),
            float(quality),
            int(seed),
        )
        self.reset()

    # ------------------------------------------------------------------ reference
    def _prepare_reference(self, reference: np.ndarray, sep: float, quality: float, seed: int):
        affine = self._est_reference_affine
        ref = smooth(reference, affine, self.fwhm).astype(np.float64)
        coef = ndimage.spline_filter(ref, order=max(3, self.order), mode="mirror")
        points = _sample_grid(reference.shape, voxel_sizes(affine), sep, seed)
        grad_vox = _gradients(coef, points, max(3, self.order))
        # Values with the interpolator the volumes are sampled with: an identical volume then
        # fits with a zero residual at the identity.
        values = _sample(ref, points.T, self.order)
        # World gradient: r(u) = R(M^-1 u) so grad_u = M^-T grad_x (row vectors: g @ M^-1).
        grad_world = grad_vox @ np.linalg.inv(affine[:3, :3])
        world = points @ affine[:3, :3].T + affine[:3, 3]
        derivs = np.einsum("nk,nkp->np", grad_world, rigid_jacobian(world))
        keep = _cull_by_quality(derivs, values, quality)
        kept = derivs[keep]
        self._fine = _Samples(
            points=np.ascontiguousarray(points[keep].T),  # (3, n) reference voxel coords
            values=values[keep],
            derivs=kept,
            normal_inv=np.linalg.inv(kept.T @ kept),
        )
        log.info(
            "motion reference: %d of %d sample points kept (quality %.2f)",
            keep.size, len(points), quality,
        )  # fmt: skip

    @property
    def n_points(self) -> int:
        """Number of reference sample points the estimate uses."""
        return int(self._fine.points.shape[1])

    def reset(self) -> None:
        """Forget the run: the next volume starts from the identity transform."""
        self.matrix = np.eye(4)
        self.params = np.zeros(6)
        self.iterations = 0
        self.count = 0

    # ------------------------------------------------------------------ per TR
    def update(self, volume: np.ndarray) -> np.ndarray:
        """One volume (``(x, y, z)`` or ``(n_voxels,)`` x-fastest) -> resliced float32 volume."""
        grid = self._as_grid(volume)  # checked once here
        self._estimate(grid)
        out = self._reslice(grid, None)
        return np.ravel(out, order="F") if np.ndim(volume) == 1 else out

    def estimate(self, volume: np.ndarray) -> np.ndarray:
        """Fit the transform of one volume (``(x, y, z)`` or flat); returns :attr:`params`."""
        return self._estimate(self._as_grid(volume))

    def reslice(self, volume: np.ndarray, voxels: np.ndarray | None = None) -> np.ndarray:
        """Resample one volume onto the reference grid with :attr:`matrix`, float32 ``(x, y, z)``.

        With ``voxels`` (``(n,)`` indices into the reference grid, x-fastest, as
        :class:`~rt_recon.preprocess.mask.VoxelSelection` holds them) only those are
        resliced and ``(n,)`` values come back: the cost scales with ``n``.
        Reference points whose source lies outside the volume take the nearest edge value.
        """
        return self._reslice(self._as_grid(volume), voxels)

    def _estimate(self, grid: np.ndarray) -> np.ndarray:
        coef = self._coefficients(self._pad(grid), self.fwhm)
        matrix, iterations, step = self._fit(self._fine, coef, self.matrix, self.tolerance_mm)
        if step >= self.tolerance_mm:
            log.warning(
                "MotionCorrection: no convergence in %d iterations (last step %.2g mm)",
                iterations, step,
            )  # fmt: skip
        self.matrix, self.params, self.iterations = matrix, rigid_params(matrix), iterations
        self.count += 1
        return self.params

    def align(self, volume: np.ndarray) -> Alignment:
        """Fit one volume (``(x, y, z)`` or flat) from the identity, with no earlier estimate:
        the first volume of a run (module doc).

        The result also becomes :attr:`matrix` and :attr:`params`, so the next
        :meth:`estimate` (of this volume or the next) starts from it; :attr:`count` is
        unchanged.

        Raises:
            ShapeMismatchError, DataError: the volume's shape or values, as :meth:`update`;
                DataError also when the volume does not overlap the reference.
        """
        coef = self._coefficients(self._pad(self._as_grid(volume)), self.fwhm)
        matrix, iterations, step = self._fit(self._fine, coef, np.eye(4), self.tolerance_mm)
        alignment = Alignment(
            matrix=matrix,
            params=rigid_params(matrix),
            converged=bool(step < self.tolerance_mm),
            iterations=iterations,
            residual=self._residual(self._fine, coef, matrix),
        )
        self.matrix, self.params, self.iterations = matrix, alignment.params, iterations
        log.info(
            "aligned to the reference: %.2f mm, %.2f deg (%d iterations, relative residual "
            "%.3f%s)",
            alignment.translation_mm, alignment.rotation_deg, iterations, alignment.residual,
            "" if alignment.converged else ", NOT converged",
        )  # fmt: skip
        return alignment

    def _coefficients(self, grid: np.ndarray, fwhm: float) -> np.ndarray | TrilinearSampler:
        """The padded volume smoothed at ``fwhm``, as the fit samples it."""
        smoothed = smooth(grid, self.volume_affine, fwhm)
        if self.order == 1:
            return TrilinearSampler(smoothed)
        return ndimage.spline_filter(smoothed, order=self.order, mode="mirror", output=np.float32)

    def _fit(
        self,
        samples: _Samples,
        coef: np.ndarray | TrilinearSampler,
        matrix: np.ndarray,
        tolerance_mm: float,
    ) -> tuple[np.ndarray, int, float]:
        """Gauss-Newton from ``matrix`` until the update moves no point 50 mm from the origin
        by ``tolerance_mm``: the transform, the iterations and the last update (mm)."""
        matrix, iterations, step = matrix.copy(), 0, np.inf
        while step >= tolerance_mm and iterations < self.max_iterations:
            delta = self._gauss_newton_step(coef, matrix, samples)
            matrix = rigid_matrix(delta) @ matrix
            step = max(np.abs(delta[:3]).max(), _LEVER_MM * np.abs(delta[3:]).max())
            iterations += 1
        return matrix, iterations, step

    def _gauss_newton_step(
        self,
        coef: np.ndarray | TrilinearSampler,
        matrix: np.ndarray,
        samples: _Samples | None = None,
    ) -> np.ndarray:
        """The ``(6,)`` update ``delta`` minimising ``|b - s F(Q) + G delta|`` at ``Q = matrix``.

        ``coef``: the smoothed volume's sampler (trilinear) or B-spline coefficients;
        ``samples``: the reference's sample points (default: the corrector's own level).
        """
        residual, derivs, normal_inv, _ = self._sampled(samples or self._fine, coef, matrix)
        return -normal_inv @ (derivs.T @ residual)

    def _residual(
        self, samples: _Samples, coef: np.ndarray | TrilinearSampler, matrix: np.ndarray
    ) -> float:
        """Relative squared residual at ``matrix``, over the points inside the volume."""
        residual, _, _, inside = self._sampled(samples, coef, matrix, need_normal=False)
        values = samples.values[inside]
        spread = float(np.sum((values - values.mean()) ** 2))
        return float(residual @ residual) / max(spread, 1e-12)

    def _sampled(
        self,
        samples: _Samples,
        coef: np.ndarray | TrilinearSampler,
        matrix: np.ndarray,
        need_normal: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """At ``Q = matrix``: the residual ``e = b - s F(Q)`` at the sample points inside the
        volume, their derivatives, the inverse normal matrix (stale unless ``need_normal``)
        and which points are inside (``(n,)`` bool)."""
        to_voxel = self._est_volume_inv @ np.linalg.inv(matrix) @ self._est_reference_affine
        coords = to_voxel[:3, :3] @ samples.points + to_voxel[:3, 3:]
        upper = np.array(self._est_volume_shape, dtype=np.float64)[:, None] - 1.0
        inside = np.all((coords >= 0.0) & (coords <= upper), axis=0)
        n_inside = int(np.count_nonzero(inside))
        if n_inside < 32:
            raise DataError(
                f"MotionCorrection: only {n_inside} sample points fall inside the volume "
                "(expected >= 32); the volume does not overlap the reference"
            )
        values, derivs, normal_inv = samples.values, samples.derivs, samples.normal_inv
        if n_inside < inside.size:  # points moved out of the field of view: drop them
            coords, values, derivs = coords[:, inside], values[inside], derivs[inside]
            normal_inv = np.linalg.inv(derivs.T @ derivs) if need_normal else normal_inv
        if isinstance(coef, TrilinearSampler):
            sampled = coef.at(coords)
        else:
            sampled = ndimage.map_coordinates(
                coef, coords, order=self.order, mode="mirror", prefilter=False
            )
        total = float(sampled.sum())
        if total == 0.0 or not np.isfinite(total):
            raise DataError(
                f"MotionCorrection: the volume sums to {total:g} at the reference's sample "
                "points (expected tissue there): a blank volume, or one far from the reference"
            )
        residual = values - (values.sum() / total) * sampled
        return residual, derivs, normal_inv, inside

    def _reslice(self, grid: np.ndarray, voxels: np.ndarray | None) -> np.ndarray:
        grid = np.asarray(grid, dtype=np.float32)
        to_voxel = self._volume_inv @ np.linalg.inv(self.matrix) @ self.reference_affine
        trilinear = TrilinearSampler(grid) if self.reslice_order == 1 else None
        if voxels is None:
            if trilinear is not None:
                return trilinear.transformed(to_voxel, self._grid).reshape(self.reference_shape)
            return ndimage.affine_transform(
                grid,
                to_voxel[:3, :3],
                offset=to_voxel[:3, 3],
                output_shape=self.reference_shape,
                output=np.float32,
                order=self.reslice_order,
                mode="nearest",
                prefilter=self.reslice_order > 1,
            )
        if voxels is not self._voxels:
            self._voxels = voxels
            self._voxel_index = np.array(
                np.unravel_index(voxels, self.reference_shape, order="F"), dtype=np.float64
            )
            self._voxel_points = voxel_points(voxels, self.reference_shape)
        if trilinear is not None:
            return trilinear.transformed(to_voxel, self._voxel_points)
        coords = to_voxel[:3, :3] @ self._voxel_index + to_voxel[:3, 3:]
        return ndimage.map_coordinates(
            grid,
            coords,
            output=np.float32,
            order=self.reslice_order,
            mode="nearest",
            prefilter=self.reslice_order > 1,
        )

    def _pad(self, grid: np.ndarray) -> np.ndarray:
        if not self.pad_slices:
            return grid
        return np.pad(grid, ((0, 0), (0, 0), (self.pad_slices, self.pad_slices)))

    def _as_grid(self, volume: np.ndarray) -> np.ndarray:
        volume = np.asarray(volume)
        if volume.ndim == 1:
            n = int(np.prod(self.volume_shape))
            check_volume(volume, (n,), "MotionCorrection")
            return volume.reshape(self.volume_shape, order="F")
        return check_volume(volume, self.volume_shape, "MotionCorrection")


def _check_affine(affine: np.ndarray, name: str) -> np.ndarray:
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise ShapeMismatchError(
            f"{name} must be a finite (4, 4) matrix, found shape {affine.shape}"
        )
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise DataError(f"{name} is singular: {affine.tolist()}")
    return affine


def _sample_grid(shape: tuple[int, int, int], vox: np.ndarray, sep: float, seed: int) -> np.ndarray:
    """``(n, 3)`` voxel coordinates every ``sep`` mm, each jittered by U(0, 1) voxel per axis.

    A whole voxel of jitter spreads the fractional positions evenly over each voxel
    whatever the grid step (see the module docstring); the points stay inside
    ``[0, d - 1]`` along every axis.
    """
    step = sep / vox
    axes = [np.arange(0.0, d - 2.0 + 1e-9, s) for d, s in zip(shape, step, strict=True)]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    jitter = np.random.default_rng(seed).uniform(0.0, 1.0, size=points.shape)
    return points + jitter


def _sample(volume: np.ndarray, coords: np.ndarray, order: int) -> np.ndarray:
    """Smoothed ``volume`` (not prefiltered) at voxel ``coords (3, n)``, spline of ``order``."""
    return ndimage.map_coordinates(volume, coords, order=order, mode="mirror", prefilter=order > 1)


def _gradients(coef: np.ndarray, points: np.ndarray, order: int, h: float = 1e-3) -> np.ndarray:
    """Voxel-space gradients ``(n, 3)`` of B-spline coefficients ``coef`` (central differences)."""
    coords = points.T
    grads = np.empty_like(points)
    for axis in range(3):
        offset = np.zeros((3, 1))
        offset[axis] = h
        plus = ndimage.map_coordinates(
            coef, coords + offset, order=order, mode="mirror", prefilter=False
        )
        minus = ndimage.map_coordinates(
            coef, coords - offset, order=order, mode="mirror", prefilter=False
        )
        grads[:, axis] = (plus - minus) / (2.0 * h)
    return grads


def _cull_by_quality(derivs: np.ndarray, values: np.ndarray, quality: float) -> np.ndarray:
    """Indices of the points kept: drop the 10 % of least leverage until det falls to quality.

    Removing row ``z_i`` of ``Z = [G b]`` scales ``det(Z^T Z)`` by ``1 - h_i`` with
    ``h_i = z_i (Z^T Z)^-1 z_i^T`` (matrix determinant lemma), so the rows whose
    removal costs least information are those of smallest leverage ``h_i``.
    """
    z = np.column_stack([derivs, values])
    keep = np.arange(len(z))
    minimum = 32 * derivs.shape[1]
    _, logdet0 = np.linalg.slogdet(z.T @ z)
    log_quality = np.log(quality)
    while keep.size > minimum:
        zk = z[keep]
        alpha = zk.T @ zk
        _, logdet = np.linalg.slogdet(alpha)
        if logdet - logdet0 <= log_quality:
            break
        leverage = np.einsum("ij,ij->i", zk @ np.linalg.inv(alpha), zk)
        n_drop = round(keep.size / 10)
        keep = np.sort(keep[np.argsort(leverage, kind="stable")[n_drop:]])
    return keep
