"""Live data quality, one TR at a time: tSNR per ROI, global signal, DVARS, volume outliers.

:class:`QualityMonitor` takes each TR's realigned voxel values (the decoder's voxels before the
temporal stages: :meth:`~rt_recon.preprocess.PreprocessChain.realign`) and returns a
:class:`QualityMeasures`. Work per TR is a few passes over the voxels and a partial sort of
each ROI's tSNR and of the last ``window`` DVARS values, all in buffers allocated once, when
the object is built: nothing grows with the run.

**tSNR per ROI** (temporal signal-to-noise ratio) over a sliding window of the last
``window`` TRs: per voxel, the mean over the window divided by its standard deviation
(``ddof=1``), then the **median over the ROI's voxels**. This is the usual per-voxel
definition (Krüger & Glover 2001; MRIQC's ``tsnr``, which also takes the median), not the
tSNR of the ROI's mean signal: averaging over voxels cancels their independent noise, so the
mean signal's tSNR grows with the ROI's size and would not compare across ROIs or sites;
the median keeps a few voxels at the edge of the brain (low mean, high variance) from
dragging the figure. The sums behind the means and variances are running sums over a ring
buffer of the window (one volume in, one out per TR), taken about each voxel's first value so
that the variance does not lose its digits to a large mean. Outlier volumes (below) are left
out of the window: the figure is that of the volumes the run keeps, so one motion spike does
not spoil it for ``window`` TRs, while a lasting loss of signal or a steady increase of noise
(which does not stand out from its own recent DVARS) does.

**Global signal**: the mean over every voxel given, as percent change from its running
baseline, the mean global signal of the kept volumes in the window before this TR. A sudden
change of the whole volume's intensity (a coil or shim problem, a large movement out of
the field of view or across the slab) shows here; scanner drift, slower than the window,
does not.

**DVARS** (Power et al. 2012, "Spurious but systematic correlations in functional
connectivity MRI networks arise from subject motion", NeuroImage 59:2142-2154): the root
mean square over the voxels of the change since the previous volume, here in percent of the
global baseline. A volume is an **outlier** when the robust z of its DVARS against the
DVARS of the last ``window`` TRs, ``(DVARS - median) / (1.4826 MAD)``, exceeds ``outlier_z``.
Standardising DVARS by its own distribution over time, with median and a robust scale so
the outliers themselves do not set the scale, follows Afyouni & Nichols 2018 ("Insight and
inference for DVARS", NeuroImage 172:291-312), who standardise DVARS² with its median and
half-IQR; this is the simpler robust z, not their test. The volume after an outlier
usually has a large DVARS too (the change back); it is flagged the same way.

Nothing is judged here beyond the outlier flag: the thresholds on these figures (and on
framewise displacement, :mod:`rt_recon.preprocess.fd`) are the session's ``quality`` config,
applied by the console.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from rt_recon.errors import ShapeMismatchError

#: 1 / Phi^-1(3/4): a normal distribution's standard deviation per unit of MAD.
MAD_TO_SD = 1.4826


@dataclass(frozen=True)
class QualityMeasures:
    """One TR's data quality (``None``: not enough TRs in the window yet).

    Attributes:
        tsnr: per ROI, the median over its voxels of mean / std over the window.
        global_pct: global signal, percent change from the baseline of the window.
        dvars_pct: RMS over voxels of the change since the previous volume, percent of the
            global baseline.
        dvars_z: robust z of ``dvars_pct`` against the window's DVARS.
        outlier: ``dvars_z > outlier_z``; the volume is left out of the window.
        outliers: outlier volumes among the last ``window`` TRs, this one included.
        window_trs: volumes in the window the tSNR and the baseline rest on (outliers out).
    """

    tsnr: dict[str, float | None]
    global_pct: float | None
    dvars_pct: float | None
    dvars_z: float | None
    outlier: bool
    outliers: int
    window_trs: int


class QualityMonitor:
    """``update(values (n_voxels,)) -> QualityMeasures``, one TR at a time (module doc).

    Args:
        n_voxels: length of each TR's values (the decoder's realigned voxels).
        rois: ROI name -> ``(k,)`` indices into those values (e.g. the decoder's heads).
        window: TRs in the sliding window (tSNR, global baseline, DVARS baseline).
        min_trs: TRs the window must hold before tSNR, global signal and DVARS z are given.
        outlier_z: robust z of DVARS above which a volume is an outlier.
    """

    def __init__(
        self,
        n_voxels: int,
        rois: Mapping[str, np.ndarray],
        window: int = 30,
        min_trs: int = 10,
        outlier_z: float = 8.0,
    ):
        if n_voxels < 1:
            raise ShapeMismatchError(f"QualityMonitor needs at least one voxel, found {n_voxels}")
        if not 3 <= min_trs <= window:
            raise ValueError(
                f"QualityMonitor: expected 3 <= min_trs <= window, found min_trs={min_trs}, "
                f"window={window}"
            )
        if not outlier_z > 0:
            raise ValueError(f"QualityMonitor: outlier_z must be > 0, found {outlier_z}")
        self.n_voxels, self.window, self.min_trs = int(n_voxels), int(window), int(min_trs)
        self.outlier_z = float(outlier_z)
        self.rois: dict[str, np.ndarray] = {}
        for name, indices in rois.items():
            idx = np.asarray(indices, dtype=np.intp)
            if idx.ndim != 1 or idx.size == 0 or idx.min() < 0 or idx.max() >= n_voxels:
                raise ShapeMismatchError(
                    f"QualityMonitor: ROI {name!r} needs 1-d indices into {n_voxels} voxels, found "
                    f"{idx.size} with range {(int(idx.min()), int(idx.max())) if idx.size else ()}"
                )
            self.rois[name] = idx
        n, w = self.n_voxels, self.window
        self._ring = np.zeros((w, n), dtype=np.float32)  # the window's volumes
        self._kept = np.zeros(w, dtype=bool)  # slot in the window's statistics (no outlier)
        self._global = np.zeros(w, dtype=np.float64)  # each slot's global signal
        self._outlier = np.zeros(w, dtype=bool)
        self._dvars = np.zeros(w, dtype=np.float64)  # the last w DVARS values (% of baseline)
        self._dvars_sorted = np.zeros(w, dtype=np.float64)  # work space for the median
        self._s1 = np.zeros(n, dtype=np.float64)  # sum over kept slots of (x - origin)
        self._s2 = np.zeros(n, dtype=np.float64)  # ... of (x - origin)^2
        self._origin = np.zeros(n, dtype=np.float64)  # each voxel's first value
        self._previous = np.zeros(n, dtype=np.float32)
        self._work = np.zeros(n, dtype=np.float64)
        self._work2 = np.zeros(n, dtype=np.float64)
        #: per ROI: three work arrays of its size (sums, variances, tSNR)
        self._roi_work = {
            name: np.zeros((3, idx.size), dtype=np.float64) for name, idx in self.rois.items()
        }
        self.reset()

    def reset(self) -> None:
        """Forget the run (a new run begins)."""
        self.count = 0  # volumes taken
        self._n_dvars = 0
        self._kept[:] = False
        self._outlier[:] = False
        self._s1[:] = 0.0
        self._s2[:] = 0.0
        self._global_sum = 0.0  # sum of the kept slots' global signal
        self.last: QualityMeasures | None = None

    @property
    def kept(self) -> int:
        """Volumes in the window's statistics (outliers left out)."""
        return int(np.count_nonzero(self._kept))

    def update(self, values: np.ndarray) -> QualityMeasures:
        """One TR's ``(n_voxels,)`` finite values (the caller checks them) -> its measures."""
        values = np.asarray(values)
        if values.shape != (self.n_voxels,):
            raise ShapeMismatchError(
                f"QualityMonitor.update() expected ({self.n_voxels},) values, found {values.shape}"
            )
        if self.count == 0:
            self._origin[:] = values
        level = float(np.mean(values, dtype=np.float64))
        kept = self.kept
        baseline = self._global_sum / kept if kept else None
        global_pct = None
        if baseline is not None and kept >= self.min_trs and baseline != 0.0:
            global_pct = float(100.0 * (level - baseline) / abs(baseline))

        dvars_pct = dvars_z = None
        if self.count > 0:
            scale = abs(baseline) if baseline else abs(level)
            np.subtract(values, self._previous, out=self._work)
            rms = math.sqrt(float(np.dot(self._work, self._work)) / self.n_voxels)
            dvars_pct = float(100.0 * rms / scale) if scale > 0 else 0.0
            dvars_z = self._robust_z(dvars_pct)
            self._dvars[self._n_dvars % self.window] = dvars_pct
            self._n_dvars += 1
        outlier = bool(dvars_z is not None and dvars_z > self.outlier_z)

        slot = self.count % self.window
        if self._kept[slot]:  # the oldest volume leaves the window
            self._accumulate(self._ring[slot], -1.0)
            self._global_sum -= float(self._global[slot])
        self._ring[slot] = values
        self._global[slot] = level
        self._kept[slot] = not outlier
        self._outlier[slot] = outlier
        if not outlier:
            self._accumulate(values, +1.0)
            self._global_sum += level
        self._previous[:] = values
        self.count += 1

        kept = self.kept
        measures = QualityMeasures(
            tsnr={name: self._tsnr(name, kept) for name in self.rois},
            global_pct=global_pct,
            dvars_pct=dvars_pct,
            dvars_z=dvars_z,
            outlier=outlier,
            outliers=int(np.count_nonzero(self._outlier[: min(self.count, self.window)])),
            window_trs=kept,
        )
        self.last = measures
        return measures

    def _accumulate(self, values: np.ndarray, sign: float) -> None:
        """Add (``sign`` +1) or take out (-1) one volume from the running sums."""
        np.subtract(values, self._origin, out=self._work)
        np.multiply(self._work, self._work, out=self._work2)
        if sign > 0:
            self._s1 += self._work
            self._s2 += self._work2
        else:
            self._s1 -= self._work
            self._s2 -= self._work2

    def _tsnr(self, name: str, kept: int) -> float | None:
        """Median over the ROI's voxels of mean / std (``ddof=1``) over the kept window."""
        if kept < self.min_trs:
            return None
        idx = self.rois[name]
        mean, var, out = self._roi_work[name]
        np.take(self._s1, idx, out=mean)  # sum of (x - origin)
        np.multiply(mean, mean, out=out)
        out /= kept
        np.take(self._s2, idx, out=var)
        var -= out
        var /= kept - 1
        np.maximum(var, 0.0, out=var)
        np.sqrt(var, out=var)
        mean /= kept
        np.take(self._origin, idx, out=out)
        mean += out
        np.abs(mean, out=mean)
        # a voxel that did not change at all has an infinite tSNR (it sorts last)
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(mean, var, out=out)
        return _median_in_place(out)

    def _robust_z(self, value: float) -> float | None:
        """``value`` against the DVARS values before it in the window (None: too few)."""
        n = min(self._n_dvars, self.window)
        if n < self.min_trs:
            return None
        history = self._dvars_sorted[:n]
        history[:] = self._dvars[:n]
        median = _median_in_place(history)
        np.subtract(history, median, out=history)
        np.abs(history, out=history)
        mad = _median_in_place(history)
        # a floor for an unnaturally steady series (synthetic data): 1% of the median
        scale = max(MAD_TO_SD * mad, 0.01 * median, 1e-12)
        return float((value - median) / scale)


def _median_in_place(values: np.ndarray) -> float:
    """The median of ``values``, partially sorting them in place."""
    n = values.size
    mid = n // 2
    if n % 2:
        values.partition(mid)
        return float(values[mid])
    values.partition((mid - 1, mid))
    return float(0.5 * (values[mid - 1] + values[mid]))
