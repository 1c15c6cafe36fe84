"""Activity (ENMO) and steps/cadence from a chest accelerometer.

Role: per-sample ENMO, the streamable step detector (vertical acceleration band-pass and
peak picking with a carried tail, so chunking never changes the steps found), the cadence
of a window of steps, and the batch helpers :func:`enmo_mg` and :func:`step_cadence`.

Must not: do I/O, import ``gateway`` or ``devices``, or loop per sample in Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy import signal

from processing.motion.posture import FloatArray, check_fs, gravity_step, validate_acc

__all__ = ["GRAVITY_MG", "StepCadence", "enmo_mg", "step_cadence"]

GRAVITY_MG = 1000.0
STEP_BAND_HZ = (0.5, 5.0)
STEP_MIN_MG = 80.0
"""Smallest band-passed vertical peak taken as a step (walking gives ~250-350 mG)."""
STEP_HALF_S = 0.2
"""A step is the largest peak within ±0.2 s (cadences up to 5 steps/s)."""
MIN_STEPS = 5
MIN_SPAN_S = 3.0
REGULAR_FRACTION = 0.6
"""At least this fraction of a window's step intervals within ±30 % of their median."""


@dataclass(frozen=True, slots=True)
class StepCadence:
    """Batch step detection: step times (s since the first sample) and the cadence they give
    (steps/min, 0 when they are too few or too irregular to be walking or running)."""

    step_times_s: FloatArray
    cadence_spm: float


def _van_hees_enmo(acc: FloatArray) -> FloatArray:
    """Euclidean norm minus one g, negatives set to zero (mG).

    van Hees et al., "Separating movement and gravity components in an acceleration signal
    and implications for the assessment of human daily physical activity", PLoS ONE
    8(4):e61691, 2013.
    """
    enmo: FloatArray = np.maximum(np.linalg.norm(acc, axis=1) - GRAVITY_MG, 0.0)
    return enmo


def enmo_mg(acc_mg: npt.ArrayLike) -> FloatArray:
    """Per-sample ENMO (mG) of ``(n, 3)`` accelerometer samples in mG."""
    return _van_hees_enmo(validate_acc(acc_mg))


@lru_cache(maxsize=32)
def _step_band_sos(fs_hz: float) -> FloatArray:
    high = min(STEP_BAND_HZ[1], 0.4 * fs_hz)
    sos: FloatArray = np.asarray(
        signal.butter(2, (STEP_BAND_HZ[0], high), btype="bandpass", fs=fs_hz, output="sos"),
        dtype=np.float64,
    )
    sos.setflags(write=False)
    return sos


def step_half_width(fs_hz: float) -> int:
    return max(1, round(STEP_HALF_S * fs_hz))


def vertical_bandpass(
    acc: FloatArray, gravity: FloatArray, zi: FloatArray | None, *, fs_hz: float
) -> tuple[FloatArray, FloatArray]:
    """The acceleration along the (low-passed) gravity direction, band-passed to the step
    band; ``zi`` ``None`` starts a stream. Returns the signal and the new filter state."""
    norm = np.linalg.norm(gravity, axis=1)
    unit = gravity / np.where(norm > 0, norm, 1.0)[:, None]
    vertical = np.einsum("ij,ij->i", acc, unit)
    sos = _step_band_sos(fs_hz)
    if zi is None:
        zi = signal.sosfilt_zi(sos) * vertical[0]
    out, zf = signal.sosfilt(sos.copy(), vertical, zi=zi)
    return np.asarray(out, dtype=np.float64), np.asarray(zf, dtype=np.float64)


def initial_step_tail(fs_hz: float) -> FloatArray:
    """The peak picker's tail before the first sample (nothing before the stream)."""
    return np.full(2 * step_half_width(fs_hz), -np.inf)


def _zijlstra_hof_steps(
    tail: FloatArray, bp: FloatArray, n_seen: int, *, fs_hz: float
) -> tuple[FloatArray, FloatArray]:
    """Steps as peaks of the band-passed vertical trunk acceleration: each heel strike gives
    one peak; a peak is the largest sample within ±``STEP_HALF_S`` and at least
    ``STEP_MIN_MG``, refined to sub-sample time by a parabola through its neighbours.

    After Zijlstra & Hof, "Assessment of spatio-temporal gait parameters from trunk
    accelerations during human walking", Gait & Posture 18(2):1-10, 2003.

    ``tail`` holds the ``2h`` band-passed samples before ``bp`` (absolute indices
    ``n_seen - 2h ...``); samples within ``h`` of the end are decided on the next call.
    Returns the step times (s) decided now and the new tail.
    """
    h = tail.size // 2
    buf = np.concatenate((tail, bp))
    windows = np.lib.stride_tricks.sliding_window_view(buf, 2 * h + 1)
    centre = windows[:, h]
    left = windows[:, :h].max(axis=1)
    right = windows[:, h + 1 :].max(axis=1)
    peak = (centre >= STEP_MIN_MG) & (centre > left) & (centre >= right)
    pos = np.flatnonzero(peak) + h  # positions in buf
    y0, y1, y2 = buf[pos - 1], buf[pos], buf[pos + 1]
    curve = y0 - 2.0 * y1 + y2
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = np.where(np.isfinite(curve) & (curve < 0), 0.5 * (y0 - y2) / curve, 0.0)
    absolute = n_seen - 2 * h + pos + np.clip(delta, -0.5, 0.5)
    return absolute / fs_hz, buf[buf.size - 2 * h :].copy()


def steps_step(
    tail: FloatArray, bp: FloatArray, n_seen: int, *, fs_hz: float
) -> tuple[FloatArray, FloatArray]:
    """Streaming step picking (see :func:`_zijlstra_hof_steps`)."""
    return _zijlstra_hof_steps(tail, bp, n_seen, fs_hz=fs_hz)


def cadence_spm(step_times_s: FloatArray) -> float:
    """Cadence (steps/min) of the steps of one window, 0 when not walking or running.

    Counts the intervals as ``round(span / median interval)`` so a missed or doubled step
    does not bias the rate, and needs ``MIN_STEPS`` steps over ``MIN_SPAN_S`` with most
    intervals regular."""
    t = np.asarray(step_times_s, dtype=np.float64)
    if t.size < MIN_STEPS:
        return 0.0
    span = float(t[-1] - t[0])
    intervals = np.diff(t)
    median = float(np.median(intervals))
    if span < MIN_SPAN_S or median <= 0:
        return 0.0
    regular = np.abs(intervals - median) <= 0.3 * median
    if np.mean(regular) < REGULAR_FRACTION:
        return 0.0
    return 60.0 * round(span / median) / span


def step_cadence(acc_mg: npt.ArrayLike, *, fs_hz: float) -> StepCadence:
    """Batch steps of ``(n, 3)`` mG samples (the stream's detector run over the whole array;
    steps in its last 0.2 s are not decided) and their cadence over the whole array (meant
    for one walking or running bout)."""
    fs = check_fs(fs_hz)
    acc = validate_acc(acc_mg)
    if acc.shape[0] == 0:
        return StepCadence(np.zeros(0), 0.0)
    gravity, _ = gravity_step(acc, None, fs_hz=fs)
    bp, _ = vertical_bandpass(acc, gravity, None, fs_hz=fs)
    times, _ = steps_step(initial_step_tail(fs), bp, 0, fs_hz=fs)
    return StepCadence(times, cadence_spm(times))
