"""Streaming accelerometer processing: activity, posture, cadence, posture changes, falls.

Role: :func:`motion_step` feeds the next ``(n, 3)`` mG chunk through the gravity low-pass,
ENMO, the step detector, the posture debouncer and the fall rule, all with their state
carried in :class:`MotionState`, and reports per aligned 10 s window (``t_s`` its end):

* ``VitalKind.ACTIVITY``: mean ENMO (mG);
* ``VitalKind.POSTURE``: the code (``Posture``) held for most of the window;
* ``VitalKind.CADENCE``: steps/min from the window's steps (0 when not walking/running);

and the events ``POSTURE_CHANGE`` (info; ``detail`` ``from``/``to`` posture names, ``t_s``
where the new posture began) once a new posture has held ``POSTURE_HOLD_S``, and ``FALL``
(critical; ``t_s`` the impact) ``POST_END_S`` after the impact. A window is reported once
the step detector has decided its last step (``STEP_HALF_S`` after its end).

Must not: do I/O, import ``gateway`` or ``devices``, or loop per sample in Python (the
loops are per completed window, per candidate impact).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from processing.errors import check_stream_rate
from processing.findings import Event, EventKind, Findings, Severity, Vital, VitalKind
from processing.motion.activity import (
    cadence_spm,
    enmo_mg,
    initial_step_tail,
    step_half_width,
    steps_step,
    vertical_bandpass,
)
from processing.motion.falls import FallTail, falls_step
from processing.motion.posture import (
    MAX_FS_HZ,
    MIN_FS_HZ,
    CodeArray,
    FloatArray,
    MotionInputError,
    Posture,
    check_fs,
    classify_posture,
    gravity_step,
    validate_acc,
)

__all__ = ["POSTURE_HOLD_S", "WINDOW_S", "MotionState", "motion_step"]

WINDOW_S = 10.0
POSTURE_HOLD_S = 3.0
_NO_POSTURE = -1


@dataclass(frozen=True, slots=True, eq=False)
class MotionState:
    """Carried between :func:`motion_step` calls; build the first with :meth:`initial`."""

    fs_hz: float
    n_seen: int
    gravity_zi: FloatArray | None
    band_zi: FloatArray | None
    step_tail: FloatArray
    fall_tail: FallTail
    window_enmo: FloatArray
    window_codes: CodeArray
    window_steps_s: FloatArray
    stable_posture: int
    run_posture: int
    run_start: int

    @classmethod
    def initial(cls, *, fs_hz: float) -> MotionState:
        fs = check_fs(fs_hz)
        return cls(
            fs_hz=fs,
            n_seen=0,
            gravity_zi=None,
            band_zi=None,
            step_tail=initial_step_tail(fs),
            fall_tail=FallTail.initial(fs_hz=fs),
            window_enmo=np.zeros(0),
            window_codes=np.zeros(0, dtype=np.int8),
            window_steps_s=np.zeros(0),
            stable_posture=_NO_POSTURE,
            run_posture=_NO_POSTURE,
            run_start=0,
        )


def _bound(k: int, fs_hz: float) -> int:
    """First absolute sample index of window ``k``."""
    return math.ceil(k * WINDOW_S * fs_hz - 1e-9)


def _posture_changes(
    state: MotionState, codes: CodeArray
) -> tuple[list[Event], tuple[int, int, int]]:
    """Debounced posture changes: a run of one code lasting ``POSTURE_HOLD_S`` becomes the
    stable posture; returns the events and the new (stable, run code, run start)."""
    fs, n0, m = state.fs_hz, state.n_seen, codes.size
    starts = np.concatenate(([0], np.flatnonzero(codes[1:] != codes[:-1]) + 1))
    run_codes = codes[starts].astype(np.int64)
    abs_starts = (n0 + starts).astype(np.int64)
    if run_codes[0] == state.run_posture:
        abs_starts[0] = state.run_start
    ends = np.concatenate((abs_starts[1:], [n0 + m]))
    held = (ends - abs_starts) >= max(1, round(POSTURE_HOLD_S * fs))
    seq = np.concatenate(([state.stable_posture], run_codes[held]))
    held_starts = abs_starts[held]
    events = [
        Event(
            t_s=float(held_starts[j]) / fs,
            kind=EventKind.POSTURE_CHANGE,
            severity=Severity.INFO,
            detail={
                "from": Posture(int(seq[j])).name.lower(),
                "to": Posture(int(seq[j + 1])).name.lower(),
            },
        )
        for j in np.flatnonzero(seq[1:] != seq[:-1]).tolist()
        if seq[j] != _NO_POSTURE
    ]
    return events, (int(seq[-1]), int(run_codes[-1]), int(abs_starts[-1]))


def _windows(
    state: MotionState, enmo: FloatArray, codes: CodeArray, steps_s: FloatArray, horizon: int
) -> tuple[list[Vital], FloatArray, CodeArray, FloatArray]:
    """Vitals of the windows ending before ``horizon`` (absolute sample index up to which
    steps are decided); returns them and the leftover per-sample values and steps."""
    fs = state.fs_hz
    all_enmo = np.concatenate((state.window_enmo, enmo))
    all_codes = np.concatenate((state.window_codes, codes))
    all_steps = np.concatenate((state.window_steps_s, steps_s))
    first = state.n_seen - state.window_enmo.size
    k = math.floor(first / fs / WINDOW_S + 1e-9)
    vitals: list[Vital] = []
    while _bound(k + 1, fs) < horizon:
        lo, hi = _bound(k, fs) - first, _bound(k + 1, fs) - first
        t_end = (k + 1) * WINDOW_S
        in_window = all_steps[(all_steps >= k * WINDOW_S) & (all_steps < t_end)]
        posture = int(np.bincount(all_codes[lo:hi], minlength=len(Posture)).argmax())
        vitals += [
            Vital(t_end, VitalKind.ACTIVITY, float(np.mean(all_enmo[lo:hi])), WINDOW_S),
            Vital(t_end, VitalKind.POSTURE, float(posture), WINDOW_S),
            Vital(t_end, VitalKind.CADENCE, cadence_spm(in_window), WINDOW_S),
        ]
        k += 1
    keep = _bound(k, fs) - first
    left_steps = all_steps[all_steps >= k * WINDOW_S]
    return vitals, all_enmo[keep:].copy(), all_codes[keep:].copy(), left_steps.copy()


def motion_step(
    state: MotionState, chunk: npt.ArrayLike, *, fs_hz: float
) -> tuple[Findings, MotionState]:
    """Feed the next ``(n, 3)`` accelerometer samples (mG, garment axes x/y/z).

    Raises :class:`MotionInputError` for a rate other than the state's, a wrong shape or
    non-finite samples (a gap is a new stream: start again from :meth:`MotionState.initial`).
    """
    check_stream_rate(fs_hz, state.fs_hz, low=MIN_FS_HZ, high=MAX_FS_HZ, error=MotionInputError)
    acc = validate_acc(chunk)
    if acc.shape[0] == 0:
        return Findings(), state
    fs = state.fs_hz
    gravity, gravity_zi = gravity_step(acc, state.gravity_zi, fs_hz=fs)
    codes = classify_posture(gravity)
    band, band_zi = vertical_bandpass(acc, gravity, state.band_zi, fs_hz=fs)
    steps_s, step_tail = steps_step(state.step_tail, band, state.n_seen, fs_hz=fs)
    falls, fall_tail = falls_step(state.fall_tail, acc, state.n_seen, fs_hz=fs)
    changes, (stable, run_code, run_start) = _posture_changes(state, codes)
    end = state.n_seen + acc.shape[0]
    vitals, enmo_left, codes_left, steps_left = _windows(
        state, enmo_mg(acc), codes, steps_s, end - step_half_width(fs)
    )
    fall_events = [
        Event(
            t_s=f.index / fs,
            kind=EventKind.FALL,
            severity=Severity.CRITICAL,
            detail={
                "impact_mg": round(f.impact_mg),
                "posture": f.posture.name.lower(),
                "rule": "still" if f.still else "not_up",
            },
        )
        for f in falls
    ]
    events = sorted(changes + fall_events, key=lambda e: e.t_s)
    new_state = MotionState(
        fs_hz=fs,
        n_seen=end,
        gravity_zi=gravity_zi,
        band_zi=band_zi,
        step_tail=step_tail,
        fall_tail=fall_tail,
        window_enmo=enmo_left,
        window_codes=codes_left,
        window_steps_s=steps_left,
        stable_posture=stable,
        run_posture=run_code,
        run_start=run_start,
    )
    return Findings(tuple(vitals), tuple(events)), new_state
