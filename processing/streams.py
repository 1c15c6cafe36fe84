"""One streaming processor per kind of signal, behind one step function.

Role: compose the modality processors into the per-stream pipelines the ingester runs,
so the gateway keeps one opaque state per (wearer, device, stream) and calls ``step``:

* ECG: signal quality (SQI, lead-off/flat line) → streaming R peaks → heart rate, HRV and
  rhythm alarms (suppressed while a lead is off or the line is flat, not for a low SQI
  alone: an asystole lowers the SQI itself) → ECG-derived respiration rate;
* respiratory band: breaths, rates, apnoea;
* temperature: smoothing, warm-up, fever/hypothermia;
* accelerometer: activity, posture, cadence, falls;
* RR intervals (Heart Rate Service straps): heart rate and HRV with artefact correction.

Samples arrive as the stream's consecutive chunks (any length); ``Findings`` times are
seconds since the stream's first sample (for RR: since the first interval's end). The
caller starts a new state after a discontinuity.

Must not: do I/O or import ``gateway`` or ``devices``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from processing.ecg.quality import EcgQualityState, ecg_quality_step
from processing.ecg.stream import RPeakState, r_peak_step
from processing.findings import Findings
from processing.heart.stream import HeartState, heart_step, rr_step
from processing.motion.stream import MotionState, motion_step
from processing.respiration.edr import EdrState, edr_step
from processing.respiration.stream import RespState, resp_step
from processing.temperature import TempState, temp_step

__all__ = ["Signal", "StreamState", "initial_state", "rr_intervals_step", "step"]


class Signal(enum.StrEnum):
    """The signals with a processor (values are the wire's stream names)."""

    ECG = "ecg"
    RESP = "resp"
    TEMP = "temp"
    ACCEL = "accel"
    RR = "rr"


@dataclass(frozen=True, slots=True)
class _Ecg:
    fs_hz: float
    quality: EcgQualityState
    peaks: RPeakState
    heart: HeartState
    edr: EdrState


@dataclass(frozen=True, slots=True)
class _Band:
    fs_hz: float
    resp: RespState


@dataclass(frozen=True, slots=True)
class _Temp:
    fs_hz: float
    temp: TempState


@dataclass(frozen=True, slots=True)
class _Motion:
    fs_hz: float
    motion: MotionState


@dataclass(frozen=True, slots=True)
class _Rr:
    heart: HeartState


StreamState = _Ecg | _Band | _Temp | _Motion | _Rr


def initial_state(signal: Signal, *, fs_hz: float | None = None) -> StreamState:
    """The state of a new stream; every signal but RR needs its sample rate."""
    if signal is Signal.RR:
        return _Rr(HeartState.initial())
    if fs_hz is None or not np.isfinite(fs_hz) or fs_hz <= 0:
        raise ValueError(f"{signal} needs a positive sample rate")
    if signal is Signal.ECG:
        return _Ecg(
            fs_hz,
            EcgQualityState.initial(fs_hz=fs_hz),
            RPeakState.initial(fs_hz=fs_hz),
            HeartState.initial(),
            EdrState.initial(),
        )
    if signal is Signal.RESP:
        return _Band(fs_hz, RespState.initial(fs_hz=fs_hz))
    if signal is Signal.TEMP:
        return _Temp(fs_hz, TempState.initial(fs_hz=fs_hz))
    return _Motion(fs_hz, MotionState.initial(fs_hz=fs_hz))


def step(state: StreamState, chunk: npt.ArrayLike) -> tuple[Findings, StreamState]:
    """Feed the next samples of a sampled stream (1-D, or (n, 3) for the accelerometer)."""
    match state:
        case _Ecg():
            return _ecg_step(state, chunk)
        case _Band(fs_hz=fs, resp=resp):
            found, resp = resp_step(resp, chunk, fs_hz=fs)
            return found, replace(state, resp=resp)
        case _Temp(fs_hz=fs, temp=temp):
            found, temp = temp_step(temp, chunk, fs_hz=fs)
            return found, replace(state, temp=temp)
        case _Motion(fs_hz=fs, motion=motion):
            found, motion = motion_step(motion, chunk, fs_hz=fs)
            return found, replace(state, motion=motion)
        case _Rr():
            raise ValueError("an RR stream is fed with rr_intervals_step")


def rr_intervals_step(
    state: StreamState, rr_ms: npt.ArrayLike, *, end_s: float
) -> tuple[Findings, StreamState]:
    """Feed RR intervals (ms) of consecutive beats, the last ending at ``end_s``."""
    if not isinstance(state, _Rr):
        raise ValueError("rr_intervals_step needs an RR stream's state")
    found, heart = rr_step(state.heart, rr_ms, end_s=end_s)
    return found, _Rr(heart)


def _ecg_step(state: _Ecg, chunk: npt.ArrayLike) -> tuple[Findings, _Ecg]:
    """Quality gates the rhythm alarms per second of signal: the chunk is cut on a 1 s
    grid of the stream (not of the chunk), so a long chunk of a stream that went flat
    halfway gates its beats as 1 s chunks would, and the findings stay chunk-invariant."""
    x = np.asarray(chunk, dtype=np.float64)
    grid = max(1, round(state.fs_hz))
    seen = state.peaks.samples_seen
    parts: list[Findings] = []
    start = 0
    while start < x.size:
        stop = min(x.size, start + grid - (seen + start) % grid)
        found, state = _ecg_second(state, x[start:stop])
        parts.append(found)
        start = stop
    merged = Findings.merge(parts)  # per second: a window's SQI can precede earlier beats
    vitals = tuple(sorted(merged.vitals, key=lambda v: v.t_s))
    events = tuple(sorted(merged.events, key=lambda e: e.t_s))
    return Findings(vitals, events), state


def _ecg_second(state: _Ecg, x: npt.NDArray[np.float64]) -> tuple[Findings, _Ecg]:
    fs = state.fs_hz
    q_found, quality = ecg_quality_step(state.quality, x, fs_hz=fs)
    peaks, peak_state = r_peak_step(state.peaks, x)
    beats_s = peaks.indices / fs
    now_s = peaks.decided_until / fs
    h_found, heart = heart_step(
        state.heart, beats_s, now_s=now_s, signal_ok=quality.leads_ok, rhythm_ok=quality.usable
    )
    e_found, edr = edr_step(state.edr, beats_s, peaks.amplitudes, now_s=now_s)
    found = Findings.merge((q_found, h_found, e_found))
    return found, _Ecg(fs, quality, peak_state, heart, edr)
