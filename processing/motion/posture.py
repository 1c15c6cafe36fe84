"""Body posture from a chest accelerometer's gravity vector, plus the motion input checks.

Role: the ``Posture`` codes (stored as ``VitalKind.POSTURE`` values), the gravity low-pass
(streamable SOS), tilt-based posture classification and the validation shared by the
motion modules (``MotionInputError``).

Garment axes (body frame, sensor on the sternum): ``x`` toward the wearer's left, ``y``
toward the head, ``z`` out of the chest; at rest the reading is the reaction to gravity,
+1000 mG pointing away from the ground: upright (0, +1000, 0), supine (0, 0, +1000), prone
(0, 0, −1000), lying on the left side (−1000, 0, 0), on the right side (+1000, 0, 0).

Must not: do I/O, import ``gateway`` or ``devices``, or loop per sample in Python.
"""

from __future__ import annotations

import enum
import math
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy import signal

from processing.errors import SignalInputError, check_rate, float_array, require_finite

__all__ = [
    "GRAVITY_CUTOFF_HZ",
    "UPRIGHT_MAX_TILT_DEG",
    "MotionInputError",
    "Posture",
    "classify_posture",
    "estimate_gravity",
]

FloatArray = npt.NDArray[np.float64]
CodeArray = npt.NDArray[np.int8]

MIN_FS_HZ = 12.5
MAX_FS_HZ = 1000.0
GRAVITY_CUTOFF_HZ = 0.25
UPRIGHT_MAX_TILT_DEG = 60.0
"""Trunk inclination from vertical above which the wearer counts as lying."""


class Posture(enum.IntEnum):
    """Posture codes; the value is what ``VitalKind.POSTURE`` stores."""

    UPRIGHT = 0
    SUPINE = 1
    PRONE = 2
    LEFT = 3
    RIGHT = 4


class MotionInputError(SignalInputError):
    """Accelerometer input the motion processor cannot use; ``reason`` is a short tag
    (``"fs_range"``, ``"fs_mismatch"``, ``"bad_shape"``, ``"not_finite"``,
    ``"not_numeric"``). Signal values are never put in the message."""

    signal = "motion"


def check_fs(fs_hz: float) -> float:
    """``fs_hz`` as a float, or :class:`MotionInputError` when outside 12.5-1000 Hz."""
    return check_rate(fs_hz, low=MIN_FS_HZ, high=MAX_FS_HZ, error=MotionInputError)


def validate_acc(acc_mg: npt.ArrayLike) -> FloatArray:
    """An ``(n, 3)`` float array of finite mG samples, or :class:`MotionInputError`."""
    a = float_array(acc_mg, error=MotionInputError)
    if a.ndim != 2 or a.shape[1] != 3:
        raise MotionInputError("bad_shape", f"need (n, 3), got {a.shape}")
    require_finite(a, error=MotionInputError)
    return a


@lru_cache(maxsize=32)
def gravity_sos(fs_hz: float) -> FloatArray:
    """2nd-order Butterworth low-pass at ``GRAVITY_CUTOFF_HZ``: the gravity component."""
    sos: FloatArray = np.asarray(
        signal.butter(2, GRAVITY_CUTOFF_HZ, fs=fs_hz, output="sos"), dtype=np.float64
    )
    sos.setflags(write=False)
    return sos


def gravity_step(
    acc: FloatArray, zi: FloatArray | None, *, fs_hz: float
) -> tuple[FloatArray, FloatArray]:
    """Causal gravity estimate of ``acc`` (n, 3) continuing from ``zi`` (``None``: start
    settled on the first sample); returns the estimate and the new filter state."""
    sos = gravity_sos(fs_hz)
    if zi is None:
        zi = signal.sosfilt_zi(sos)[:, :, None] * acc[0][None, None, :]
    g, zf = signal.sosfilt(sos.copy(), acc, axis=0, zi=zi)
    return np.asarray(g, dtype=np.float64), np.asarray(zf, dtype=np.float64)


def estimate_gravity(acc_mg: npt.ArrayLike, *, fs_hz: float) -> FloatArray:
    """Batch gravity estimate (n, 3) mG: the causal low-pass the stream uses."""
    a = validate_acc(acc_mg)
    if a.shape[0] == 0:
        return a.copy()
    return gravity_step(a, None, fs_hz=check_fs(fs_hz))[0]


def _karantonis_tilt_posture(g: FloatArray) -> CodeArray:
    """Posture from the gravity direction: upright while the trunk's inclination from
    vertical (the angle between ``g`` and +y) is at most ``UPRIGHT_MAX_TILT_DEG``, else
    lying, on the side whose axis gravity is closest to (the larger of ±z, ±x).

    After Karantonis et al., "Implementation of a real-time human movement classifier using
    a triaxial accelerometer for ambulatory monitoring", IEEE Trans. Inf. Technol. Biomed.
    10(1):156-167, 2006 (low-passed gravity component, tilt-angle posture classes); the
    60° boundary and the four lying classes are this module's choice.
    """
    norm = np.linalg.norm(g, axis=1)
    safe = np.where(norm > 0, norm, 1.0)
    cos_tilt = g[:, 1] / safe
    upright = (cos_tilt >= math.cos(math.radians(UPRIGHT_MAX_TILT_DEG))) & (norm > 0)
    # lying: compare the components on the four lying axes (+z, -z, -x, +x)
    lying = np.stack((g[:, 2], -g[:, 2], -g[:, 0], g[:, 0]), axis=1)
    side = np.argmax(lying, axis=1).astype(np.int8) + np.int8(Posture.SUPINE)
    return np.where(upright, np.int8(Posture.UPRIGHT), side).astype(np.int8)


def classify_posture(gravity_mg: npt.ArrayLike) -> CodeArray:
    """Posture codes (``Posture`` values, int8) for gravity vectors in mG: ``(n, 3)`` gives
    ``(n,)``, a single ``(3,)`` vector gives a 0-d array. Pass the low-passed gravity
    (:func:`estimate_gravity`), not raw samples, for a stable result during movement."""
    g = np.asarray(gravity_mg, dtype=np.float64)
    if g.shape[-1:] != (3,) or g.ndim > 2:
        raise MotionInputError("bad_shape", f"need (3,) or (n, 3), got {g.shape}")
    require_finite(g, error=MotionInputError)
    codes = _karantonis_tilt_posture(g.reshape(-1, 3))
    return codes.reshape(g.shape[:-1])
