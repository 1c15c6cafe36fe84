"""ECG filters: baseline removal, powerline notch and the QRS-emphasis band-pass.

Role: zero-phase SOS filtering of whole ECG arrays, and the filter designs (cached per
sample rate, also used causally by the streaming detector) so repeated calls cost only the
filtering.
Must not: do I/O, import ``gateway`` or ``devices``, or keep any state between calls other
than the read-only design cache.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy import signal

FloatArray = npt.NDArray[np.float64]

QRS_BAND_HZ = (5.0, 15.0)
BASELINE_CUTOFF_HZ = 0.5


@lru_cache(maxsize=64)
def bandpass_sos(fs_hz: float, low_hz: float, high_hz: float, order: int) -> FloatArray:
    """Butterworth band-pass design (SOS, read-only, cached per rate), shared with the
    causal filters of :mod:`processing.ecg.stream`."""
    sos: FloatArray = np.asarray(
        signal.butter(order, (low_hz, high_hz), btype="bandpass", fs=fs_hz, output="sos"),
        dtype=np.float64,
    )
    sos.setflags(write=False)
    return sos


@lru_cache(maxsize=64)
def highpass_sos(fs_hz: float, cutoff_hz: float, order: int) -> FloatArray:
    """Butterworth high-pass design (SOS, read-only, cached per rate), shared with the
    causal filters of :mod:`processing.ecg.stream`."""
    sos: FloatArray = np.asarray(
        signal.butter(order, cutoff_hz, btype="highpass", fs=fs_hz, output="sos"),
        dtype=np.float64,
    )
    sos.setflags(write=False)
    return sos


@lru_cache(maxsize=64)
def _notch_sos(fs_hz: float, mains_hz: float, quality: float) -> FloatArray:
    b, a = signal.iirnotch(mains_hz, quality, fs=fs_hz)
    sos: FloatArray = np.asarray(signal.tf2sos(b, a), dtype=np.float64)
    sos.setflags(write=False)
    return sos


def _filtfilt(sos: FloatArray, x: FloatArray) -> FloatArray:
    """Zero-phase SOS filtering; signals shorter than the default padding use a shorter pad."""
    padlen = min(3 * (2 * sos.shape[0] + 1), x.shape[0] - 1)
    y: FloatArray = np.asarray(signal.sosfiltfilt(sos.copy(), x, padlen=max(padlen, 0)))
    return y


def remove_baseline(ecg: npt.ArrayLike, *, fs_hz: float) -> FloatArray:
    """Remove baseline wander with a zero-phase 0.5 Hz Butterworth high-pass (order 2)."""
    x = np.asarray(ecg, dtype=np.float64)
    return _filtfilt(highpass_sos(float(fs_hz), BASELINE_CUTOFF_HZ, 2), x)


def notch_powerline(
    ecg: npt.ArrayLike, *, fs_hz: float, mains_hz: float = 50.0, quality: float = 30.0
) -> FloatArray:
    """Zero-phase IIR notch at ``mains_hz`` (50 or 60 Hz); a no-op copy when the mains
    frequency is at or above Nyquist."""
    x = np.asarray(ecg, dtype=np.float64)
    if mains_hz >= fs_hz / 2:
        return x.copy()
    return _filtfilt(_notch_sos(float(fs_hz), float(mains_hz), float(quality)), x)


def qrs_bandpass(
    ecg: npt.ArrayLike, *, fs_hz: float, band_hz: tuple[float, float] = QRS_BAND_HZ
) -> FloatArray:
    """Zero-phase 5-15 Hz Butterworth band-pass (order 2 each way): keeps the QRS energy,
    rejects baseline wander, most of the P and T waves, EMG and powerline interference
    (Pan & Tompkins, IEEE Trans. Biomed. Eng. 32(3):230-236, 1985)."""
    x = np.asarray(ecg, dtype=np.float64)
    low, high = band_hz
    return _filtfilt(bandpass_sos(float(fs_hz), low, high, 2), x)
