"""Per-TR preprocessing stages: pure stateful objects, ``update(array) -> array``, no I/O.

The API: :class:`PreprocessSpec` (which stages run, with which settings; JSON
in a decoder bundle) builds a :class:`PreprocessChain` (motion -> voxel
selection -> despike -> detrend -> z-score), which reports a
:class:`TrQuality` per TR. The stages themselves live in their own modules
(``motion``, ``mask``, ``despike``, ``detrend``, ``highpass``, ``zscore``, ``fd``).
:class:`QualityMonitor` measures a run's data quality per TR (tSNR per ROI, global signal,
DVARS, volume outliers) on the chain's realigned voxels.
"""

from rt_recon.preprocess.chain import PreprocessChain, TrQuality
from rt_recon.preprocess.quality import QualityMeasures, QualityMonitor
from rt_recon.preprocess.spec import DespikeSpec, GlmSpec, HighpassSpec, MotionSpec, PreprocessSpec

__all__ = [
    "DespikeSpec",
    "GlmSpec",
    "HighpassSpec",
    "MotionSpec",
    "PreprocessChain",
    "PreprocessSpec",
    "QualityMeasures",
    "QualityMonitor",
    "TrQuality",
]
