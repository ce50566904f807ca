"""Input checks shared by the preprocessing stages: shape and finiteness of one input."""

from __future__ import annotations

import numpy as np

from rt_recon.errors import DataError, ShapeMismatchError


def check_volume(
    values: np.ndarray, expected: tuple[int, ...], stage: str, what: str = "a volume"
) -> np.ndarray:
    """Return ``values`` as an array after checking its shape and that every value is finite.

    ``what`` names the input in the messages (``"a volume"``, ``"motion parameters"``).

    Raises:
        ShapeMismatchError: the shape is not ``expected`` (both are named).
        DataError: ``values`` hold NaN or Inf (their count is named).
    """
    values = np.asarray(values)
    if values.shape != tuple(expected):
        raise ShapeMismatchError(
            f"{stage}.update() expected {what} of shape {tuple(expected)}, found {values.shape}"
        )
    if not np.isfinite(values).all():
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        raise DataError(
            f"{stage}.update() found {bad} NaN/Inf values in {what} of {values.size}: expected "
            "finite values (fix or drop the volume upstream)"
        )
    return values


def check_confounds(values: np.ndarray | None, n: int, stage: str) -> np.ndarray:
    """``(n,)`` finite float64 confounds (``None`` is allowed only when ``n == 0``)."""
    if values is None:
        if n:
            raise ShapeMismatchError(f"{stage}.update() expected {n} confounds, found none")
        return np.zeros(0)
    return check_volume(np.asarray(values, dtype=np.float64), (n,), stage, "confounds")
