"""Accelerometer processing: posture, activity (ENMO), steps and cadence, falls, streaming.

Role: the public motion API of ``processing`` (pure numpy/scipy): the batch helpers
:func:`classify_posture`, :func:`estimate_gravity`, :func:`enmo_mg`, :func:`step_cadence`,
:func:`detect_falls` and the streaming :func:`motion_step` with its :class:`MotionState`.
Samples are ``(n, 3)`` mG on the garment's axes: x left, y head, z anterior.
Must not: do I/O or import ``gateway`` or ``devices``.
"""

from processing.motion.activity import StepCadence, enmo_mg, step_cadence
from processing.motion.falls import detect_falls
from processing.motion.posture import MotionInputError, Posture, classify_posture, estimate_gravity
from processing.motion.stream import MotionState, motion_step

__all__ = [
    "MotionInputError",
    "MotionState",
    "Posture",
    "StepCadence",
    "classify_posture",
    "detect_falls",
    "enmo_mg",
    "estimate_gravity",
    "motion_step",
    "step_cadence",
]
