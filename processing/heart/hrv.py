"""Heart rate variability of an NN interval series: time domain and the LF/HF ratio.

Role: SDNN, RMSSD and pNN50 (Task Force of the ESC and NASPE, "Heart rate variability:
standards of measurement, physiological interpretation and clinical use", Circulation
93(5):1043-1065, 1996) and the LF/HF power ratio from a 4 Hz cubic-spline resampling of the
NN series and Welch's periodogram, for series at least 250 s long (ten periods of the LF band's
lower edge, as the Task Force asks); pass artefact-corrected intervals (``processing.heart.rr``).
Must not: do I/O, import ``gateway`` or ``devices``, or correct artefacts itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import interpolate, signal

FloatArray = npt.NDArray[np.float64]

__all__ = [
    "HF_BAND_HZ",
    "LF_BAND_HZ",
    "MIN_LF_HF_DURATION_S",
    "TimeDomainHRV",
    "hrv_time_domain",
    "lf_hf",
    "mean_hr_bpm",
]

LF_BAND_HZ = (0.04, 0.15)
HF_BAND_HZ = (0.15, 0.40)
MIN_LF_HF_DURATION_S = 250.0
RESAMPLE_HZ = 4.0
WELCH_SEGMENT_S = 256.0
_GAP_FRACTION = 0.5  # an interval starting this fraction of itself after the last one ended


@dataclass(frozen=True, slots=True)
class TimeDomainHRV:
    """``sdnn_ms`` (sample SD, n - 1), ``rmssd_ms`` and ``pnn50_pct`` over ``n_intervals``
    NN intervals and ``n_differences`` successive differences (``nan`` when too few)."""

    sdnn_ms: float
    rmssd_ms: float
    pnn50_pct: float
    n_intervals: int
    n_differences: int


def _successive_differences(rr: FloatArray, end_s: FloatArray | None) -> FloatArray:
    """Differences of consecutive NN intervals; with end times, pairs separated by a gap in
    the series (an unusable stretch) are left out."""
    d = np.diff(rr)
    if end_s is None or rr.size < 2:
        return d
    start_next = end_s[1:] - rr[1:] / 1000.0
    contiguous = np.abs(start_next - end_s[:-1]) <= _GAP_FRACTION * rr[1:] / 1000.0
    return d[contiguous]


def hrv_time_domain(rr_ms: npt.ArrayLike, *, end_s: npt.ArrayLike | None = None) -> TimeDomainHRV:
    """SDNN, RMSSD and pNN50 (percentage of successive differences over 50 ms, of all
    successive differences) of NN intervals in ms. ``end_s`` (each interval's end time, s)
    lets differences across gaps be excluded."""
    rr = np.asarray(rr_ms, dtype=np.float64).ravel()
    ends = None if end_s is None else np.asarray(end_s, dtype=np.float64).ravel()
    d = _successive_differences(rr, ends)
    sdnn = float(np.std(rr, ddof=1)) if rr.size >= 2 else math.nan
    rmssd = float(np.sqrt(np.mean(d * d))) if d.size else math.nan
    pnn50 = float(100.0 * np.count_nonzero(np.abs(d) > 50.0) / d.size) if d.size else math.nan
    return TimeDomainHRV(sdnn, rmssd, pnn50, int(rr.size), int(d.size))


def mean_hr_bpm(rr_ms: npt.ArrayLike) -> float:
    """Mean heart rate: beats per minute over the summed intervals (``nan`` when empty)."""
    rr = np.asarray(rr_ms, dtype=np.float64)
    total = float(np.sum(rr))
    return 60000.0 * rr.size / total if total > 0 else math.nan


def _band_power(freqs: FloatArray, psd: FloatArray, band: tuple[float, float]) -> float:
    sel = (freqs >= band[0]) & (freqs < band[1])
    df = float(freqs[1] - freqs[0])
    return float(np.sum(psd[sel]) * df)


def _welch_spline_psd(t_s: FloatArray, rr: FloatArray) -> tuple[FloatArray, FloatArray]:
    """PSD of the NN series: cubic spline through (beat time, NN) resampled at 4 Hz, linear
    detrend, Welch periodogram with 256 s Hann segments and 50 % overlap (the Kubios HRV
    defaults; Tarvainen et al., Comput Methods Programs Biomed 113(1):210-220, 2014)."""
    spline = interpolate.CubicSpline(t_s, rr)
    grid = np.arange(t_s[0], t_s[-1], 1.0 / RESAMPLE_HZ)
    y = np.asarray(spline(grid), dtype=np.float64)
    nperseg = min(y.size, round(WELCH_SEGMENT_S * RESAMPLE_HZ))
    freqs, psd = signal.welch(
        y, fs=RESAMPLE_HZ, window="hann", nperseg=nperseg, noverlap=nperseg // 2, detrend="linear"
    )
    return np.asarray(freqs, dtype=np.float64), np.asarray(psd, dtype=np.float64)


def lf_hf(rr_ms: npt.ArrayLike, *, end_s: npt.ArrayLike | None = None) -> float | None:
    """LF (0.04-0.15 Hz) over HF (0.15-0.4 Hz) power of NN intervals in ms, or ``None`` when
    the series spans less than 250 s, has fewer than 3 intervals or no HF power. ``end_s``
    gives each interval's end time (default: the cumulative sum)."""
    rr = np.asarray(rr_ms, dtype=np.float64).ravel()
    if rr.size < 3 or float(np.sum(rr)) / 1000.0 < MIN_LF_HF_DURATION_S:
        return None
    t = np.cumsum(rr) / 1000.0 if end_s is None else np.asarray(end_s, dtype=np.float64).ravel()
    keep = np.concatenate(([True], np.diff(t) > 0))
    t, rr = t[keep], rr[keep]
    if t.size < 4 or t[-1] - t[0] < MIN_LF_HF_DURATION_S - 5.0:
        return None
    freqs, psd = _welch_spline_psd(t, rr)
    hf = _band_power(freqs, psd, HF_BAND_HZ)
    if not hf > 0:
        return None
    return _band_power(freqs, psd, LF_BAND_HZ) / hf
