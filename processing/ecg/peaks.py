"""Batch R-peak detection for single-lead ECG at any sample rate from 125 to 1000 Hz.

Role: whole-array QRS detection: band-pass, slope-energy envelope, Pan-Tompkins adaptive
thresholds with searchback and T-wave discrimination, then refinement to the R peak.
Must not: do I/O, import ``gateway`` or ``devices``, log signal values, or loop per sample
in Python (the only Python loop is per candidate beat).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import signal

from processing.ecg.filters import FloatArray, qrs_bandpass, remove_baseline

IndexArray = npt.NDArray[np.int64]

MIN_FS_HZ = 125.0
MAX_FS_HZ = 1000.0


class EcgInputError(ValueError):
    """ECG input the detector cannot use; ``reason`` is a short tag (``"fs_range"``,
    ``"not_1d"``, ``"not_finite"``). Signal values are never put in the message."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"ecg: {reason} ({detail})" if detail else f"ecg: {reason}")


@dataclass(frozen=True, slots=True)
class _Tuning:
    """Times in seconds, fractions of the running peak levels."""

    integration_s: float = 0.150
    refractory_s: float = 0.200
    t_wave_window_s: float = 0.360
    t_wave_slope_ratio: float = 0.5
    threshold_fraction: float = 0.4
    searchback_rr_factor: float = 1.66
    searchback_fraction: float = 0.5
    refine_s: float = 0.075
    slope_half_s: float = 0.075
    split_rr_fraction: float = 1.3
    split_height_fraction: float = 0.6
    learning_s: float = 2.0


_TUNING = _Tuning()


def _validate(ecg: npt.ArrayLike, fs_hz: float) -> FloatArray:
    if not np.isfinite(fs_hz) or not MIN_FS_HZ <= fs_hz <= MAX_FS_HZ:
        raise EcgInputError("fs_range", f"fs_hz must be in [{MIN_FS_HZ:g}, {MAX_FS_HZ:g}]")
    x = np.asarray(ecg, dtype=np.float64)
    if x.ndim != 1:
        raise EcgInputError("not_1d", f"expected a 1-D array, got {x.ndim} dimensions")
    if not np.all(np.isfinite(x)):
        raise EcgInputError("not_finite", "NaN or infinite samples")
    return x


def _slope_envelope(bandpassed: FloatArray, fs_hz: float) -> tuple[FloatArray, FloatArray]:
    """Pan-Tompkins derivative -> square -> moving-window integration, centred so the
    envelope peak sits on the QRS; returned as RMS slope (square root) so the envelope
    scales linearly with QRS amplitude. Also returns the absolute slope."""
    slope = np.gradient(bandpassed) * fs_hz
    energy = slope * slope
    width = max(1, round(_TUNING.integration_s * fs_hz))
    half = width // 2
    csum = np.cumsum(np.concatenate((np.zeros(half + 1), energy, np.zeros(width - half))))
    n = energy.shape[0]
    mwi = csum[width : width + n] - csum[:n]
    np.maximum(mwi, 0.0, out=mwi)
    np.sqrt(mwi * (1.0 / width), out=mwi)
    np.abs(slope, out=slope)
    return mwi, slope


def _pan_tompkins(env: FloatArray, abs_slope: FloatArray, fs_hz: float) -> list[int]:
    """Pan-Tompkins decision rules over the envelope's local maxima (Pan & Tompkins, IEEE
    Trans. Biomed. Eng. 32(3):230-236, 1985; Hamilton & Tompkins, IEEE TBME
    33(12):1157-1165, 1986): running signal and noise peak levels, a threshold between
    them, searchback at a lower threshold after 1.66 mean RR without a beat, a 200 ms
    refractory period and T-wave rejection by maximum slope within 360 ms. One addition:
    a much steeper candidate within 360 ms replaces the previous detection (that one was
    this beat's P wave or an artefact, e.g. right after a step up in amplitude)."""
    t = _TUNING
    refractory = max(1, round(t.refractory_s * fs_hz))
    cand, _ = signal.find_peaks(env, distance=refractory)
    if cand.size == 0:
        return []
    heights = env[cand]
    half_qrs = max(1, round(t.slope_half_s * fs_hz))
    slopes = np.array(
        [abs_slope[max(0, c - half_qrs) : c + half_qrs + 1].max() for c in cand.tolist()]
    )
    learn = env[: max(1, round(t.learning_s * fs_hz))]
    spk = float(learn.max()) * 0.5
    npk = float(np.median(heights)) * 0.25 if heights.size > 4 else spk * 0.1
    npk = min(npk, spk * 0.5)
    beats: list[int] = []
    beat_slopes: list[float] = []
    beat_heights: list[float] = []
    rr: list[int] = []
    last_i = -1  # index into cand of the last accepted beat
    t_window = round(t.t_wave_window_s * fs_hz)

    def accept(i: int) -> None:
        nonlocal last_i
        if beats:
            rr.append(int(cand[i]) - beats[-1])
            if len(rr) > 8:
                del rr[0]
        beats.append(int(cand[i]))
        beat_slopes.append(float(slopes[i]))
        beat_heights.append(float(heights[i]))
        last_i = i

    def is_t_wave(i: int) -> bool:
        return (
            bool(beats)
            and int(cand[i]) - beats[-1] < t_window
            and slopes[i] < t.t_wave_slope_ratio * beat_slopes[-1]
        )

    for i in range(cand.size):
        c = int(cand[i])
        h = float(heights[i])
        thr = npk + t.threshold_fraction * (spk - npk)
        if beats and len(rr) >= 2:
            rr_avg = sum(rr) / len(rr)
            if c - beats[-1] > t.searchback_rr_factor * rr_avg and i - last_i > 1:
                window = np.arange(last_i + 1, i)
                window = window[cand[window] - beats[-1] >= refractory]
                window = window[[not is_t_wave(k) for k in window.tolist()]]
                if window.size:
                    j = int(window[np.argmax(heights[window])])
                    if heights[j] > t.searchback_fraction * thr:
                        accept(j)
                        spk = 0.25 * float(heights[j]) + 0.75 * spk
                        thr = npk + t.threshold_fraction * (spk - npk)
        if h <= thr:
            npk = 0.125 * h + 0.875 * npk
            continue
        if beats and c - beats[-1] < refractory:
            continue
        if is_t_wave(i):
            npk = 0.125 * h + 0.875 * npk
            continue
        if (
            beats
            and c - beats[-1] < t_window
            and t.t_wave_slope_ratio * slopes[i] > beat_slopes[-1]
        ):
            # the previous detection was this beat's P wave or a smaller artefact
            beats.pop()
            beat_slopes.pop()
            beat_heights.pop()
            if rr:
                rr.pop()
        accept(i)
        spk = 0.125 * h + 0.875 * spk
    return _drop_interpolated(
        np.asarray(beats, dtype=np.int64), np.asarray(beat_heights, dtype=np.float64)
    )


def _drop_interpolated(beats: IndexArray, heights: FloatArray) -> list[int]:
    """Drop a weak detection that splits an otherwise ordinary RR interval: its neighbours
    are about one median RR apart and both are much stronger than it. A premature beat is
    followed by a compensatory pause, so it does not split an interval this way."""
    t = _TUNING
    if beats.size < 5 or t.split_rr_fraction <= 0:
        return [int(b) for b in beats]
    rr_median = float(np.median(np.diff(beats)))
    span = beats[2:] - beats[:-2]
    weak = heights[1:-1] < t.split_height_fraction * np.minimum(heights[:-2], heights[2:])
    drop = np.zeros(beats.size, dtype=bool)
    drop[1:-1] = weak & (span < t.split_rr_fraction * rr_median)
    return [int(b) for b in beats[~drop]]


def _refine(x: FloatArray, beats: list[int], fs_hz: float) -> IndexArray:
    """Move each detection to the largest deflection of the baseline-free signal within
    ±75 ms (R peak, or the dominant deflection of an inverted or ventricular beat)."""
    if not beats:
        return np.empty(0, dtype=np.int64)
    w = max(1, round(_TUNING.refine_s * fs_hz))
    centres = np.asarray(beats, dtype=np.int64)
    offsets = np.arange(-w, w + 1, dtype=np.int64)
    idx = np.clip(centres[:, None] + offsets[None, :], 0, x.shape[0] - 1)
    refined = idx[np.arange(idx.shape[0]), np.argmax(np.abs(x[idx]), axis=1)]
    return np.unique(refined).astype(np.int64)


def detect_r_peaks(ecg: npt.ArrayLike, *, fs_hz: float) -> IndexArray:
    """Sample indices (int64, sorted, unique) of the R peaks in a single-lead ECG.

    ``fs_hz`` must be within 125-1000 Hz; the signal may be in any unit and carry
    baseline wander, noise and amplitude changes. Signals shorter than half a second give
    no beats. Raises :class:`EcgInputError` for a wrong rate, shape or non-finite samples.
    """
    fs = float(fs_hz)
    x = _validate(ecg, fs)
    if x.shape[0] < round(0.5 * fs):
        return np.empty(0, dtype=np.int64)
    bp = qrs_bandpass(x, fs_hz=fs)
    env, abs_slope = _slope_envelope(bp, fs)
    beats = _pan_tompkins(env, abs_slope, fs)
    return _refine(remove_baseline(x, fs_hz=fs), beats, fs)
