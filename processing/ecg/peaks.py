"""Batch R-peak detection for single-lead ECG at any sample rate from 125 to 1000 Hz.

Role: the whole-array entry point and the ECG input contract (:class:`EcgInputError`, the
accepted rates, validation). :func:`detect_r_peaks` is one pass of the streaming detector
of :mod:`processing.ecg.stream` over the whole array, so batch and streaming peaks are the
same by construction.
Must not: do I/O, import ``gateway`` or ``devices``, log signal values, or loop per sample
in Python.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from processing.ecg.filters import FloatArray
from processing.errors import SignalInputError, check_rate, samples_1d

IndexArray = npt.NDArray[np.int64]

MIN_FS_HZ = 125.0
MAX_FS_HZ = 1000.0


class EcgInputError(SignalInputError):
    """ECG input the detector cannot use; ``reason`` is a short tag (``"fs_range"``,
    ``"not_1d"``, ``"not_finite"``). Signal values are never put in the message."""

    signal = "ecg"


def validate_fs(fs_hz: float) -> float:
    """``fs_hz`` as a float, or :class:`EcgInputError` ``fs_range`` outside 125-1000 Hz."""
    return check_rate(fs_hz, low=MIN_FS_HZ, high=MAX_FS_HZ, error=EcgInputError)


def validate_ecg(ecg: npt.ArrayLike) -> FloatArray:
    """``ecg`` as a float64 array, or :class:`EcgInputError` ``not_1d`` / ``not_finite``."""
    return samples_1d(ecg, error=EcgInputError)


def detect_r_peaks(ecg: npt.ArrayLike, *, fs_hz: float) -> IndexArray:
    """Sample indices (int64, sorted, unique) of the R peaks in a single-lead ECG.

    ``fs_hz`` must be within 125-1000 Hz; the signal may be in any unit and carry
    baseline wander, noise and amplitude changes. Signals shorter than half a second give
    no beats. Raises :class:`EcgInputError` for a wrong rate, shape or non-finite samples.
    The result is exactly what :func:`processing.ecg.stream.r_peak_step` and
    :func:`~processing.ecg.stream.r_peak_flush` report for the same signal in any chunking.
    """
    # imported here: the streaming module imports this module's input contract
    from processing.ecg.stream import RPeakState, r_peak_flush, r_peak_step

    fs = validate_fs(fs_hz)
    x = validate_ecg(ecg)
    batch, state = r_peak_step(RPeakState.initial(fs_hz=fs), x)
    return np.concatenate((batch.indices, r_peak_flush(state).indices))
