"""Breath detection on a respiratory band (inductance or strain) signal, batch and core.

Role: the one breath detector of ``processing``, used whole-array by ``detect_breaths`` and
chunk by chunk by ``processing.respiration.stream`` (so batch and streaming agree exactly):

* a causal 4th-order Butterworth low-pass (1.2 Hz, SOS, started at the first sample's level)
  keeps breathing up to ~50 breaths/min and removes noise; no high-pass, because a
  high-pass turns the flat end-expiration of an apnoea into a slow rise that looks like a
  breath; the detector's relative threshold makes baseline drift harmless instead;
* an advanced-counting peak/trough detector with hysteresis (``_count_adv_hysteresis``);
* breath depths forgotten and relearned (``_relearn``) when breathing goes on shallower
  after an apnoea's length without a breath (a loosened band), so the rate comes back;
* motion-artefact marking from the 1.5-5 Hz envelope (breathing has little power there);
* per-breath rates (``breath_rates``); window rates are in ``processing.respiration.stream``.

A breath is onset (start of inspiration, the trough) to the next onset.
Must not: do I/O, import ``gateway`` or ``devices``, log signal values, or loop per sample
in Python (the loop is per confirmed peak or trough).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy import signal

from processing.errors import SignalInputError, check_rate, samples_1d

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

MIN_FS_HZ = 5.0
MAX_FS_HZ = 1000.0
LOWPASS_HZ = 1.2
ARTEFACT_BAND_HZ = (1.5, 5.0)
APNOEA_S = 10.0
"""A pause in breathing at least this long is an apnoea."""

__all__ = [
    "APNOEA_S",
    "BreathRates",
    "Breaths",
    "RespInputError",
    "breath_rates",
    "detect_breaths",
]


class RespInputError(SignalInputError):
    """Respiration input that cannot be used; ``reason`` is a short tag: ``"fs_range"``,
    ``"fs_mismatch"``, ``"not_1d"``, ``"not_finite"``; for EDR also ``"length_mismatch"``
    and ``"bad_time"``. Signal values never go in the message."""

    signal = "resp"


def check_fs(fs_hz: float) -> float:
    """``fs_hz`` as a float, or :class:`RespInputError` ``fs_range`` outside 5-1000 Hz."""
    return check_rate(fs_hz, low=MIN_FS_HZ, high=MAX_FS_HZ, error=RespInputError)


def check_signal(resp: npt.ArrayLike) -> FloatArray:
    """``resp`` as a 1-D float64 array, or :class:`RespInputError` ``not_1d`` /
    ``not_finite``."""
    return samples_1d(resp, error=RespInputError)


@lru_cache(maxsize=32)
def filter_designs(fs_hz: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Low-pass (breathing), artefact band-pass, and the envelope's smoothing low-pass."""
    nyquist = fs_hz / 2.0
    low = np.asarray(signal.butter(4, LOWPASS_HZ, fs=fs_hz, output="sos"), dtype=np.float64)
    high_edge = min(ARTEFACT_BAND_HZ[1], 0.8 * nyquist)
    band = np.asarray(
        signal.butter(2, (ARTEFACT_BAND_HZ[0], high_edge), "bandpass", fs=fs_hz, output="sos"),
        dtype=np.float64,
    )
    smooth = np.asarray(signal.butter(2, 0.5, fs=fs_hz, output="sos"), dtype=np.float64)
    return low, band, smooth


@dataclass(frozen=True, slots=True)
class Extremum:
    """A confirmed trough (``onset``: start of inspiration) or peak, as sample indices.

    ``confirmed`` is the sample at which it became certain; ``alarm`` the sample at which
    the pause after it becomes an apnoea unless another extremum is confirmed first;
    ``artefact`` (onsets only) whether the breath ending at it touched a motion artefact.
    """

    onset: bool
    index: int
    value: float
    confirmed: int
    alarm: int
    artefact: bool


@dataclass(frozen=True, slots=True)
class Detector:
    """Chunk-invariant state of the breath detector (sample indices are absolute)."""

    fs_hz: float
    n: int
    low_zi: FloatArray | None
    band_zi: FloatArray | None
    smooth_zi: FloatArray | None
    tail: FloatArray
    """The last ``TAIL_S`` seconds of the low-passed signal (ends at sample ``n``)."""
    rising: bool
    ext_value: float
    ext_index: int
    envelope_max: float
    envelope_maxima: tuple[float, ...]
    excursions: tuple[float, ...]
    inspirations_s: tuple[float, ...]
    expirations_s: tuple[float, ...]
    last_onset: int
    onset_value: float
    last_peak: int
    floor: float = 0.0
    """Least warm-up threshold, set when the breath depths are forgotten (``_relearn``)."""

    @classmethod
    def initial(cls, *, fs_hz: float) -> Detector:
        fs = check_fs(fs_hz)
        empty = np.empty(0)
        return cls(
            fs, 0, None, None, None, empty, True, -math.inf, 0, 0.0, (), (), (), (), -1, 0.0, -1
        )


TAIL_S = 20.0
_WARMUP_S = 8.0
_HISTORY = 8
_HYSTERESIS = 0.3
_WARMUP_HYSTERESIS = 0.2
_PAUSE_HYSTERESIS = 0.5
_PAUSE_BREATHS = 2.0
_ARMED_AFTER = 2
_NO_ALARM = 2**62
_ONSET_SLOPE = 0.05
_ARTEFACT_FRACTION = 0.25
_ARTEFACT_OVER_FLOOR = 2.5
_FLOOR_HISTORY = 32
_RELEARN_DEPTH = 0.15
_RELEARN_NOISE = 3.0
_RELEARN_SWINGS = 3
_DEFAULT_TI_S, _DEFAULT_TE_S = 1.6, 2.4


def _median(values: tuple[float, ...], default: float) -> float:
    return float(np.median(values)) if values else default


def _breath_s(det: Detector) -> float:
    return _median(det.inspirations_s, _DEFAULT_TI_S) + _median(det.expirations_s, _DEFAULT_TE_S)


def _hysteresis(det: Detector, tail: FloatArray, at: int) -> float:
    """Minimum rise or fall that confirms a trough or peak: a fraction of the typical
    excursion, larger once breathing has paused for two typical breaths (noise in a long
    flat stretch must not pass for a breath; a resuming breath is a full one)."""
    if len(det.excursions) >= _HISTORY // 2:
        last = max(det.last_onset, det.last_peak)
        paused = at - last > _PAUSE_BREATHS * _breath_s(det) * det.fs_hz
        h = (_PAUSE_HYSTERESIS if paused else _HYSTERESIS) * _median(det.excursions, 0.0)
    else:
        recent = tail[-round(15.0 * det.fs_hz) :]
        h = _WARMUP_HYSTERESIS * float(np.ptp(recent)) if recent.size else 0.0
        h = max(h, det.floor)
    return h if h > 0.0 else math.inf


def _swings(x: FloatArray, h: float) -> int:
    """How many alternating rises and falls of at least ``h`` the zig-zag finds in ``x``."""
    count, pos, rising = 0, 0, True
    while pos < x.size - 1:
        seg = x[pos:]
        if count == 0:  # the first swing may go either way
            up = np.flatnonzero(seg >= np.minimum.accumulate(seg) + h)
            down = np.flatnonzero(seg <= np.maximum.accumulate(seg) - h)
            first_up = int(up[0]) if up.size else seg.size
            first_down = int(down[0]) if down.size else seg.size
            stop, rising = min(first_up, first_down), first_up < first_down
        else:
            run = (np.maximum if rising else np.minimum).accumulate(seg)
            hit = np.flatnonzero(seg <= run - h) if rising else np.flatnonzero(seg >= run + h)
            stop, rising = (int(hit[0]) if hit.size else seg.size), not rising
        if stop >= seg.size:
            break
        count, pos = count + 1, pos + stop
    return count


def _relearn(det: Detector, tail: FloatArray, at: int) -> Detector:
    """Forget the breath depths when breathing goes on, shallower, after an apnoea's length.

    The depths only update when a breath is found, so breathing that becomes persistently
    shallower (a loosened or slipped band, a posture change) would otherwise stay below the
    threshold for good. Once no breath has been found for an apnoea's length (the apnoea
    alarm has fired by then: its sample is never later) and the last 15 s hold at least
    1.5 breaths at warm-up thresholds (a fraction of their peak-to-peak, but never below a
    floor of 15 % of the typical depth and three times the usual high-frequency noise
    level), the depths are forgotten and the detector warms up again with that floor. A
    flat band (a real apnoea, its noise and slow drift) does not pass, so the old, deeper
    thresholds stay and the noise is not a breath.
    """
    last = max(det.last_onset, det.last_peak)
    if len(det.excursions) < _HISTORY // 2 or at - last <= APNOEA_S * det.fs_hz:
        return det  # (the cheap test first: this runs every second)
    if at - last <= (_breath_s(det) + APNOEA_S) * det.fs_hz:
        return det
    floor = max(
        _RELEARN_DEPTH * _median(det.excursions, 0.0),
        _RELEARN_NOISE * _floor(det.envelope_maxima),
    )
    recent = tail[-round(15.0 * det.fs_hz) :]
    h = max(_WARMUP_HYSTERESIS * float(np.ptp(recent)), floor) if recent.size else math.inf
    if _swings(recent, h) < _RELEARN_SWINGS:
        return det
    return replace(det, excursions=(), floor=floor)


def _floor(values: tuple[float, ...]) -> float:
    """10th percentile: the usual level even when artefacts touch most recent breaths."""
    return float(np.percentile(values, 10)) if values else 0.0


def _push(history: tuple[float, ...], value: float) -> tuple[float, ...]:
    return (*history, value)[-_HISTORY:]


def _filter(det: Detector, x: FloatArray) -> tuple[FloatArray, FloatArray, Detector]:
    """Low-passed signal and artefact envelope (both causal, state carried)."""
    low, band, smooth = filter_designs(det.fs_hz)
    low_zi = det.low_zi if det.low_zi is not None else signal.sosfilt_zi(low) * x[0]
    band_zi = det.band_zi if det.band_zi is not None else signal.sosfilt_zi(band) * x[0]
    smooth_zi = det.smooth_zi if det.smooth_zi is not None else np.zeros((smooth.shape[0], 2))
    y, low_zi = signal.sosfilt(low, x, zi=low_zi)
    b, band_zi = signal.sosfilt(band, x, zi=band_zi)
    e, smooth_zi = signal.sosfilt(smooth, b * b, zi=smooth_zi)
    env = np.sqrt(2.0 * np.maximum(e, 0.0))
    det = replace(det, low_zi=low_zi, band_zi=band_zi, smooth_zi=smooth_zi)
    return np.asarray(y, dtype=np.float64), np.asarray(env, dtype=np.float64), det


def _count_adv_hysteresis(
    det: Detector, y: FloatArray, env: FloatArray, buf: FloatArray, buf_start: int
) -> tuple[list[Extremum], Detector]:
    """Peaks and troughs confirmed in ``y`` (samples ``det.n ..``), with one threshold.

    An online form of the advanced counting method (Schäfer & Kratky, "Estimation of
    breathing rate from respiratory sinus arrhythmia: comparison of various methods",
    Ann. Biomed. Eng. 36(3):476-485, 2008): extremum pairs whose vertical distance is
    below a fraction (here 0.3) of the typical breath excursion are not breaths. Online it
    is a hysteresis (zig-zag) detector: a trough is confirmed once the signal has risen
    ``h`` above the running minimum, a peak once it has fallen ``h`` below the running
    maximum. The onset is placed where the rise leaves the trough (the last sample whose
    slope is below 5 % of a typical inspiration's), so a flat pause, even a drifting one,
    is not counted as part of the next breath.
    """
    # decided at the last whole second of the stream's timeline, so chunking does not matter
    at = max(det.n // max(1, round(det.fs_hz)) * max(1, round(det.fs_hz)), buf_start)
    det = _relearn(det, buf[: at - buf_start], at)
    h = _hysteresis(det, buf[: at - buf_start], at)
    found: list[Extremum] = []
    pos = 0
    while pos < y.size:
        seg = y[pos:]
        acc = np.maximum if det.rising else np.minimum
        run = acc.accumulate(np.concatenate(([det.ext_value], seg)))[1:]
        hit = np.flatnonzero(seg <= run - h) if det.rising else np.flatnonzero(seg >= run + h)
        stop = int(hit[0]) if hit.size else seg.size - 1
        extreme = float(run[stop])
        if (extreme > det.ext_value) if det.rising else (extreme < det.ext_value):
            part = seg[: stop + 1]
            where = int(np.argmax(part) if det.rising else np.argmin(part))
            det = replace(det, ext_value=extreme, ext_index=det.n + pos + where)
        env_max = max(det.envelope_max, float(np.max(env[pos : pos + stop + 1])))
        det = replace(det, envelope_max=env_max)
        if not hit.size:
            break
        confirmed = det.n + pos + stop
        extremum, det = (_peak if det.rising else _trough)(det, confirmed, h, buf, buf_start)
        found.append(extremum)
        det = replace(det, rising=not det.rising, ext_value=float(seg[stop]), ext_index=confirmed)
        pos += stop + 1
    return found, replace(det, n=det.n + y.size)


def _peak(
    det: Detector, confirmed: int, h: float, buf: FloatArray, buf_start: int
) -> tuple[Extremum, Detector]:
    fs, peak = det.fs_hz, det.ext_index
    if det.last_onset >= 0:
        det = replace(
            det,
            excursions=_push(det.excursions, det.ext_value - det.onset_value),
            inspirations_s=_push(det.inspirations_s, (peak - det.last_onset) / fs),
        )
    alarm = peak + round((_median(det.expirations_s, _DEFAULT_TE_S) + APNOEA_S) * fs)
    if len(det.expirations_s) < _ARMED_AFTER:  # no typical breath known yet
        alarm = _NO_ALARM
    return Extremum(False, peak, det.ext_value, confirmed, alarm, False), replace(
        det, last_peak=peak
    )


def _trough(
    det: Detector, confirmed: int, h: float, buf: FloatArray, buf_start: int
) -> tuple[Extremum, Detector]:
    fs = det.fs_hz
    lo = max(det.ext_index - buf_start, 0)
    window = buf[lo : confirmed - buf_start + 1]
    typical_slope = _median(det.excursions, h / _HYSTERESIS) / _median(
        det.inspirations_s, _DEFAULT_TI_S
    )
    flat = np.flatnonzero(np.diff(window) <= _ONSET_SLOPE * typical_slope / fs)
    onset = buf_start + lo + int(flat[-1]) + 1 if flat.size else det.ext_index
    if det.last_peak >= 0:
        det = replace(det, expirations_s=_push(det.expirations_s, (onset - det.last_peak) / fs))
    alarm = onset + round((_breath_s(det) + APNOEA_S) * fs)
    if len(det.expirations_s) < _ARMED_AFTER:  # no typical breath known yet
        alarm = _NO_ALARM
    # a motion artefact: high-frequency content large against the breath and well above
    # its level in the recent breaths (stationary noise is not an artefact)
    artefact = det.envelope_max > max(
        _ARTEFACT_FRACTION * _median(det.excursions, math.inf),
        _ARTEFACT_OVER_FLOOR * _floor(det.envelope_maxima),
    )
    value = float(buf[onset - buf_start])
    extremum = Extremum(True, onset, value, confirmed, alarm, artefact)
    maxima = (*det.envelope_maxima, det.envelope_max)[-_FLOOR_HISTORY:]
    return extremum, replace(
        det, last_onset=onset, onset_value=value, envelope_max=0.0, envelope_maxima=maxima
    )


def detector_step(det: Detector, x: FloatArray) -> tuple[list[Extremum], Detector]:
    """Run the detector over the next samples ``x`` (already checked: finite, 1-D)."""
    if x.size == 0:
        return [], det
    fs, start = det.fs_hz, det.n
    y, env, det = _filter(det, x)
    buf = np.concatenate((det.tail, y))
    buf_start = start - det.tail.size
    found: list[Extremum] = []
    # The threshold changes only on a fixed 1 s grid of the stream's timeline (and the
    # detector starts after a warm-up), so the result does not depend on the chunking.
    second = max(1, round(fs))
    warmup = round(_WARMUP_S * fs)
    cuts = np.arange((start // second + 1) * second, start + x.size, second).tolist()
    edges = [start, *cuts, start + x.size]
    for a, b in itertools.pairwise(edges):
        lo = max(a, warmup)
        if lo >= b:
            det = replace(det, n=b)
            continue
        det = replace(det, n=lo)
        part, det = _count_adv_hysteresis(
            det, y[lo - start : b - start], env[lo - start : b - start], buf, buf_start
        )
        found.extend(part)
    keep = round(TAIL_S * fs)
    return found, replace(det, tail=buf[-keep:].copy())


@dataclass(frozen=True, slots=True)
class Breaths:
    """Breaths found in a whole signal; index arrays are samples, ``_s`` arrays seconds.

    ``artefact[i]``: the breath ending at onset ``i`` touched a motion artefact (its rate is
    not trusted). ``confirmed[i]``: the sample at which onset ``i`` became certain (what a
    stream would have known). Apnoeas: ``apnoea_start_s`` the estimated end of the last
    breath's expiration, ``apnoea_end_s`` the next onset (NaN: still going at the end).
    """

    fs_hz: float
    onset_index: IntArray
    confirmed: IntArray
    artefact: BoolArray
    peak_index: IntArray
    apnoea_start_s: FloatArray
    apnoea_end_s: FloatArray

    @property
    def onset_s(self) -> FloatArray:
        return self.onset_index / self.fs_hz

    @property
    def confirmed_s(self) -> FloatArray:
        return self.confirmed / self.fs_hz

    @property
    def peak_s(self) -> FloatArray:
        return self.peak_index / self.fs_hz


def apnoea_alarms(
    extrema: list[Extremum], *, armed: bool, pending: int, fired: bool, last_onset: int, end: int
) -> tuple[list[tuple[int, int]], bool, int, bool]:
    """Apnoea alarms among confirmed extrema, in order: ``(alarm sample, last onset)``.

    The rule the stream uses: after every confirmed extremum the pause clock is set to its
    ``alarm`` sample; the apnoea fires when the stream reaches that sample (``< end``)
    before the next extremum is confirmed. Alarms are armed after the first onset (and an
    extremum carries none until two breaths are known); after one fires, no other until
    breathing resumes (an onset). Returns the new ``(armed, pending, fired)``.
    """
    alarms: list[tuple[int, int]] = []
    for e in extrema:
        if armed and not fired and pending < e.confirmed:
            alarms.append((pending, last_onset))
            fired = True
        if e.onset:
            armed, fired, last_onset = True, False, e.index
        pending = e.alarm
    if armed and not fired and pending < end:
        alarms.append((pending, last_onset))
        fired = True
    return alarms, armed, pending, fired


def detect_breaths(resp: npt.ArrayLike, *, fs_hz: float) -> Breaths:
    """Breath onsets, peaks, artefact marks and apnoeas in a whole respiratory-band signal.

    The same causal detector the stream runs (so the results agree sample for sample);
    nothing is found in the first 8 s (warm-up). Raises ``RespInputError``.
    """
    fs = check_fs(fs_hz)
    x = check_signal(resp)
    extrema, _ = detector_step(Detector.initial(fs_hz=fs), x)
    onsets = [e for e in extrema if e.onset]
    found, *_ = apnoea_alarms(
        extrema, armed=False, pending=0, fired=False, last_onset=-1, end=x.size
    )
    alarms = [alarm for alarm, _ in found]
    confirmed = np.asarray([e.confirmed for e in onsets], dtype=np.int64)
    onset_index = np.asarray([e.index for e in onsets], dtype=np.int64)
    resumed = np.searchsorted(confirmed, alarms, side="right")  # first onset after alarm
    ends = np.full(len(alarms), np.nan)
    known = resumed < onset_index.size
    ends[known] = onset_index[resumed[known]] / fs
    return Breaths(
        fs_hz=fs,
        onset_index=onset_index,
        confirmed=confirmed,
        artefact=np.asarray([e.artefact for e in onsets], dtype=np.bool_),
        peak_index=np.asarray([e.index for e in extrema if not e.onset], dtype=np.int64),
        apnoea_start_s=(np.asarray(alarms, dtype=np.float64) - round(APNOEA_S * fs)) / fs,
        apnoea_end_s=ends,
    )


@dataclass(frozen=True, slots=True)
class BreathRates:
    """One value per breath (onset to next onset), timed at the breath's end."""

    t_s: FloatArray
    duration_s: FloatArray
    rate_bpm: FloatArray
    artefact: BoolArray


def breath_rates(breaths: Breaths) -> BreathRates:
    """Per-breath rate ``60 / duration``; ``t_s`` is the onset that ends the breath."""
    onset = breaths.onset_s
    duration = np.diff(onset)
    return BreathRates(onset[1:], duration, 60.0 / duration, breaths.artefact[1:].copy())
