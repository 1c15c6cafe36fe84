"""Streaming skin temperature: smoothing, sensor warm-up, per-minute values, fever/hypothermia.

Role: turn a garment's skin-temperature samples (°C, ~1 Hz, any chunk length) into
``VitalKind.TEMP`` once a minute and ``EventKind.FEVER`` / ``EventKind.HYPOTHERMIA`` alarms.

Pipeline, per sample, vectorised over each chunk with the filter and buffer state carried in
:class:`TempState` (so any slicing of the stream gives the same findings):

1. **Smoothing**: a causal running median over ``MEDIAN_S`` (rejects single-sample glitches
   and quantisation steps; ``scipy.ndimage.median_filter``, memory linear in the chunk)
   then a 2nd-order Butterworth low-pass at ``LOWPASS_HZ`` (1/60 Hz; group delay ≈ 13 s,
   residual white-noise gain ≈ 0.2 at 1 Hz).
2. **Warm-up / settling**: when the stream starts or the garment is donned the sensor
   approaches the skin through its thermal lag (minutes). The slope of the smoothed signal
   over ``SLOPE_SPAN_S`` decides: the sensor is *settled* once it has been *calm* for
   ``settle_hold_s`` with the value inside the on-body range, and *unsettled* again when
   ``|slope|`` exceeds ``unsettle_slope_c_per_min`` or the value leaves the on-body range.
   Calm is ``|slope| ≤ settle_slope_c_per_min``, or a slow *steady* trend: ``|slope| ≤
   trend_slope_c_per_min`` with the slope changed by at most ``trend_steady_c_per_min`` over
   ``TREND_SPAN_S`` (a fever's rise, ~0.06 °C/min, is nearly linear, whereas a warm-up
   lag's slope decays by e^(4/3) ≈ 3.8× over 4 min for τ = 3 min, so a warm-up is not
   mistaken for a trend). For a first-order lag the remaining error when the slope falls to
   ``s`` is ``s · τ`` (0.09 °C for 0.03 °C/min and τ = 3 min), then it decays further
   during the hold. No TEMP vital and no alarm decision is made while unsettled: a new
   stream waits at least ``SLOPE_SPAN_S + settle_hold_s`` (3 min), a cold garment ~15-20 min.
3. **Doffing**: a garment taken off cools towards the room at ~1 °C/min (sensor τ ≈ 3 min),
   far faster than skin under clothing changes. A fall steeper than
   ``doff_slope_c_per_min`` sustained for ``doff_hold_s`` latches the sensor *off-body*: no
   vitals, no alarms, and both alarms re-armed, even if the room is inside the on-body range
   (a 29.5 °C summer room). The latch is cleared by a re-donning rise steeper than
   ``don_slope_c_per_min`` for ``doff_hold_s``, after which the settling of step 2 applies.
4. **Vitals**: one ``VitalKind.TEMP`` per aligned 60 s window (``t_s`` its end), the mean of
   the smoothed skin temperature, only for windows settled throughout. The sensor's own
   lag is not undone: while the skin changes, the value trails it by ``τ · slope`` (about
   0.1 °C during a typical fever's rise).
5. **Alarms** on the settled *skin* temperature itself (see :class:`TempThresholds`), with
   hysteresis: an alarm fires once the value has been past its *on* threshold for
   ``sustain_s`` (``t_s`` = the first sample past it) and is re-armed only after the value
   comes back past its *off* threshold or the garment is taken off. Chest skin under
   clothing is normally 33-35.5 °C, so the defaults sit outside that range (fever: skin
   ≥ 36.0 °C sustained; hypothermia: skin ≤ 31.0 °C sustained) and never fire for a
   healthy wearer. A core estimate ``skin + core_skin_gradient_c`` is reported in the
   event's detail only, as an indication: the skin-core gradient varies by several °C with
   clothing, room and perfusion, so it is not used to decide.

Must not: do I/O, import ``gateway`` or ``devices``, log signal values, or loop per sample
in Python (the only loops are per alarm transition and per completed minute).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy import ndimage, signal

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
TREND_SPAN_S = 240.0
WINDOW_S = 60.0


class TempInputError(SignalInputError):
    """Temperature input or configuration the processor cannot use; ``reason`` is a short tag
    (``"fs_range"``, ``"fs_mismatch"``, ``"not_1d"``, ``"not_finite"``, ``"not_numeric"``,
    ``"bad_thresholds"``).
    Signal values are never put in the message."""

    signal = "temperature"


@dataclass(frozen=True, slots=True)
class TempThresholds:
    """Alarm, settling and doffing parameters (°C of *skin*, seconds, °C/min); see the module
    docstring, steps 2, 3 and 5. Defaults: fever at skin ≥ 36.0 °C for 5 min (re-armed
    below 35.6 °C), hypothermia at skin ≤ 31.0 °C (re-armed above 31.4 °C), on-body range
    28-42 °C; ``core_skin_gradient_c`` only feeds the events' ``core_est_c`` detail."""

    fever_on_c: float = 36.0
    fever_off_c: float = 35.6
    hypothermia_on_c: float = 31.0
    hypothermia_off_c: float = 31.4
    sustain_s: float = 300.0
    on_body_min_c: float = 28.0
    on_body_max_c: float = 42.0
    settle_slope_c_per_min: float = 0.03
    settle_hold_s: float = 120.0
    trend_slope_c_per_min: float = 0.1
    trend_steady_c_per_min: float = 0.02
    unsettle_slope_c_per_min: float = 0.3
    doff_slope_c_per_min: float = 0.4
    don_slope_c_per_min: float = 0.4
    doff_hold_s: float = 60.0
    core_skin_gradient_c: float = 3.5

    def __post_init__(self) -> None:
        ok = (
            all(math.isfinite(getattr(self, f.name)) for f in fields(self))
            and self.hypothermia_on_c < self.hypothermia_off_c
            and self.hypothermia_off_c < self.fever_off_c < self.fever_on_c
            and self.on_body_min_c < self.on_body_max_c
            and self.sustain_s > 0
            and self.settle_hold_s >= 0
            and 0 < self.settle_slope_c_per_min <= self.trend_slope_c_per_min
            and self.trend_slope_c_per_min < self.unsettle_slope_c_per_min
            and self.trend_steady_c_per_min >= 0
            and min(self.doff_slope_c_per_min, self.don_slope_c_per_min) > 0
            and self.doff_hold_s >= 0
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
    last_not_falling: int
    last_not_rising: int
    off_body: bool
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
            last_not_falling=-1,
            last_not_rising=-1,
            off_body=False,
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
    # the centred median at full[j] covers full[j-h .. j+h]: x[i]'s causal one is j = i + h
    h = (k - 1) // 2
    centred = ndimage.median_filter(full, size=k, mode="nearest")
    median = np.asarray(centred[h : h + x.size], dtype=np.float64)
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


def _slopes(
    history: FloatArray, y: FloatArray, fs: float, th: TempThresholds
) -> tuple[FloatArray, BoolArray, FloatArray]:
    """Slope (°C/min over ``SLOPE_SPAN_S``, NaN until a span is seen) of each new sample, the
    *steady trend* flag (slow and hardly changed over ``TREND_SPAN_S``) and the new history
    (the last ``SLOPE_SPAN_S + TREND_SPAN_S`` smoothed samples, NaN-padded at the start)."""
    span, trend = _samples(SLOPE_SPAN_S, fs), _samples(TREND_SPAN_S, fs)
    size = span + trend
    if history.size < size:
        history = np.concatenate((np.full(size - history.size, np.nan), history))
    hist = np.concatenate((history, y))
    all_slopes = (hist[span:] - hist[:-span]) * (60.0 * fs / span)  # all_slopes[j] ends at j+span
    slope = all_slopes[trend:]
    earlier = all_slopes[: y.size]
    steady = (np.abs(slope) <= th.trend_slope_c_per_min) & (
        np.abs(slope - earlier) <= th.trend_steady_c_per_min
    )
    return slope, steady, hist[hist.size - size :].copy()


def _doffing(
    state: TempState, slope: FloatArray, abs_idx: npt.NDArray[np.int64]
) -> tuple[BoolArray, int, int]:
    """Off-body latch per sample: set by a fall steeper than ``doff_slope_c_per_min`` for
    ``doff_hold_s``, cleared by a rise steeper than ``don_slope_c_per_min`` as long; also
    the new last-not-falling / last-not-rising indices."""
    th = state.thresholds
    hold = _samples(th.doff_hold_s, state.fs_hz)
    not_falling = _last_index(~(slope < -th.doff_slope_c_per_min), abs_idx, state.last_not_falling)
    not_rising = _last_index(~(slope > th.don_slope_c_per_min), abs_idx, state.last_not_rising)
    doffed = (abs_idx - not_falling) >= hold
    donned = (abs_idx - not_rising) >= hold
    off = _hysteresis(doffed, donned, state.off_body)
    return off, int(not_falling[-1]), int(not_rising[-1])


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

    slope, steady, history = _slopes(state.history, y, fs, th)
    on_body = (y >= th.on_body_min_c) & (y <= th.on_body_max_c)
    off, last_not_falling, last_not_rising = _doffing(state, slope, abs_idx)
    calm = (np.abs(slope) <= th.settle_slope_c_per_min) | steady
    last_loud = _last_index(~calm | ~on_body | off, abs_idx, state.last_loud)
    quiet = (abs_idx - last_loud) >= _samples(th.settle_hold_s, fs)
    shaken = (np.abs(slope) > th.unsettle_slope_c_per_min) | ~on_body | off
    settled = _hysteresis(quiet, shaken, state.settled)

    sustain = _samples(th.sustain_s, fs)
    fevers, fever = _alarm(
        state.fever, settled & (y >= th.fever_on_c), (y < th.fever_off_c) | off, abs_idx, sustain
    )
    colds, hypo = _alarm(
        state.hypothermia,
        settled & (y <= th.hypothermia_on_c),
        (y > th.hypothermia_off_c) | off,
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
        history=history,
        last_loud=int(last_loud[-1]),
        settled=bool(settled[-1]),
        last_not_falling=last_not_falling,
        last_not_rising=last_not_rising,
        off_body=bool(off[-1]),
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
