"""Writing arrays to safetensors without scrambling them.

``safetensors.numpy.save_file`` writes an array's memory as it lies, and
reads it back as C-ordered: a Fortran-ordered or strided array (a volume
reshaped with ``order="F"``, a transposed view) comes back scrambled, with no
error. Every array rt_recon writes goes through :func:`save_arrays`, which
makes each one C-contiguous first.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file


def save_arrays(
    arrays: Mapping[str, np.ndarray], path: str | Path, metadata: dict[str, str] | None = None
) -> None:
    save_file(
        {name: np.ascontiguousarray(array) for name, array in arrays.items()},
        str(path),
        metadata=metadata,
    )
