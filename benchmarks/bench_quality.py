"""Live data quality on clean runs: the figures the ``quality`` config's defaults rest on.

Every run of the realistic synthetic participant (the demo config's session; ``--seeds`` for
other participants) and the real Siemens Trio run in ``../shared/data`` (skipped where it is
absent) goes through what the decoder does per TR: realignment to a reference (the mean of
the first run's first five volumes, as a fit takes it; the Trio run's own) and a
:class:`~rt_recon.preprocess.quality.QualityMonitor` on the decoder's kind of voxels: two
ROIs (the synthetic participant's atlas-like ``ev`` and ``hv`` masks as the heads ``z`` and
``c``; the Trio run's two OpenNFT ROIs) and up to 2,000 more brain voxels, as the default
recipe's noise pool. Printed per source: tSNR per ROI (1st and 5th percentile, median over
TRs), the global signal's change (99th, 99.9th percentile, max of its absolute value), the
robust z of DVARS (99th percentile, max) and outliers per 100 TRs, framewise displacement
(99th percentile, max), and, with the config's thresholds, the TRs that cross one and the
most of them in any ``stop_window_trs`` (a stop banner on these clean runs would be a false
alarm). Then a motion burst (a few TRs of translation and an intensity change added to a
synthetic run) shows the banner's TR. ``--timing`` times :meth:`QualityMonitor.update` at
15,000 and 100,000 voxels.

    python -m benchmarks.bench_quality [--seeds 0] [--timing] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any

import numpy as np
from scipy import ndimage

from benchmarks._report import machine, write_json
from rt_recon.config import ConsoleSection, FitSection, QualitySection
from rt_recon.decode.features import FeatureExtractor
from rt_recon.preprocess import PreprocessSpec
from rt_recon.preprocess.fd import FramewiseDisplacement
from rt_recon.preprocess.quality import QualityMonitor

log = logging.getLogger("benchmarks.quality")

#: Brain voxels beside the ROIs, as the default recipe's noise pool (``recipe.pool_size``).
POOL = 2000

#: Real-time volumes OpenNFT skips at the start of the Trio run (``nrSkipVol``).
TRIO_SKIP = 5


def _voxels(rois: dict[str, np.ndarray], brain: np.ndarray) -> tuple[np.ndarray, dict]:
    """The decoder's kind of voxels (the ROIs and a pool of other brain voxels) and each ROI's
    indices into them."""
    inside = np.unique(np.concatenate(list(rois.values())))
    others = np.setdiff1d(brain, inside)
    pool = others[np.linspace(0, len(others) - 1, min(POOL, len(others))).astype(int)]
    voxels = np.union1d(inside, pool)
    return voxels, {name: np.searchsorted(voxels, idx) for name, idx in rois.items()}


def measure_run(
    volumes: np.ndarray,
    shape: tuple[int, int, int],
    affine: np.ndarray,
    reference: np.ndarray,
    voxels: np.ndarray,
    rois: dict[str, np.ndarray],
    quality: QualitySection,
) -> dict[str, np.ndarray]:
    """``(n_trs, n_channels)`` volumes -> per-TR arrays: ``tsnr_<roi>``, ``global_pct``,
    ``dvars_pct``, ``dvars_z``, ``outlier``, ``fd_mm`` (NaN where not given yet)."""
    # realign as a fit does (the temporal stages come after what is measured here)
    spec = PreprocessSpec.from_fit(FitSection(), affine, 1.0)
    extractor = FeatureExtractor(spec, voxels, shape, affine, reference)
    monitor = QualityMonitor(
        len(voxels), rois, window=quality.window_trs, outlier_z=quality.max_dvars_z
    )
    fd = FramewiseDisplacement()
    rows: dict[str, list[float]] = {}
    for volume in volumes:
        values, tr_quality = extractor.realign(volume)
        measures = monitor.update(values)
        row = {f"tsnr_{k}": v for k, v in measures.tsnr.items()}
        row |= {
            "global_pct": measures.global_pct,
            "dvars_pct": measures.dvars_pct,
            "dvars_z": measures.dvars_z,
            "outlier": float(measures.outlier),
            "fd_mm": fd.update(tr_quality.params) if tr_quality.params is not None else None,
        }
        for key, value in row.items():
            rows.setdefault(key, []).append(np.nan if value is None else float(value))
    return {k: np.asarray(v) for k, v in rows.items()}


def crossing(series: dict[str, np.ndarray], quality: QualitySection, fd_mm: float) -> np.ndarray:
    """``(n_trs,)`` bool: the TRs the console counts against the stop rule."""
    with np.errstate(invalid="ignore"):
        out = np.nan_to_num(series["fd_mm"]) > fd_mm
        for key, values in series.items():
            if key.startswith("tsnr_"):
                out |= values < quality.min_tsnr
        out |= np.abs(series["global_pct"]) > quality.max_global_pct
        out |= series["dvars_z"] > quality.max_dvars_z
    return out


def most_in_window(flags: np.ndarray, window: int) -> int:
    """The most True values in any ``window`` consecutive TRs."""
    if flags.size == 0:
        return 0
    counts = np.convolve(flags.astype(int), np.ones(window, int), mode="full")
    return int(counts.max())


def summarise(runs: list[dict[str, np.ndarray]], quality: QualitySection, fd_mm: float) -> dict:
    joined = {k: np.concatenate([r[k] for r in runs]) for k in runs[0]}
    out: dict[str, Any] = {"runs": len(runs), "trs": int(joined["global_pct"].size)}

    def pct(values: np.ndarray, qs: tuple[float, ...]) -> list[float]:
        values = values[np.isfinite(values)]
        return [round(float(np.percentile(values, q)), 3) for q in qs]

    for key, values in joined.items():
        if key.startswith("tsnr_"):
            out[key] = dict(zip(("p1", "p5", "median"), pct(values, (1, 5, 50)), strict=True))
    out["abs_global_pct"] = dict(
        zip(
            ("p99", "p99.9", "max"), pct(np.abs(joined["global_pct"]), (99, 99.9, 100)), strict=True
        )
    )
    out["dvars_pct"] = dict(zip(("median", "p99"), pct(joined["dvars_pct"], (50, 99)), strict=True))
    out["dvars_z"] = dict(zip(("p99", "max"), pct(joined["dvars_z"], (99, 100)), strict=True))
    out["outliers_per_100_trs"] = round(100 * float(np.nanmean(joined["outlier"])), 2)
    out["fd_mm"] = dict(zip(("p99", "max"), pct(joined["fd_mm"], (99, 100)), strict=True))
    flags = [crossing(r, quality, fd_mm) for r in runs]
    out["crossing_trs"] = int(sum(f.sum() for f in flags))
    out["most_crossing_in_stop_window"] = max(
        most_in_window(f, quality.stop_window_trs) for f in flags
    )
    return out


def synthetic(seed: int | None, quality: QualitySection) -> tuple[dict, list[dict], Any]:
    from benchmarks.bench_decoders import _load_run, _load_session
    from rt_recon.acquire.masks import load_mask

    config, dataset = _load_session(None, seed)
    files = dataset.runs()
    first = _load_run(files[0])
    reference = first.volumes[:5].mean(axis=0).reshape(first.shape, order="F")
    masks = dataset.root / "sub-01" / "masks"
    rois = {
        "z": load_mask(masks / "sub-01_desc-ev_mask.nii.gz", first.shape),
        "c": load_mask(masks / "sub-01_desc-hv_mask.nii.gz", first.shape),
    }
    brain = load_mask(masks / "sub-01_desc-brain_mask.nii.gz", first.shape)
    voxels, local = _voxels(rois, brain)
    runs = []
    for f in files:
        run = _load_run(f)
        runs.append(
            measure_run(run.volumes, run.shape, run.affine, reference, voxels, local, quality)
        )
        log.info("synthetic seed %s: %s done", seed, f.bold.name)
    context = (first, reference, voxels, local)
    return summarise(runs, quality, config.console.fd_threshold_mm), runs, context


def trio(quality: QualitySection, fd_mm: float) -> dict | None:
    from rt_recon.acquire.masks import load_mask
    from rt_recon.record.runs import load_run
    from tests.conftest import SHARED_DATA

    root = SHARED_DATA / "siemens_trio_mosaic_run"
    if not root.is_dir():
        log.warning("no %s: the real run is left out", root)
        return None
    run = load_run(root / "dicom")
    mean = run.volumes[TRIO_SKIP:].mean(axis=0)
    brain_mask = mean > 0.2 * np.percentile(mean, 98)
    brain_mask = ndimage.binary_fill_holes(brain_mask.reshape(run.shape, order="F"))
    brain = np.flatnonzero(np.ravel(brain_mask, order="F"))
    rois = {
        path.stem: load_mask(path, run.shape, run.affine)
        for path in sorted((root / "rois").glob("*.nii"))
    }
    voxels, local = _voxels(rois, brain)
    reference = run.volumes[TRIO_SKIP : TRIO_SKIP + 5].mean(axis=0).reshape(run.shape, order="F")
    out = {}
    for label, skip in (("from volume 6 (as OpenNFT)", TRIO_SKIP), ("every volume", 0)):
        series = measure_run(
            run.volumes[skip:], run.shape, run.affine, reference, voxels, local, quality
        )
        out[label] = summarise([series], quality, fd_mm)
    return out


def motion_burst(runs: list[dict], context: Any, quality: QualitySection, fd_mm: float) -> dict:
    """A synthetic run whose TRs 60-63 are shifted by 1.7-3 voxels (5-9 mm at 3 mm) and 3%
    brighter: the TRs crossing, and the first TR at which the stop rule holds."""
    run, reference, voxels, local = context
    volumes = run.volumes.copy()
    for k, tr in enumerate(range(60, 64)):
        volume = volumes[tr].reshape(run.shape, order="F")
        moved = ndimage.shift(volume, (1.5 + 0.5 * k, -1.0, 0.5 * k), order=1, mode="nearest")
        volumes[tr] = np.ravel(moved * 1.03, order="F")
    series = measure_run(volumes, run.shape, run.affine, reference, voxels, local, quality)
    flags = crossing(series, quality, fd_mm)
    window = quality.stop_window_trs
    stop = [
        t
        for t in range(len(flags))
        if flags[max(0, t - window + 1) : t + 1].sum() >= quality.stop_after_trs
    ]
    return {
        "crossing_trs": [int(t) for t in np.flatnonzero(flags)],
        "stop_banner_from_tr": stop[0] if stop else None,
        "stop_banner_trs": len(stop),
        "fd_mm": [round(float(v), 2) for v in series["fd_mm"][59:65]],
        "dvars_z": [round(float(v), 1) for v in series["dvars_z"][59:65]],
        "global_pct": [round(float(v), 2) for v in series["global_pct"][59:65]],
    }


def timing(n_voxels: int, repeats: int = 300) -> dict:
    rng = np.random.default_rng(0)
    volumes = (1000 + rng.normal(0, 10, (64, n_voxels))).astype(np.float32)
    half = n_voxels // 2
    monitor = QualityMonitor(n_voxels, {"z": np.arange(half), "c": np.arange(half, n_voxels)})
    for v in volumes:
        monitor.update(v)
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        monitor.update(volumes[i % len(volumes)])
        times.append((time.perf_counter() - t0) * 1000)
    return {"n_voxels": n_voxels, "p50_ms": round(float(np.median(times)), 3),
            "p95_ms": round(float(np.percentile(times, 95)), 3)}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[None], help="participants")
    parser.add_argument("--timing", action="store_true")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    quality, fd_mm = QualitySection(), ConsoleSection().fd_threshold_mm
    result: dict[str, Any] = {"machine": machine(), "quality": quality.model_dump(), "fd_mm": fd_mm}
    for seed in args.seeds:
        summary, runs, context = synthetic(seed, quality)
        result[f"synthetic seed {seed}"] = summary
        result[f"motion burst, seed {seed}"] = motion_burst(runs, context, quality, fd_mm)
    real = trio(quality, fd_mm)
    if real is not None:
        result["siemens trio"] = real
    if args.timing:
        result["timing"] = [timing(n) for n in (15_000, 100_000)]
    print(json.dumps(result, indent=2, default=str))
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
