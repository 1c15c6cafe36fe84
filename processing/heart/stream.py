"""Streaming heart rate, HRV and rhythm alerts from R-peak times or a device's RR list.

Role: one pure step per batch of beats: RR intervals, artefact correction
(``processing.heart.rr``), per-beat HR, 10 s mean HR, SDNN/RMSSD/pNN50 over 60 s and 300 s,
LF/HF over 300 s (windows aligned to multiples of their length on the stream timeline), and
tachycardia, bradycardia and asystole events. Everything is a function of the beat sequence
and of the times the timeline is advanced to, handled in time order, so feeding the same
beats in any grouping gives the same findings.

Defaults (documented choices, not a standard):

* tachycardia: median-of-5 RR rate above 120 bpm, the run ends below 110 bpm; reported once
  per run when it has lasted 10 s and the rate is still above 120 bpm, at its onset (the beat
  where the rate first crossed); critical above 180 bpm, else warning. A warned run that then
  stays above 180 bpm for 10 s is reported once more, critical, at the time it crossed 180.
* bradycardia: rate below 40 bpm, ends above 45 bpm, same 10 s and escalation rules;
  critical below 30 bpm.
* runs need a trustworthy rhythm: a step fed with ``rhythm_ok=False`` (ECG too noisy for beat
  timing) ends the runs and forgets the raw rate, so 10 s of clean rhythm are needed again.
  Its beats still feed HR and HRV, with their quality scaled down by the noisy share.
* asystole: no beat for 4 s while the signal is usable, critical, at the last beat (or the
  time the signal became usable, or the stream's start); once per pause. The ECG stream
  starts at 0 s; an RR stream at the start of its first notification's intervals (its
  ``end_s`` if it has none).
* the alarms use the raw RR (a median of five absorbs an isolated missed or extra beat and
  reacts within three beats); the HR and HRV vitals use the corrected NN series.
* an interval over 3 s (under 20 bpm) is a pause: it feeds the alarms but not the NN series
  (HR and HRV treat it as a gap).
* a window closes once every interval ending in it is decided, or 6 s after its end; the 10 s
  HR needs intervals covering half the window, HRV 80 % (and 10 intervals), LF/HF 250 s.

Must not: do I/O, import ``gateway`` or ``devices``, or keep more than ~306 s of intervals.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from processing.findings import Event, EventKind, Findings, Severity, Vital, VitalKind
from processing.heart.hrv import hrv_time_domain, lf_hf, mean_hr_bpm
from processing.heart.rr import Artefact, CorrectedRR, RrCorrectorState, correct_step

FloatArray = npt.NDArray[np.float64]
LabelArray = npt.NDArray[np.int8]

__all__ = ["HeartState", "heart_step", "rr_step"]

HR_WINDOW_S = 10.0
HRV_WINDOWS_S = (60.0, 300.0)
_WINDOWS_S = (HR_WINDOW_S, *HRV_WINDOWS_S)
CLOSE_WAIT_S = 6.0
FLUSH_AFTER_S = 3.0
MAX_NN_MS = 1000.0 * FLUSH_AFTER_S
ASYSTOLE_S = 4.0
RUN_MIN_S = 10.0
TACHY_ON_BPM, TACHY_OFF_BPM, TACHY_CRITICAL_BPM = 120.0, 110.0, 180.0
BRADY_ON_BPM, BRADY_OFF_BPM, BRADY_CRITICAL_BPM = 40.0, 45.0, 30.0
_RATE_BEATS = 5
_MIN_HR_COVERAGE = 0.5
_MIN_HRV_COVERAGE = 0.8
_MIN_HRV_INTERVALS = 10
_CORRECTED_QUALITY = 50


@dataclass(frozen=True, slots=True)
class _Run:
    start_s: float
    alerted: bool
    severe_since_s: float | None = None
    escalated: bool = False


@dataclass(frozen=True, slots=True, eq=False)
class HeartState:
    """Streaming state: the corrector, the last raw beat, run trackers and the decided NN
    intervals of the open windows (``nn_*``, at most ~306 s). Build with :meth:`initial`."""

    corrector: RrCorrectorState
    time_s: float | None
    last_beat_s: float | None
    ok_since_s: float | None
    pause_alarmed: bool
    raw_rr_ms: tuple[float, ...]
    tachy: _Run | None
    brady: _Run | None
    nn_end_s: FloatArray
    nn_rr_ms: FloatArray
    nn_labels: LabelArray
    nn_span_ms: FloatArray
    last_decided_end_s: float
    next_close_s: tuple[float, ...]
    noisy_spans: tuple[tuple[float, float], ...] = ()

    @classmethod
    def initial(cls) -> HeartState:
        return cls(
            corrector=RrCorrectorState.initial(),
            time_s=None,
            last_beat_s=None,
            ok_since_s=None,
            pause_alarmed=False,
            raw_rr_ms=(),
            tachy=None,
            brady=None,
            nn_end_s=np.empty(0),
            nn_rr_ms=np.empty(0),
            nn_labels=np.empty(0, dtype=np.int8),
            nn_span_ms=np.empty(0),
            last_decided_end_s=-math.inf,
            next_close_s=(),
        )


class _Step:
    """Mutable scratch for one step: the state being built and what was found."""

    def __init__(self, state: HeartState) -> None:
        self.s = state
        self.vitals: list[Vital] = []
        self.events: list[Event] = []

    def replace(self, **changes: object) -> None:
        self.s = dataclasses.replace(self.s, **changes)  # type: ignore[arg-type]

    def findings(self) -> tuple[Findings, HeartState]:
        vitals = sorted(self.vitals, key=lambda v: v.t_s)
        events = sorted(self.events, key=lambda e: e.t_s)
        return Findings(tuple(vitals), tuple(events)), self.s


def _take_decided(step: _Step, decided: CorrectedRR) -> None:
    if decided.rr_ms.size == 0:
        return
    for end, rr, label in zip(
        decided.end_s.tolist(), decided.rr_ms.tolist(), decided.labels.tolist(), strict=True
    ):
        quality = 100 if label == Artefact.NORMAL else _CORRECTED_QUALITY
        if _noisy_share(step.s, end - rr / 1000.0, end) > 0.0:
            quality = 0
        step.vitals.append(Vital(end, VitalKind.HR_BEAT, 60000.0 / rr, rr / 1000.0, quality))
    s = step.s
    step.replace(
        nn_end_s=np.concatenate((s.nn_end_s, decided.end_s)),
        nn_rr_ms=np.concatenate((s.nn_rr_ms, decided.rr_ms)),
        nn_labels=np.concatenate((s.nn_labels, decided.labels)),
        nn_span_ms=np.concatenate((s.nn_span_ms, decided.span_ms)),
        last_decided_end_s=max(s.last_decided_end_s, float(decided.end_s[-1])),
    )


def _flush(step: _Step) -> None:
    decided, corrector = correct_step(step.s.corrector, [], [], final=True)
    step.replace(corrector=corrector)
    _take_decided(step, decided)


def _window_vitals(step: _Step, length_s: float, end_s: float) -> None:
    s = step.s
    sel = (s.nn_end_s >= end_s - length_s) & (s.nn_end_s < end_s)
    rr, ends = s.nn_rr_ms[sel], s.nn_end_s[sel]
    if rr.size == 0:
        return
    coverage = float(np.sum(rr)) / 1000.0 / length_s
    clean = 1.0 - _noisy_share(s, end_s - length_s, end_s)
    quality = round(100.0 * clean * float(np.mean(s.nn_labels[sel] == Artefact.NORMAL)))
    if length_s == HR_WINDOW_S:
        if coverage >= _MIN_HR_COVERAGE and rr.size >= 2:
            rate = mean_hr_bpm(s.nn_span_ms[sel])
            step.vitals.append(Vital(end_s, VitalKind.HR, rate, length_s, quality))
        return
    if coverage < _MIN_HRV_COVERAGE or rr.size < _MIN_HRV_INTERVALS:
        return
    td = hrv_time_domain(rr, end_s=ends)
    for kind, value in (
        (VitalKind.SDNN, td.sdnn_ms),
        (VitalKind.RMSSD, td.rmssd_ms),
        (VitalKind.PNN50, td.pnn50_pct),
    ):
        if math.isfinite(value):
            step.vitals.append(Vital(end_s, kind, value, length_s, quality))
    if length_s == HRV_WINDOWS_S[-1]:
        ratio = lf_hf(rr, end_s=ends)
        if ratio is not None:
            step.vitals.append(Vital(end_s, VitalKind.LF_HF, ratio, length_s, quality))


def _noisy_share(s: HeartState, start_s: float, end_s: float) -> float:
    """Share of ``[start_s, end_s)`` fed with ``rhythm_ok=False``."""
    if end_s <= start_s or not s.noisy_spans:
        return 0.0
    covered = sum(max(0.0, min(b, end_s) - max(a, start_s)) for a, b in s.noisy_spans)
    return min(1.0, covered / (end_s - start_s))


def _mark_noisy(step: _Step, start_s: float, end_s: float) -> None:
    spans = step.s.noisy_spans
    if end_s <= start_s:
        return
    if spans and start_s <= spans[-1][1]:
        spans = (*spans[:-1], (spans[-1][0], max(spans[-1][1], end_s)))
    else:
        spans = (*spans, (start_s, end_s))
    step.replace(noisy_spans=spans)


def _trim(step: _Step) -> None:
    s = step.s
    oldest = min(n - w for n, w in zip(s.next_close_s, _WINDOWS_S, strict=True))
    if s.noisy_spans and s.noisy_spans[0][1] < oldest:
        step.replace(noisy_spans=tuple(sp for sp in s.noisy_spans if sp[1] >= oldest))
        s = step.s
    if s.nn_end_s.size and s.nn_end_s[0] < oldest:
        keep = s.nn_end_s >= oldest
        step.replace(
            nn_end_s=s.nn_end_s[keep],
            nn_rr_ms=s.nn_rr_ms[keep],
            nn_labels=s.nn_labels[keep],
            nn_span_ms=s.nn_span_ms[keep],
        )


def _advance(step: _Step, t: float) -> None:
    """Move the timeline to ``t``: flush the corrector after a pause, close windows and
    raise asystole, all in the order of their own (virtual) times."""
    s = step.s
    if s.time_s is not None and t < s.time_s:
        t = s.time_s
    if not s.next_close_s:
        step.replace(next_close_s=tuple((math.floor(t / w) + 1) * w for w in _WINDOWS_S))
    _asystole(step, t)
    while True:
        s = step.s
        timers: list[tuple[float, int]] = []
        if s.corrector.pending:
            timers.append((s.corrector.pending[-1][0] + FLUSH_AFTER_S, -1))
        for i, (nxt, w) in enumerate(zip(s.next_close_s, _WINDOWS_S, strict=True)):
            if not s.corrector.pending and (s.nn_end_s.size == 0 or s.nn_end_s[-1] < nxt - w):
                # nothing can fall in the windows before t: skip them silently
                skip_to = (math.floor((t - CLOSE_WAIT_S) / w) + 1) * w
                if skip_to > nxt:
                    nxt = skip_to
                    closes = list(s.next_close_s)
                    closes[i] = nxt
                    step.replace(next_close_s=tuple(closes))
            timers.append((nxt if s.last_decided_end_s >= nxt else nxt + CLOSE_WAIT_S, i))
        due = [tm for tm in timers if tm[0] <= t]
        if not due:
            break
        _, which = min(due)
        if which < 0:
            _flush(step)
            continue
        closes = list(step.s.next_close_s)
        _window_vitals(step, _WINDOWS_S[which], closes[which])
        closes[which] += _WINDOWS_S[which]
        step.replace(next_close_s=tuple(closes))
        _trim(step)
    step.replace(time_s=t)


def _asystole(step: _Step, t: float) -> None:
    s = step.s
    ref = s.last_beat_s if s.last_beat_s is not None else s.ok_since_s
    if ref is None or s.pause_alarmed or t - ref < ASYSTOLE_S:
        return
    step.events.append(
        Event(ref, EventKind.ASYSTOLE, Severity.CRITICAL, detail={"min_pause_s": ASYSTOLE_S})
    )
    step.replace(pause_alarmed=True)


def _run(
    step: _Step, run: _Run | None, rate: float, t: float, kind: EventKind, tachy: bool
) -> _Run | None:
    on, off, critical = (
        (TACHY_ON_BPM, TACHY_OFF_BPM, TACHY_CRITICAL_BPM)
        if tachy
        else (BRADY_ON_BPM, BRADY_OFF_BPM, BRADY_CRITICAL_BPM)
    )
    inside = (rate > on) if tachy else (rate < on)
    leaving = (rate < off) if tachy else (rate > off)
    severe = (rate > critical) if tachy else (rate < critical)
    if run is None:
        return _Run(t, False, t if severe else None) if inside else None
    if leaving:
        return None
    since = (t if run.severe_since_s is None else run.severe_since_s) if severe else None
    run = dataclasses.replace(run, severe_since_s=since)
    if not run.alerted:
        if t - run.start_s < RUN_MIN_S or not inside:
            return run
        detail: dict[str, float | str] = {"rate_bpm": round(rate, 1), "threshold_bpm": on}
        sev = Severity.CRITICAL if severe else Severity.WARNING
        step.events.append(Event(run.start_s, kind, sev, detail=detail))
        return dataclasses.replace(run, alerted=True, escalated=severe)
    if not run.escalated and since is not None and t - since >= RUN_MIN_S:
        detail = {"rate_bpm": round(rate, 1), "threshold_bpm": critical}
        step.events.append(Event(since, kind, Severity.CRITICAL, detail=detail))
        return dataclasses.replace(run, escalated=True)
    return run


def _add_interval(step: _Step, end_s: float, rr_ms: float, rhythm_ok: bool) -> None:
    """One raw interval: rhythm runs on the raw RR (only while the rhythm is trusted), then
    the corrector."""
    s = step.s
    raw = (*s.raw_rr_ms, rr_ms)[-_RATE_BEATS:] if rhythm_ok else ()
    tachy, brady = (s.tachy, s.brady) if rhythm_ok else (None, None)
    if len(raw) >= 3:
        rate = 60000.0 / float(np.median(raw))
        tachy = _run(step, tachy, rate, end_s, EventKind.TACHYCARDIA, tachy=True)
        brady = _run(step, brady, rate, end_s, EventKind.BRADYCARDIA, tachy=False)
    step.replace(raw_rr_ms=raw, tachy=tachy, brady=brady)
    if rr_ms > MAX_NN_MS:
        return  # a pause (the corrector was flushed at its 3rd second): a gap, not an NN
    decided, corrector = correct_step(s.corrector, [end_s], [rr_ms])
    step.replace(corrector=corrector)
    _take_decided(step, decided)


def _add_beat(step: _Step, beat_s: float, rr_ms: float | None, rhythm_ok: bool = True) -> None:
    _advance(step, beat_s)
    if rr_ms is not None:
        _add_interval(step, beat_s, rr_ms, rhythm_ok)
    step.replace(last_beat_s=beat_s, pause_alarmed=False)


def _signal_lost(step: _Step, now_s: float) -> None:
    """Unusable signal: decide what is pending, forget the beat chain and the runs; the
    asystole clock restarts when the signal is usable again."""
    _flush(step)
    step.replace(
        last_beat_s=None,
        ok_since_s=now_s,
        pause_alarmed=False,
        raw_rr_ms=(),
        tachy=None,
        brady=None,
    )
    _advance(step, now_s)


def heart_step(
    state: HeartState,
    beats_s: npt.ArrayLike,
    *,
    now_s: float,
    signal_ok: bool = True,
    rhythm_ok: bool = True,
) -> tuple[Findings, HeartState]:
    """Feed R-peak times (s, increasing, on the stream's timeline that starts at 0 s)
    decided since the last step; ``now_s`` is the time up to which the beat list is final.
    With ``signal_ok=False`` the step's beats are dropped, no HR, tachy/brady or asystole is
    reported and the pause clock restarts. With ``rhythm_ok=False`` (signal present but too
    noisy to time beats) the beats feed HR/HRV at lowered quality and the asystole clock, but
    tachycardia/bradycardia runs end and do not start."""
    step = _Step(state)
    if state.time_s is None and state.ok_since_s is None and state.last_beat_s is None:
        step.replace(ok_since_s=0.0)  # the pause clock runs from the stream's start
    if not signal_ok:
        _signal_lost(step, float(now_s))
        return step.findings()
    beats = np.asarray(beats_s, dtype=np.float64).ravel()
    beats = beats[np.isfinite(beats)]
    last = state.last_beat_s
    if not rhythm_ok:
        since = state.time_s if state.time_s is not None else 0.0
        _mark_noisy(step, since, max(float(now_s), float(beats.max()) if beats.size else since))
    for b in beats.tolist():
        if last is not None and b <= last:
            continue
        _add_beat(step, b, None if last is None else (b - last) * 1000.0, rhythm_ok)
        last = b
    _advance(step, max(float(now_s), last if last is not None else -math.inf))
    return step.findings()


def rr_step(
    state: HeartState, rr_ms: npt.ArrayLike, *, end_s: float
) -> tuple[Findings, HeartState]:
    """Feed RR intervals (ms) of consecutive beats, the last ending at ``end_s`` (a BLE Heart
    Rate Service notification). Beat times are rebuilt backwards from ``end_s`` and kept
    increasing; the intervals themselves go to the corrector unchanged. An empty ``rr_ms``
    (a notification without intervals) only advances the timeline to ``end_s``, so a pause
    reaching 4 s raises the asystole in that step."""
    step = _Step(state)
    rr = np.asarray(rr_ms, dtype=np.float64).ravel()
    rr = rr[np.isfinite(rr) & (rr > 0)]
    after = np.concatenate((np.cumsum(rr[::-1])[::-1][1:], [0.0])) if rr.size else rr
    ends = float(end_s) - after / 1000.0
    if state.time_s is None and state.ok_since_s is None and state.last_beat_s is None:
        # the pause clock runs from the stream's first moment: its first interval's start
        step.replace(ok_since_s=float(end_s) - float(np.sum(rr)) / 1000.0)
    last = state.last_beat_s
    for b, r in zip(ends.tolist(), rr.tolist(), strict=True):
        t = b if last is None else max(b, last + 1e-6)
        _add_beat(step, t, r)
        last = t
    _advance(step, max(float(end_s), last if last is not None else -math.inf))
    return step.findings()
