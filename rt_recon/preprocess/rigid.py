"""Rigid-body transforms in SPM's six-parameter convention (world coordinates, mm and radians).

The parameters are ``(tx, ty, tz, pitch, roll, yaw)``: translations in mm along
the world x, y, z axes, then rotations in radians about the world x (pitch),
y (roll) and z (yaw) axes through the world origin. The matrix is
``T @ Rx(pitch) @ Ry(roll) @ Rz(yaw)`` with SPM's sign convention for the
elementary rotations (Friston et al., 1995, "Spatial registration and
normalization of images", Hum. Brain Mapp. 3:165-189; the ``spm_matrix``
definition documented in SPM)::

    Rx = [[1, 0, 0], [0, c, s], [0, -s, c]]
    Ry = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    Rz = [[c, s, 0], [-s, c, 0], [0, 0, 1]]
"""

from __future__ import annotations

import numpy as np


def rigid_matrix(params: np.ndarray) -> np.ndarray:
    """``(6,)`` parameters (mm, mm, mm, rad, rad, rad) -> ``(4, 4)`` float64 affine."""
    tx, ty, tz, pitch, roll, yaw = (float(p) for p in params)
    c1, s1 = np.cos(pitch), np.sin(pitch)
    c2, s2 = np.cos(roll), np.sin(roll)
    c3, s3 = np.cos(yaw), np.sin(yaw)
    rx = np.array([[1, 0, 0], [0, c1, s1], [0, -s1, c1]])
    ry = np.array([[c2, 0, s2], [0, 1, 0], [-s2, 0, c2]])
    rz = np.array([[c3, s3, 0], [-s3, c3, 0], [0, 0, 1]])
    out = np.eye(4)
    out[:3, :3] = rx @ ry @ rz
    out[:3, 3] = (tx, ty, tz)
    return out


def rigid_params(matrix: np.ndarray) -> np.ndarray:
    """``(4, 4)`` rigid affine -> ``(6,)`` parameters; inverse of :func:`rigid_matrix`.

    Expanding ``Rx @ Ry @ Rz`` gives ``R[0, 2] = sin(roll)``,
    ``R[0, :2] = cos(roll) * (cos(yaw), sin(yaw))`` and
    ``R[1:, 2] = cos(roll) * (sin(pitch), cos(pitch))``, so the angles are read
    off directly (roll in [-pi/2, pi/2], the branch SPM reports).
    """
    r = np.asarray(matrix, dtype=np.float64)[:3, :3]
    roll = np.arcsin(np.clip(r[0, 2], -1.0, 1.0))
    yaw = np.arctan2(r[0, 1], r[0, 0])
    pitch = np.arctan2(r[1, 2], r[2, 2])
    return np.array([*np.asarray(matrix, dtype=np.float64)[:3, 3], pitch, roll, yaw])


def rigid_jacobian(points: np.ndarray) -> np.ndarray:
    """Displacement of world ``points (n, 3)`` mm per unit parameter at zero: ``(n, 3, 6)``.

    Columns 0-2 are the unit translations; columns 3-5 the derivatives of
    ``Rx``, ``Ry``, ``Rz`` at angle 0 applied to the point:
    ``(0, z, -y)``, ``(z, 0, -x)``, ``(y, -x, 0)``.
    """
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    out = np.zeros((len(points), 3, 6))
    out[:, 0, 0] = out[:, 1, 1] = out[:, 2, 2] = 1.0
    out[:, 1, 3], out[:, 2, 3] = z, -y
    out[:, 0, 4], out[:, 2, 4] = z, -x
    out[:, 0, 5], out[:, 1, 5] = y, -x
    return out


def move_origin(params: np.ndarray, shift_mm: np.ndarray) -> np.ndarray:
    """Re-express ``(6,)`` or ``(n, 6)`` parameters in a world whose points are ``w + shift_mm``.

    The same physical motion ``Q`` reads ``T(s) @ Q @ T(-s)`` there: the
    rotations are unchanged and the translations become ``t + (I - R) s``.
    Rotation parameters are about the world origin, so two programs whose
    worlds differ by a shift report different translations for one motion.
    """
    params = np.asarray(params, dtype=np.float64)
    shift = np.eye(4)
    shift[:3, 3] = shift_mm
    back = np.eye(4)
    back[:3, 3] = -np.asarray(shift_mm, dtype=np.float64)
    rows = np.atleast_2d(params)
    out = np.array([rigid_params(shift @ rigid_matrix(p) @ back) for p in rows])
    return out.reshape(params.shape)
