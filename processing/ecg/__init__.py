"""ECG processing: filters and batch R-peak detection.

Role: the public ECG API of ``processing`` (pure numpy/scipy).
Must not: do I/O or import ``gateway`` or ``devices``.
"""

from processing.ecg.filters import notch_powerline, qrs_bandpass, remove_baseline
from processing.ecg.peaks import EcgInputError, detect_r_peaks

__all__ = [
    "EcgInputError",
    "detect_r_peaks",
    "notch_powerline",
    "qrs_bandpass",
    "remove_baseline",
]
