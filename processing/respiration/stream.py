"""Streaming respiration from a respiratory band: per-breath and 30 s rates, apnoea alarm.

Role: ``resp_step`` feeds the next chunk of a band signal through the breath detector of
``processing.respiration.breaths`` (state carried in a frozen ``RespState``) and reports:

* ``VitalKind.BREATH_RATE`` per breath once its closing onset is confirmed (about 1-2 s
  after it): ``t_s`` that onset, ``window_s`` the breath's duration, ``quality`` 20 when
  the breath touched a motion artefact, else 100;
* ``VitalKind.RESP_RATE`` per window ``[30 k, 30 (k+1))`` s of the stream's timeline,
  ``DECISION_DELAY_S`` (5 s) after the window's end: ``t_s`` the window's end,
  ``window_s`` 30, the rate ``60 n / sum(durations)`` over the window's artefact-free
  onset-to-onset intervals, ``quality`` the share of intervals that were usable; no value
  when none was (e.g. a whole window of apnoea or of motion);
* ``EventKind.APNOEA``, ``Severity.CRITICAL``, raised *during* the pause, as soon as it
  reaches 10 s (a monitor must alarm while the wearer is not breathing, not afterwards):
  ``t_s`` the estimated start of the pause (the last breath's peak plus the typical
  expiration time), ``end_s`` ``None`` (not known yet: when breathing resumes, the first
  ``BREATH_RATE`` after the pause spans it in its ``window_s``), ``detail`` ``pause_s``
  (10: raised at ``t_s + pause_s``) and ``last_breath_before_s`` (how long before ``t_s``
  the last breath began); durations only, no stream times (they mean nothing outside).
  One event per apnoea: no other until a breath onset is detected. Alarms are armed once
  two breaths are known (a band that never showed breathing raises none).

Window rate over ``[t0, t0 + W)`` (``window_rate``, ``window_rates``; the same definition
serves the truth in tests): the intervals between consecutive onsets both inside the
window, ``60 * n / sum(durations)`` (= ``60 (n-1) / (t_last - t_first)`` when no interval is
excluded); intervals touching a motion artefact are excluded and lower the quality.

Results do not depend on how the stream is cut into chunks (the detector's threshold
moves on a fixed 1 s grid; windows close at fixed sample indices), and equal the batch
``detect_breaths`` / ``window_rates(..., confirmed_s=...)`` results. Nothing is reported
for the first 8 s (warm-up).
Must not: do I/O, import ``gateway`` or ``devices``, log signal values, or loop per sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from processing.errors import check_stream_rate
from processing.findings import Event, EventKind, Findings, Severity, Vital, VitalKind
from processing.respiration.breaths import (
    APNOEA_S,
    MAX_FS_HZ,
    MIN_FS_HZ,
    BoolArray,
    Detector,
    Extremum,
    FloatArray,
    IntArray,
    RespInputError,
    apnoea_alarms,
    check_fs,
    check_signal,
    detector_step,
)

__all__ = [
    "ARTEFACT_QUALITY",
    "DECISION_DELAY_S",
    "WINDOW_S",
    "RespState",
    "WindowRates",
    "resp_step",
    "window_rate",
    "window_rates",
]

WINDOW_S = 30.0
ARTEFACT_QUALITY = 20
DECISION_DELAY_S = 5.0
"""An onset counts in a window when it was confirmed within this long after its end."""


@dataclass(frozen=True, slots=True)
class WindowRates:
    """Rates over consecutive windows ``[k W, (k+1) W)``; ``t_s`` is each window's end.

    ``rate_bpm`` is NaN where no usable interval lies in the window; ``quality`` (0-100)
    is the share of the window's intervals that were usable.
    """

    t_s: FloatArray
    rate_bpm: FloatArray
    intervals: IntArray
    quality: IntArray


def window_rate(
    onset_s: FloatArray, usable: BoolArray, start_s: float, end_s: float
) -> tuple[float, int, int]:
    """Rate over one window: ``(rate_bpm or NaN, usable intervals, quality 0-100)``.

    The intervals between consecutive onsets both in ``[start_s, end_s)``, except those
    not ``usable`` (``usable[i]`` is about the interval ending at onset ``i``):
    ``60 * n / sum(durations)``.
    """
    inside = np.flatnonzero((onset_s >= start_s) & (onset_s < end_s))
    if inside.size < 2:
        return math.nan, 0, 0
    durations = np.diff(onset_s[inside])
    ok = usable[inside[1:]]
    n = int(np.count_nonzero(ok))
    quality = round(100 * n / durations.size)
    if n == 0:
        return math.nan, 0, quality
    return 60.0 * n / float(np.sum(durations[ok])), n, quality


def window_rates(
    onset_s: npt.ArrayLike,
    *,
    t_end_s: float,
    window_s: float = 30.0,
    usable: npt.ArrayLike | None = None,
    confirmed_s: npt.ArrayLike | None = None,
) -> WindowRates:
    """Rates over the complete windows ``[k W, (k+1) W)`` before ``t_end_s``.

    With ``confirmed_s`` (detections) an onset counts only if it was confirmed within
    ``DECISION_DELAY_S`` after the window's end, as in the stream; truth passes none.
    """
    onsets = np.asarray(onset_s, dtype=np.float64)
    ok = np.ones(onsets.size, bool) if usable is None else np.asarray(usable, dtype=np.bool_)
    known = onsets if confirmed_s is None else np.asarray(confirmed_s, dtype=np.float64)
    ends = window_s * np.arange(1, math.floor(t_end_s / window_s + 1e-9) + 1)
    rows = []
    for end in ends.tolist():
        keep = known < end + DECISION_DELAY_S
        rows.append(window_rate(onsets[keep], ok[keep], end - window_s, end))
    rate, n, quality = zip(*rows, strict=True) if rows else ((), (), ())
    return WindowRates(
        ends.astype(np.float64),
        np.asarray(rate, dtype=np.float64),
        np.asarray(n, dtype=np.int64),
        np.asarray(quality, dtype=np.int64),
    )


@dataclass(frozen=True, slots=True)
class RespState:
    """Everything ``resp_step`` carries between chunks (bounded: one window of onsets)."""

    detector: Detector
    onset_s: FloatArray
    """Onsets not yet before the next window's start, with when each was confirmed."""
    confirmed_s: FloatArray
    usable: BoolArray
    next_window: int
    armed: bool
    pending_alarm: int
    fired: bool

    @classmethod
    def initial(cls, *, fs_hz: float) -> RespState:
        empty = np.empty(0)
        return cls(
            Detector.initial(fs_hz=check_fs(fs_hz)),
            empty, empty, np.empty(0, np.bool_), 0, False, 0, False,
        )  # fmt: skip


def _breath_vitals(state: RespState, onsets: list[Extremum], fs: float) -> list[Vital]:
    last = state.detector.last_onset
    prev_s = last / fs if last >= 0 else math.nan
    vitals: list[Vital] = []
    for e in onsets:
        t = e.index / fs
        if math.isfinite(prev_s):
            quality = ARTEFACT_QUALITY if e.artefact else 100
            vitals.append(Vital(t, VitalKind.BREATH_RATE, 60.0 / (t - prev_s), t - prev_s, quality))
        prev_s = t
    return vitals


def _windows(state: RespState, now_s: float) -> tuple[list[Vital], RespState]:
    vitals: list[Vital] = []
    k = state.next_window
    onset_s, confirmed_s, usable = state.onset_s, state.confirmed_s, state.usable
    while (k + 1) * WINDOW_S + DECISION_DELAY_S <= now_s:
        end = (k + 1) * WINDOW_S
        known = confirmed_s < end + DECISION_DELAY_S
        rate, _, quality = window_rate(onset_s[known], usable[known], end - WINDOW_S, end)
        if math.isfinite(rate):
            vitals.append(Vital(end, VitalKind.RESP_RATE, rate, WINDOW_S, quality))
        k += 1
        keep = onset_s >= k * WINDOW_S
        onset_s, confirmed_s, usable = onset_s[keep], confirmed_s[keep], usable[keep]
    return vitals, replace(
        state, onset_s=onset_s, confirmed_s=confirmed_s, usable=usable, next_window=k
    )


def resp_step(
    state: RespState, chunk: npt.ArrayLike, *, fs_hz: float
) -> tuple[Findings, RespState]:
    """Feed the next samples of the band signal (any length, a.u.); see the module doc.

    Raises ``RespInputError`` (``"fs_mismatch"``, ``"not_1d"``, ``"not_finite"``); the
    state is unchanged then, so the caller may skip the bad chunk or restart.
    """
    fs = state.detector.fs_hz
    check_stream_rate(fs_hz, fs, low=MIN_FS_HZ, high=MAX_FS_HZ, error=RespInputError)
    x = check_signal(chunk)
    extrema, detector = detector_step(state.detector, x)
    onsets = [e for e in extrema if e.onset]
    vitals = _breath_vitals(state, onsets, fs)
    alarms, armed, pending, fired = apnoea_alarms(
        extrema,
        armed=state.armed,
        pending=state.pending_alarm,
        fired=state.fired,
        last_onset=state.detector.last_onset,
        end=detector.n,
    )
    events = [
        Event(
            (alarm - round(APNOEA_S * fs)) / fs,
            EventKind.APNOEA,
            Severity.CRITICAL,
            detail={
                "pause_s": APNOEA_S,
                "last_breath_before_s": round((alarm - round(APNOEA_S * fs) - onset) / fs, 3),
            },
        )
        for alarm, onset in alarms
    ]
    state = RespState(
        detector,
        np.concatenate((state.onset_s, [e.index / fs for e in onsets])),
        np.concatenate((state.confirmed_s, [e.confirmed / fs for e in onsets])),
        np.concatenate((state.usable, [not e.artefact for e in onsets])).astype(np.bool_),
        state.next_window,
        armed,
        pending,
        fired,
    )
    window_vitals, state = _windows(state, detector.n / fs)
    vitals.sort(key=lambda v: v.t_s)
    ordered = sorted((*vitals, *window_vitals), key=lambda v: v.t_s)
    return Findings(tuple(ordered), tuple(events)), state
