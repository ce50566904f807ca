"""Per-TR preprocessing on the real Siemens Trio run (74 x 74 x 36): motion correction alone
and the whole chain, beside a plain scipy registration and our own code without its speed-ups,
in the same run.

Rows (one volume per TR, in acquisition order, timed from the volume in hand to the output):

* plain scipy registration (baseline): what one writes with scipy alone: minimise the sum
  of squared differences between the smoothed template and the smoothed volume resampled
  with ``ndimage.affine_transform`` (trilinear, whole volume) over the six parameters with
  ``scipy.optimize.minimize(method="Powell")``, then reslice. Run on fewer volumes (slow).
* SPM settings, no speed-ups: our estimator with 4th-degree B-splines for the estimate and
  the reslice (as OpenNFT runs SPM) and a cold start (identity) every TR.
* ours: the defaults (trilinear sampling of the smoothed volume, warm start, trilinear
  reslice of the whole volume); the same with a 4th-degree reslice; the estimate alone.
* whole chain: motion + despike + detrend (quadratic drift + 6 motion confounds) + z-score,
  on every voxel, and on a brain mask (template > 20 % of its maximum) where only the mask's
  voxels are resliced.

BLAS is limited to one thread, as in the decoder node. A second table gives each
estimator's agreement with SPM (``spm_realign_rt_params.mat``), in OpenNFT's world
(see tests/preprocess/test_motion_spm.py).

    python -m benchmarks.bench_preprocess [--volumes 155] [--baseline-volumes 6] [--json out.json]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from scipy import ndimage, optimize
from threadpoolctl import threadpool_limits

from benchmarks._report import Timing, machine, markdown_table, write_json
from rt_recon.preprocess.chain import PreprocessChain
from rt_recon.preprocess.despike import SpikeDetector
from rt_recon.preprocess.detrend import OnlineDetrend
from rt_recon.preprocess.mask import VoxelSelection
from rt_recon.preprocess.motion import MotionCorrection, smooth
from rt_recon.preprocess.rigid import move_origin, rigid_matrix
from rt_recon.preprocess.zscore import RunningZScore
from tests.preprocess import _trio

BASELINE = "plain scipy registration: Powell + affine_transform (baseline)"
#: OpenNFT's world is the template's shifted by these template voxels (test_motion_spm.py).
OPENNFT_SHIFT_VOXELS = np.array([1.0, 1.0, 4.0])


class PlainScipyRegistration:
    """The baseline: direct minimisation of the whole-volume SSD, no sampling, no Jacobian."""

    def __init__(self, reference: np.ndarray, reference_affine: np.ndarray, volume_affine):
        self.reference_affine, self.volume_affine = reference_affine, volume_affine
        self.target = smooth(reference, reference_affine, 5.0)
        self.params = np.zeros(6)

    def _to_voxel(self, params: np.ndarray) -> np.ndarray:
        return (
            np.linalg.inv(self.volume_affine)
            @ np.linalg.inv(rigid_matrix(params))
            @ self.reference_affine
        )

    def _resample(self, volume: np.ndarray, params: np.ndarray) -> np.ndarray:
        m = self._to_voxel(params)
        return ndimage.affine_transform(
            volume, m[:3, :3], offset=m[:3, 3], output_shape=self.target.shape, order=1
        )

    def update(self, volume: np.ndarray) -> np.ndarray:
        smoothed = smooth(volume, self.volume_affine, 5.0)
        scale = np.array([1.0, 1.0, 1.0, 0.02, 0.02, 0.02])  # mm and ~1 mm at 50 mm

        def cost(x: np.ndarray) -> float:
            return float(np.sum((self._resample(smoothed, x * scale) - self.target) ** 2))

        result = optimize.minimize(cost, np.zeros(6), method="Powell", options={"xtol": 1e-3})
        self.params = result.x * scale
        return self._resample(np.asarray(volume, dtype=np.float32), self.params)


def _time(step: Callable[[np.ndarray], object], volumes: np.ndarray, skip: int = 3) -> list[float]:
    out = []
    for volume in volumes:
        start = time.perf_counter()
        step(volume)
        out.append(time.perf_counter() - start)
    return out[skip:] if len(out) > skip + 1 else out


def _cold(mc: MotionCorrection) -> Callable[[np.ndarray], object]:
    def step(volume: np.ndarray) -> object:
        mc.reset()
        return mc.update(volume)

    return step


def _tracked(mc: MotionCorrection, step: Callable, params: list) -> Callable:
    def run(volume: np.ndarray) -> object:
        out = step(volume)
        params.append(mc.params.copy())
        return out

    return run


def _agreement(params: np.ndarray, spm: np.ndarray, template_affine: np.ndarray) -> str:
    ours = move_origin(params, template_affine[:3, :3] @ OPENNFT_SHIFT_VOXELS)
    ours = ours - ours[0]
    n = len(ours)
    r = [np.corrcoef(ours[:, k], spm[:n, k])[0, 1] for k in range(6)]
    diff = np.abs(ours - spm[:n]).max(axis=0)
    return " / ".join(f"{v:.3f}" for v in r) + f" | {diff[:3].max():.4f} | {diff[3:].max():.5f} |"


def _chain(template, template_affine, volume_affine, mask: np.ndarray | None) -> PreprocessChain:
    select = VoxelSelection.from_mask(mask) if mask is not None else None
    n = select.n_selected if select is not None else template.size
    return PreprocessChain(
        motion=MotionCorrection(template, template_affine, volume_affine=volume_affine),
        select=select,
        despike=SpikeDetector(n),
        detrend=OnlineDetrend(n, degree=2, n_confounds=6),
        zscore=RunningZScore(n),
    )


def run(n_volumes: int = 155, n_baseline: int = 6) -> dict:
    template, template_affine = _trio.read_template()
    volumes, volume_affine = _trio.read_run(limit=n_volumes)
    spm = _trio.spm_params()
    mask = template > 0.2 * template.max()
    rows, accuracy = [], []
    with threadpool_limits(1):
        plain = PlainScipyRegistration(template, template_affine, volume_affine)
        rows.append(Timing.of(BASELINE, _time(plain.update, volumes[:n_baseline], skip=1)))

        spm_like = MotionCorrection(
            template, template_affine, volume_affine=volume_affine, order=4, reslice_order=4
        )
        params: list = []
        name = "SPM settings, no speed-ups: B-spline 4 estimate + reslice, cold start"
        rows.append(Timing.of(name, _time(_tracked(spm_like, _cold(spm_like), params), volumes)))
        accuracy.append(f"| {name} | " + _agreement(np.array(params), spm, template_affine))

        ours = MotionCorrection(template, template_affine, volume_affine=volume_affine)
        params = []
        name = "ours: motion correction (estimate + trilinear reslice, whole volume)"
        rows.append(Timing.of(name, _time(_tracked(ours, ours.update, params), volumes)))
        accuracy.append(f"| {name} | " + _agreement(np.array(params), spm, template_affine))

        ours4 = MotionCorrection(
            template, template_affine, volume_affine=volume_affine, reslice_order=4
        )
        rows.append(
            Timing.of("ours: motion correction, B-spline 4 reslice", _time(ours4.update, volumes))
        )
        ours.reset()
        rows.append(Timing.of("ours: estimate only", _time(ours.estimate, volumes)))

        full = _chain(template, template_affine, volume_affine, None)
        rows.append(
            Timing.of(
                f"whole chain, every voxel ({template.size}): motion+despike+detrend+z-score",
                _time(full.update, volumes),
            )
        )
        masked = _chain(template, template_affine, volume_affine, mask)
        rows.append(
            Timing.of(
                f"whole chain, brain mask ({int(mask.sum())} voxels, only those resliced)",
                _time(masked.update, volumes),
            )
        )
    accuracy_table = "\n".join(
        [
            "| estimator | r (tx / ty / tz / pitch / roll / yaw) | max diff mm | max diff rad |",
            "|---|---|---|---|",
            *accuracy,
        ]
    )
    return {
        "volumes": len(volumes),
        "baseline_volumes": n_baseline,
        "machine": machine(),
        "rows": rows,
        "table": markdown_table(rows, BASELINE),
        "accuracy_table": accuracy_table,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--volumes", type=int, default=155)
    parser.add_argument("--baseline-volumes", type=int, default=6)
    parser.add_argument("--json", help="write the results as JSON here")
    args = parser.parse_args()
    if not (_trio.TRIO_RUN / "spm_realign_rt_params.mat").is_file():
        raise SystemExit(f"needs the shared data: {_trio.TRIO_RUN} not found")
    result = run(args.volumes, args.baseline_volumes)
    print(
        f"Preprocessing per TR, Siemens Trio run 74x74x36, {result['volumes']} volumes "
        f"(baseline: {result['baseline_volumes']}), 1 BLAS thread; {result['machine']}"
    )
    print(result["table"])
    print()
    print("Agreement with SPM real-time realignment (OpenNFT), relative to volume 1:")
    print(result["accuracy_table"])
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
