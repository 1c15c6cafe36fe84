"""Streaming skin temperature: smoothing, sensor warm-up, per-minute values, fever/hypothermia.

Role: turn a garment's skin-temperature samples (°C, ~1 Hz, any chunk length) into
``VitalKind.TEMP`` once a minute and ``EventKind.FEVER`` / ``EventKind.HYPOTHERMIA`` alarms.

Pipeline, per sample, vectorised over each chunk with the filter and buffer state carried in
:class:`TempState` (so any slicing of the stream gives the same findings):

1. **Smoothing**: a causal running median over ``MEDIAN_S`` (rejects single-sample glitches
   and quantisation steps) then a 2nd-order Butterworth low-pass at ``LOWPASS_HZ`` (1/60 Hz;
   group delay ≈ 13 s, residual white-noise gain ≈ 0.2 at 1 Hz).
2. **Warm-up / settling**: when the stream starts or the garment is donned the sensor
   approaches the skin through its thermal lag (minutes). The slope of the smoothed signal
   over ``SLOPE_SPAN_S`` decides: the sensor is *settled* once ``|slope|`` has stayed
   ≤ ``settle_slope_c_per_min`` for ``settle_hold_s`` with the value inside the on-body
   range, and *unsettled* again when ``|slope|`` exceeds ``unsettle_slope_c_per_min`` (a
   doffing or a re-donning; physiological skin changes are far slower) or the value leaves
   the on-body range. For a first-order lag the remaining error when the slope falls to
   ``s`` is ``s · τ`` (0.09 °C for 0.03 °C/min and τ = 3 min), then it decays further during
   the hold. No TEMP vital and no alarm decision is made while unsettled: a new stream
   waits at least ``SLOPE_SPAN_S + settle_hold_s`` (3 min), a cold garment ~15-20 min.
3. **Vitals**: one ``VitalKind.TEMP`` per aligned 60 s window (``t_s`` its end), the mean of
   the smoothed skin temperature, only for windows settled throughout. The sensor's own
   lag is not undone: while the skin changes, the value trails it by ``τ · slope`` (about
   0.1 °C during a typical fever's rise).
4. **Alarms** on an estimated core temperature ``skin + core_skin_gradient_c`` (see
   :class:`TempThresholds`), with hysteresis: an alarm fires once the estimate has been past
   its *on* threshold for ``sustain_s`` (``t_s`` = the first sample past it) and is re-armed
   only after the estimate comes back past its *off* threshold.

Must not: do I/O, import ``gateway`` or ``devices``, log signal values, or loop per sample
in Python (the only loops are per alarm transition and per completed minute).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy import signal

from processing.errors import (
    SignalInputError,
    check_rate,
    check_stream_rate,
    float_array,
    samples_1d,
)
from processing.findings import Event, EventKind, Findings, Severity, Vital, VitalKind

__all__ = ["TempInputError", "TempState", "TempThresholds", "temp_step"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

MIN_FS_HZ = 0.05
MAX_FS_HZ = 100.0
MEDIAN_S = 5.0
LOWPASS_HZ = 1.0 / 60.0
SLOPE_SPAN_S = 60.0
WINDOW_S = 60.0


class TempInputError(SignalInputError):
    """Temperature input or configuration the processor cannot use; ``reason`` is a short tag
    (``"fs_range"``, ``"fs_mismatch"``, ``"not_1d"``, ``"not_finite"``, ``"not_numeric"``,
    ``"bad_thresholds"``).
    Signal values are never put in the message."""

    signal = "temperature"


@dataclass(frozen=True, slots=True)
class TempThresholds:
    """Alarm and settling parameters (°C, seconds, °C/min).

    Skin→core model: ``core ≈ skin + core_skin_gradient_c``. A chest sensor under a garment
    at rest in a thermoneutral room reads about 3-4 °C below core (the simulator's default
    gradient is 3.5 °C). During a fever the skin follows the core only partly (the
    simulator couples 80 %), so a core threshold applied to this estimate fires a little late
    (a core of 38.0 °C shows as an estimate of ~37.8 °C); the defaults accept that rather
    than over-calling. Defaults in core terms: fever ≥ 38.0 °C (re-armed below 37.6 °C),
    hypothermia ≤ 35.0 °C (re-armed above 35.4 °C), each sustained for 5 min; i.e. skin
    thresholds 34.5/34.1 °C and 31.5/31.9 °C. On-body range 28-42 °C skin: below it the
    garment is taken to be off (reading the room), so no hypothermia alarm can come from a
    garment lying on a table.
    """

    core_skin_gradient_c: float = 3.5
    fever_on_c: float = 38.0
    fever_off_c: float = 37.6
    hypothermia_on_c: float = 35.0
    hypothermia_off_c: float = 35.4
    sustain_s: float = 300.0
    on_body_min_c: float = 28.0
    on_body_max_c: float = 42.0
    settle_slope_c_per_min: float = 0.03
    settle_hold_s: float = 120.0
    unsettle_slope_c_per_min: float = 0.3

    def __post_init__(self) -> None:
        ok = (
            all(math.isfinite(getattr(self, f.name)) for f in fields(self))
            and self.hypothermia_on_c < self.hypothermia_off_c
            and self.hypothermia_off_c < self.fever_off_c < self.fever_on_c
            and self.on_body_min_c < self.on_body_max_c
            and self.sustain_s > 0
            and self.settle_hold_s >= 0
            and 0 < self.settle_slope_c_per_min < self.unsettle_slope_c_per_min
        )
        if not ok:
            raise TempInputError("bad_thresholds")


@dataclass(frozen=True, slots=True)
class _Alarm:
    armed: bool = True
    last_out: int = -1
    """Absolute index of the last sample not past the *on* threshold."""


@dataclass(frozen=True, slots=True, eq=False)
class TempState:
    """Carried between :func:`temp_step` calls; build the first with :meth:`initial`."""

    fs_hz: float
    thresholds: TempThresholds
    n_seen: int
    median_tail: FloatArray
    lowpass_zi: FloatArray | None
    history: FloatArray
    last_loud: int
    settled: bool
    window_values: FloatArray
    window_ok: BoolArray
    fever: _Alarm
    hypothermia: _Alarm

    @classmethod
    def initial(cls, *, fs_hz: float, thresholds: TempThresholds | None = None) -> TempState:
        fs = check_rate(fs_hz, low=MIN_FS_HZ, high=MAX_FS_HZ, error=TempInputError)
        return cls(
            fs_hz=fs,
            thresholds=thresholds or TempThresholds(),
            n_seen=0,
            median_tail=np.zeros(0),
            lowpass_zi=None,
            history=np.zeros(0),
            last_loud=-1,
            settled=False,
            window_values=np.zeros(0),
            window_ok=np.zeros(0, dtype=np.bool_),
            fever=_Alarm(),
            hypothermia=_Alarm(),
        )


@lru_cache(maxsize=32)
def _lowpass_sos(fs_hz: float) -> FloatArray:
    cutoff = min(LOWPASS_HZ, 0.25 * fs_hz)
    sos: FloatArray = np.asarray(signal.butter(2, cutoff, fs=fs_hz, output="sos"), dtype=np.float64)
    sos.setflags(write=False)
    return sos


def _samples(seconds: float, fs_hz: float) -> int:
    return max(1, round(seconds * fs_hz))


def _running_median(tail: FloatArray, x: FloatArray, k: int) -> tuple[FloatArray, FloatArray]:
    """Causal median over the last ``k`` samples and the new tail (``k - 1`` samples); the
    first sample of a fresh stream pads its start."""
    if tail.size < k - 1:
        tail = np.concatenate((np.full(k - 1 - tail.size, x[0]), tail))
    full = np.concatenate((tail, x))
    windows = np.lib.stride_tricks.sliding_window_view(full, k)
    median = np.asarray(np.median(windows, axis=1), dtype=np.float64)
    return median, full[full.size - (k - 1) :].copy()


def _hysteresis(on: BoolArray, off: BoolArray, initial: bool) -> BoolArray:
    """Per-sample latch: set where ``on``, cleared where ``off`` (wins), else held."""
    decisive = on | off
    idx = np.where(decisive, np.arange(on.size), -1)
    last = np.maximum.accumulate(idx)
    value = np.asarray(on & ~off)
    return np.where(last >= 0, value[np.maximum(last, 0)], initial)


def _last_index(
    mask: BoolArray, abs_idx: npt.NDArray[np.int64], previous: int
) -> npt.NDArray[np.int64]:
    """For each sample, the absolute index of the latest sample (so far) where ``mask``."""
    marked = np.where(mask, abs_idx, previous)
    return np.maximum.accumulate(np.maximum(marked, previous))


def _alarm(
    alarm: _Alarm,
    past_on: BoolArray,
    back_off: BoolArray,
    abs_idx: npt.NDArray[np.int64],
    sustain: int,
) -> tuple[list[tuple[int, int]], _Alarm]:
    """Sustained-threshold alarm with re-arming; returns the alarms fired as pairs
    (absolute onset index, chunk index where decided) and the new alarm state."""
    last_out = _last_index(~past_on, abs_idx, alarm.last_out)
    due = (abs_idx - last_out) >= sustain
    fired: list[tuple[int, int]] = []
    armed, pos, n = alarm.armed, 0, past_on.size
    while pos < n:
        hits = np.flatnonzero(due[pos:] if armed else back_off[pos:])
        if hits.size == 0:
            break
        i = pos + int(hits[0])
        if armed:
            fired.append((int(last_out[i]) + 1, i))
        armed, pos = not armed, i + 1
    return fired, _Alarm(armed, int(last_out[-1]))


def _window_vitals(
    state: TempState, y: FloatArray, ok: BoolArray
) -> tuple[list[Vital], FloatArray, BoolArray]:
    """Complete the aligned 60 s windows covered so far; returns the leftover partial window."""
    fs = state.fs_hz
    values = np.concatenate((state.window_values, y))
    flags = np.concatenate((state.window_ok, ok))
    first = state.n_seen - state.window_values.size  # absolute index of values[0]
    end = state.n_seen + y.size
    vitals: list[Vital] = []
    k = math.floor(first / fs / WINDOW_S + 1e-9)
    while True:
        stop = math.ceil((k + 1) * WINDOW_S * fs - 1e-9)
        if stop > end:
            break
        start = math.ceil(k * WINDOW_S * fs - 1e-9)
        lo, hi = start - first, stop - first
        if hi > lo and bool(np.all(flags[lo:hi])):
            vitals.append(
                Vital((k + 1) * WINDOW_S, VitalKind.TEMP, float(np.mean(values[lo:hi])), WINDOW_S)
            )
        k += 1
    keep = math.ceil(k * WINDOW_S * fs - 1e-9) - first
    return vitals, values[keep:].copy(), flags[keep:].copy()


def temp_step(
    state: TempState, chunk: npt.ArrayLike, *, fs_hz: float
) -> tuple[Findings, TempState]:
    """Feed the next skin-temperature samples (°C, 1-D); returns what they completed.

    Raises :class:`TempInputError` for a rate other than the state's, a wrong shape or
    non-finite samples (a gap is a new stream: start again from :meth:`TempState.initial`).
    """
    check_stream_rate(fs_hz, state.fs_hz, low=MIN_FS_HZ, high=MAX_FS_HZ, error=TempInputError)
    x = samples_1d(float_array(chunk, error=TempInputError), error=TempInputError)
    if x.size == 0:
        return Findings(), state
    fs, th = state.fs_hz, state.thresholds
    k_med = _samples(MEDIAN_S, fs) | 1
    med, median_tail = _running_median(state.median_tail, x, k_med)
    sos = _lowpass_sos(fs)
    zi = state.lowpass_zi
    if zi is None:
        zi = signal.sosfilt_zi(sos) * med[0]
    y, zi = signal.sosfilt(sos.copy(), med, zi=zi)
    y = np.asarray(y, dtype=np.float64)
    abs_idx = state.n_seen + np.arange(x.size, dtype=np.int64)

    span = _samples(SLOPE_SPAN_S, fs)
    hist = np.concatenate((state.history, y))
    back = np.arange(state.history.size, hist.size) - span
    slope = np.full(x.size, np.nan)
    have = back >= 0
    slope[have] = (y[have] - hist[back[have]]) * (60.0 / (span / fs))
    on_body = (y >= th.on_body_min_c) & (y <= th.on_body_max_c)
    loud = ~(np.abs(slope) <= th.settle_slope_c_per_min) | ~on_body
    last_loud = _last_index(loud, abs_idx, state.last_loud)
    quiet = (abs_idx - last_loud) >= _samples(th.settle_hold_s, fs)
    shaken = (np.abs(slope) > th.unsettle_slope_c_per_min) | ~on_body
    settled = _hysteresis(quiet, shaken, state.settled)

    core = y + th.core_skin_gradient_c
    sustain = _samples(th.sustain_s, fs)
    fevers, fever = _alarm(
        state.fever, settled & (core >= th.fever_on_c), core < th.fever_off_c, abs_idx, sustain
    )
    colds, hypo = _alarm(
        state.hypothermia,
        settled & (core <= th.hypothermia_on_c),
        core > th.hypothermia_off_c,
        abs_idx,
        sustain,
    )
    events = [
        _event(kind, onset, y[decided], threshold, th, fs)
        for kind, pairs, threshold in (
            (EventKind.FEVER, fevers, th.fever_on_c),
            (EventKind.HYPOTHERMIA, colds, th.hypothermia_on_c),
        )
        for onset, decided in pairs
    ]
    events.sort(key=lambda e: e.t_s)
    vitals, window_values, window_ok = _window_vitals(state, y, settled)
    new_state = replace(
        state,
        n_seen=state.n_seen + x.size,
        median_tail=median_tail,
        lowpass_zi=np.asarray(zi, dtype=np.float64),
        history=hist[-span:].copy(),
        last_loud=int(last_loud[-1]),
        settled=bool(settled[-1]),
        window_values=window_values,
        window_ok=window_ok,
        fever=fever,
        hypothermia=hypo,
    )
    return Findings(tuple(vitals), tuple(events)), new_state


def _event(
    kind: EventKind, onset: int, skin_c: float, threshold_c: float, th: TempThresholds, fs: float
) -> Event:
    return Event(
        t_s=onset / fs,
        kind=kind,
        severity=Severity.WARNING,
        detail={
            "skin_c": round(float(skin_c), 2),
            "core_est_c": round(float(skin_c) + th.core_skin_gradient_c, 2),
            "threshold_c": threshold_c,
        },
    )
