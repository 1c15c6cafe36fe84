"""ECG-derived respiration (EDR): breathing rate from R-peak times and R amplitudes.

Role: ``edr_step`` takes the beats a (streaming) R-peak detector has decided, with their R
amplitudes, and reports ``VitalKind.RESP_RATE_EDR`` per window ``[30 k, 30 (k+1))`` s of
the ECG stream's timeline, once beats up to ``EDR_DELAY_S`` after the window's end are
decided. Two respiratory modulations of the ECG are used (Charlton et al., "An assessment
of algorithms to estimate respiratory rate from the electrocardiogram and
photoplethysmogram", Physiol. Meas. 37(4):610-626, 2016, the review this follows):

* frequency modulation, respiratory sinus arrhythmia: the RR-interval series;
* amplitude modulation: the R amplitude series (Moody et al., "Derivation of respiratory
  signals from multi-lead ECGs", Computers in Cardiology 12:113-116, 1985).

Each series (beats with implausible RR, e.g. ectopic beats, dropped) is resampled at 4 Hz
by a cubic spline, band-passed 0.08-0.75 Hz (zero phase, SOS), and its breaths counted in
the window with the advanced counting method (Schäfer & Kratky, Ann. Biomed. Eng.
36(3):476-485, 2008); rate = 60 / mean peak-to-peak interval. The two estimates are
fused as in Karlen et al.'s smart fusion (IEEE TBME 60(7):1946-1953, 2013), restricted to
clean modulations (spectral purity: the share of the band's power near the counted rate):
their purity-weighted mean when both are clean and agree within 2 breaths/min, else the
RSA estimate unless the amplitude one is clearly purer; ``quality`` is 100 x the purity.
Must not: do I/O, import ``gateway`` or ``devices``, log signal values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy import interpolate, signal

from processing.findings import Findings, Vital, VitalKind
from processing.respiration.breaths import FloatArray, RespInputError

__all__ = ["EDR_DELAY_S", "EdrEstimate", "EdrState", "edr_rate", "edr_step"]

WINDOW_S = 30.0
EDR_DELAY_S = 3.0
"""A window is reported once the beats are decided this long after its end."""
_LEAD_S = 15.0
_RESAMPLE_HZ = 4.0
_BAND_HZ = (0.08, 0.75)
_COUNT_ADV_FRACTION = 0.1
_FUSION_BPM = 2.0
_PURITY_MARGIN = 0.2
_CLEAN_PURITY = 0.5
_PURITY_HALF_WIDTH_HZ = 0.05
_RR_RANGE_S = (0.25, 2.5)
_RR_RELATIVE = 0.3


@dataclass(frozen=True, slots=True)
class EdrState:
    """Recent beats (times s, R amplitudes) and the next window to report."""

    beats_s: FloatArray
    amplitudes: FloatArray
    now_s: float
    next_window: int

    @classmethod
    def initial(cls) -> EdrState:
        return cls(np.empty(0), np.empty(0), 0.0, 0)


@dataclass(frozen=True, slots=True)
class EdrEstimate:
    """One window's estimate: the fused rate (NaN if none) and each modulation's."""

    rate_bpm: float
    quality: int
    rsa_bpm: float
    amplitude_bpm: float


@lru_cache(maxsize=4)
def _band_sos() -> FloatArray:
    return np.asarray(
        signal.butter(2, _BAND_HZ, "bandpass", fs=_RESAMPLE_HZ, output="sos"), dtype=np.float64
    )


def _count_adv(x: FloatArray, fs_hz: float) -> float:
    """Breathing rate (breaths/min) by advanced counting.

    Schäfer & Kratky 2008: take all local maxima and minima; repeatedly remove the pair of
    consecutive extrema with the smallest vertical distance while it is below 0.1 x the
    third quartile of all such distances; each remaining peak-to-peak interval is a breath.
    """
    interior = np.diff(np.sign(np.diff(x)))
    ext = np.flatnonzero(interior != 0) + 1
    if ext.size < 4:
        return math.nan
    idx = ext.tolist()
    values = x[ext].tolist()
    threshold = _COUNT_ADV_FRACTION * float(np.percentile(np.abs(np.diff(x[ext])), 75))
    while len(values) > 3:
        d = np.abs(np.diff(values))
        i = int(np.argmin(d))
        if d[i] >= threshold:
            break
        del idx[i : i + 2], values[i : i + 2]
    arr_i = np.asarray(idx)
    arr_v = np.asarray(values)
    peaks = arr_i[1:-1][(arr_v[1:-1] > arr_v[:-2]) & (arr_v[1:-1] > arr_v[2:])]
    if peaks.size < 2:
        return math.nan
    return 60.0 * fs_hz / float(np.mean(np.diff(peaks)))


def _spectral_purity(x: FloatArray, rate_bpm: float) -> float:
    """Share of the breathing band's power (Hann-windowed periodogram) within 0.05 Hz of
    the counted rate: near 1 for a clean respiratory modulation, low for noise."""
    n = 2048
    power = np.abs(np.fft.rfft(x * np.hanning(x.size), n)) ** 2
    freq = np.fft.rfftfreq(n, 1.0 / _RESAMPLE_HZ)
    band = (freq >= _BAND_HZ[0]) & (freq <= _BAND_HZ[1])
    near = band & (np.abs(freq - rate_bpm / 60.0) <= _PURITY_HALF_WIDTH_HZ)
    total = float(np.sum(power[band]))
    return float(np.sum(power[near])) / total if total > 0 else 0.0


def _series(beats_s: FloatArray, amplitudes: FloatArray) -> tuple[FloatArray, ...]:
    """RR and amplitude series at each beat, beats with implausible RR dropped."""
    rr = np.diff(beats_s)
    t = beats_s[1:]
    amp = amplitudes[1:]
    ok = (rr > _RR_RANGE_S[0]) & (rr < _RR_RANGE_S[1])
    if np.count_nonzero(ok) > 4:
        median = float(np.median(rr[ok]))
        ok &= np.abs(rr - median) < _RR_RELATIVE * median
        ok[1:] &= ok[:-1]  # the beat after an ectopic one has a compensatory interval
    return t[ok], rr[ok], amp[ok]


def edr_rate(
    beats_s: npt.ArrayLike, amplitudes: npt.ArrayLike, *, start_s: float, end_s: float
) -> EdrEstimate:
    """EDR rate over ``[start_s, end_s)`` from beats around it (batch; the stream uses it).

    Pass beats from at least 15 s before ``start_s`` to 3 s after ``end_s`` so the filter
    edges fall outside the window.
    """
    t, rr, amp = _series(np.asarray(beats_s, np.float64), np.asarray(amplitudes, np.float64))
    if t.size < 8:
        return EdrEstimate(math.nan, 0, math.nan, math.nan)
    grid = np.arange(math.ceil(t[0] * _RESAMPLE_HZ), math.floor(t[-1] * _RESAMPLE_HZ) + 1)
    grid = grid / _RESAMPLE_HZ
    inside = (grid >= start_s) & (grid < end_s)
    if grid.size < 32 or np.count_nonzero(inside) < 0.8 * (end_s - start_s) * _RESAMPLE_HZ:
        return EdrEstimate(math.nan, 0, math.nan, math.nan)
    estimates = []
    for series in (rr, amp):
        resampled = interpolate.CubicSpline(t, series)(grid)
        filtered = signal.sosfiltfilt(_band_sos(), resampled - np.mean(resampled))
        window = np.asarray(filtered[inside])
        rate = _count_adv(window, _RESAMPLE_HZ)
        purity = _spectral_purity(window, rate) if math.isfinite(rate) else 0.0
        estimates.append((rate, purity))
    return _smart_fusion(estimates[0], estimates[1])


def _smart_fusion(rsa: tuple[float, float], amplitude: tuple[float, float]) -> EdrEstimate:
    """Karlen et al. 2013 smart fusion, restricted to clean modulations.

    Both clean (spectral purity >= 0.5) and within 2 breaths/min: their purity-weighted
    mean. Otherwise one estimate: the RSA one (respiratory sinus arrhythmia is the more
    dependable modulation at rest), unless it is missing or the amplitude series is
    clearly purer (by 0.2). ``quality`` is 100 x the purity of what is reported.
    """
    (r_rate, r_purity), (a_rate, a_purity) = rsa, amplitude
    r_ok, a_ok = math.isfinite(r_rate), math.isfinite(a_rate)
    clean = r_ok and a_ok and min(r_purity, a_purity) >= _CLEAN_PURITY
    if clean and abs(r_rate - a_rate) <= _FUSION_BPM:
        mean = (r_rate * r_purity + a_rate * a_purity) / (r_purity + a_purity)
        return EdrEstimate(mean, round(100 * max(r_purity, a_purity)), r_rate, a_rate)
    if a_ok and (not r_ok or a_purity > r_purity + _PURITY_MARGIN):
        return EdrEstimate(a_rate, round(100 * a_purity), r_rate, a_rate)
    if r_ok:
        return EdrEstimate(r_rate, round(100 * r_purity), r_rate, a_rate)
    return EdrEstimate(math.nan, 0, r_rate, a_rate)


def _check(
    beats_s: npt.ArrayLike, amplitudes: npt.ArrayLike, state: EdrState, now_s: float
) -> tuple[FloatArray, FloatArray]:
    t = np.asarray(beats_s, dtype=np.float64)
    a = np.asarray(amplitudes, dtype=np.float64)
    if t.ndim != 1 or a.ndim != 1:
        raise RespInputError("not_1d", "beats and amplitudes must be 1-D")
    if t.shape != a.shape:
        raise RespInputError("length_mismatch", f"{t.size} beats, {a.size} amplitudes")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(a)) and math.isfinite(now_s)):
        raise RespInputError("not_finite", "NaN or infinite beat time, amplitude or now_s")
    last = state.beats_s[-1] if state.beats_s.size else -math.inf
    if np.any(np.diff(np.concatenate(([last], t))) <= 0):
        raise RespInputError("bad_time", "beat times must increase across calls")
    if now_s < state.now_s or (t.size and t[-1] > now_s):
        raise RespInputError("bad_time", "now_s must not go back or precede the beats")
    return t, a


def edr_step(
    state: EdrState, beats_s: npt.ArrayLike, amplitudes: npt.ArrayLike, *, now_s: float
) -> tuple[Findings, EdrState]:
    """Feed newly decided beats (seconds on the ECG stream's timeline, increasing) with
    their R amplitudes; ``now_s``: every beat before it has been reported. Emits
    ``RESP_RATE_EDR`` per 30 s window (``t_s`` the window's end) ``EDR_DELAY_S`` after it.
    Raises ``RespInputError`` (state unchanged)."""
    t, a = _check(beats_s, amplitudes, state, now_s)
    beats = np.concatenate((state.beats_s, t))
    amps = np.concatenate((state.amplitudes, a))
    k = state.next_window
    vitals: list[Vital] = []
    while (k + 1) * WINDOW_S + EDR_DELAY_S <= now_s:
        start, end = k * WINDOW_S, (k + 1) * WINDOW_S
        use = (beats >= start - _LEAD_S) & (beats < end + EDR_DELAY_S)
        est = edr_rate(beats[use], amps[use], start_s=start, end_s=end)
        if math.isfinite(est.rate_bpm):
            vitals.append(Vital(end, VitalKind.RESP_RATE_EDR, est.rate_bpm, WINDOW_S, est.quality))
        k += 1
    keep = beats >= k * WINDOW_S - _LEAD_S
    return Findings(tuple(vitals)), EdrState(beats[keep], amps[keep], now_s, k)
