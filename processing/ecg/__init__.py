"""ECG processing: filters, batch and streaming R-peak detection.

Role: the public ECG API of ``processing`` (pure numpy/scipy).
Must not: do I/O or import ``gateway`` or ``devices``.
"""

from processing.ecg.filters import notch_powerline, qrs_bandpass, remove_baseline
from processing.ecg.peaks import EcgInputError, detect_r_peaks
from processing.ecg.stream import (
    PeakBatch,
    RPeakState,
    RPeakStream,
    r_peak_flush,
    r_peak_step,
)

__all__ = [
    "EcgInputError",
    "PeakBatch",
    "RPeakState",
    "RPeakStream",
    "detect_r_peaks",
    "notch_powerline",
    "qrs_bandpass",
    "r_peak_flush",
    "r_peak_step",
    "remove_baseline",
]
