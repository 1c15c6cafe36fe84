"""Streaming R-peak detection for single-lead ECG (125-1000 Hz), fed chunk by chunk with
explicit, immutable state; the batch :func:`processing.ecg.peaks.detect_r_peaks` is one
pass of this detector over the whole array.

Role: the frame-by-frame detector. :func:`r_peak_step` takes an :class:`RPeakState` and a
chunk of any length (one sample to minutes) and returns the peaks that became final plus
the next state; :func:`r_peak_flush` ends the stream. Causal 5-15 Hz band-pass, the
Pan-Tompkins slope-energy envelope, and the decision rules of
:mod:`processing.ecg.pan_tompkins` with every decision confined to a 0.55 s horizon, so each
peak is reported at most 1 s after it and the result does not depend on how the signal is
cut into chunks (see ``tests/processing/test_ecg_stream.py``).
Must not: do I/O, import ``gateway`` or ``devices``, log signal values, mutate a state, or
loop per sample in Python (the only Python loop is per envelope candidate).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from scipy import signal

from processing.ecg.filters import (
    BASELINE_CUTOFF_HZ,
    QRS_BAND_HZ,
    FloatArray,
    bandpass_sos,
    highpass_sos,
)
from processing.ecg.pan_tompkins import (
    Beat,
    Candidate,
    Levels,
    Samples,
    envelope_candidates,
    learned_levels,
    pan_tompkins_decide,
)
from processing.ecg.peaks import EcgInputError, IndexArray, validate_ecg, validate_fs

__all__ = [
    "EcgInputError",
    "PeakBatch",
    "RPeakState",
    "RPeakStream",
    "r_peak_flush",
    "r_peak_step",
]


def _frozen(a: FloatArray) -> FloatArray:
    a.setflags(write=False)
    return a


@dataclass(frozen=True, slots=True)
class _Core:
    """Everything the detector carries from one chunk to the next; arrays are read-only.

    Envelope index ``i`` describes the QRS near sample ``i - shift``. ``env_tail`` starts at
    ``env_start``, ``slope_tail`` (absolute slopes) at ``env_start - width + 1``,
    ``hp_tail`` (baseline-free ECG) at ``hp_start``."""

    fs_hz: float
    n_seen: int
    bp_zi: FloatArray | None
    hp_zi: FloatArray | None
    last_bp: float
    last_x: float
    slope_tail: FloatArray
    env_tail: FloatArray
    env_start: int
    next_candidate: int
    hp_tail: FloatArray
    hp_start: int
    learn_env: FloatArray
    pending: tuple[Candidate, ...]
    levels: Levels | None
    reported_through: int
    last_peak: int

    @classmethod
    def initial(cls, fs_hz: float) -> _Core:
        fs = validate_fs(fs_hz)
        n = Samples.at(fs)
        empty = _frozen(np.empty(0))
        return cls(fs, 0, None, None, 0.0, 0.0, _frozen(np.zeros(n.width - 1)), empty, 0, 1,
                   empty, 0, empty, (), None, -1, -1)  # fmt: skip


def _filter(sos: FloatArray, zi: FloatArray | None, x: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Causal SOS filtering that carries its state; a new stream starts in steady state."""
    z = signal.sosfilt_zi(sos) * x[0] if zi is None else zi.copy()
    y, z_out = signal.sosfilt(sos.copy(), x, zi=z)
    return np.asarray(y, dtype=np.float64), _frozen(np.asarray(z_out, dtype=np.float64))


def _refine(hp: FloatArray, hp_start: int, beats: list[Beat], n: Samples, total: int,
            last_peak: int) -> tuple[list[int], list[float]]:  # fmt: skip
    """Move each detection to the largest deflection of the baseline-free signal within
    ±75 ms (R peak, or the dominant deflection of an inverted or ventricular beat); at the
    end of the stream, a detection whose deflection is still growing at the last sample is
    left out."""
    peaks: list[int] = []
    amps: list[float] = []
    for b in beats:
        centre = b.index - n.shift
        lo = max(0, centre - n.refine)
        hi = min(total - 1, centre + n.refine)
        if hi < lo:
            continue
        seg = hp[lo - hp_start : hi - hp_start + 1]
        r = lo + int(np.argmax(np.abs(seg)))
        if r == hi < centre + n.refine:
            continue  # still rising at the end of the stream: the R peak is not in it
        if r > last_peak:
            peaks.append(r)
            amps.append(float(hp[r - hp_start]))
            last_peak = r
    return peaks, amps


def _envelope(
    fs: float, bp_zi: FloatArray | None, last_bp: float, slope_tail: FloatArray,
    x: FloatArray, n: Samples,
) -> tuple[FloatArray, FloatArray, FloatArray, float]:  # fmt: skip
    """Pan-Tompkins derivative, squaring and moving-window integration of the causally
    band-passed ``x`` (as RMS slope, linear in the QRS amplitude); returns the absolute
    slopes, the envelope (one value per sample of ``x``), the band-pass state and its last
    output."""
    bp, zi = _filter(bandpass_sos(fs, *QRS_BAND_HZ, 2), bp_zi, x)
    slope = np.abs(np.diff(bp, prepend=last_bp if bp_zi is not None else bp[0]) * fs)
    energy = np.concatenate((slope_tail[slope_tail.shape[0] - n.width + 1 :], slope))
    energy *= energy
    env = np.sqrt(np.convolve(energy, np.ones(n.width), "valid") * (1.0 / n.width))
    return slope, env, zi, float(bp[-1])


def _advance(
    core: _Core, x: FloatArray, *, final: bool
) -> tuple[IndexArray, FloatArray, int, _Core]:
    """Feed validated samples ``x``; return the peaks now final (absolute sample indices),
    their amplitudes, the index before which everything is decided, and the new core.
    ``final`` ends the stream and decides everything left: the signal is then held at its
    last value for one envelope delay plus one refractory period, so that a QRS in the last
    ``shift`` samples still gets its envelope maximum."""
    fs = core.fs_hz
    n = Samples.at(fs)
    total = core.n_seen + x.shape[0]
    slope_buf, env_buf, hp_buf = core.slope_tail, core.env_tail, core.hp_tail
    bp_zi, hp_zi, last_bp, learn_env = core.bp_zi, core.hp_zi, core.last_bp, core.learn_env
    last_x = core.last_x
    if x.shape[0]:
        slope, env, bp_zi, last_bp = _envelope(fs, bp_zi, last_bp, slope_buf, x, n)
        hp, hp_zi = _filter(highpass_sos(fs, BASELINE_CUTOFF_HZ, 2), hp_zi, x)
        last_x = float(x[-1])
        slope_buf = np.concatenate((slope_buf, slope))
        env_buf = np.concatenate((env_buf, env))
        hp_buf = np.concatenate((hp_buf, hp))
        if core.n_seen < n.learning:
            learn_env = np.concatenate((learn_env, env[: n.learning - core.n_seen]))
    env_end = total
    if final and total:
        held = np.full(n.shift + n.refractory, last_x)
        slope, env, _, _ = _envelope(fs, bp_zi, last_bp, slope_buf, held, n)
        slope_buf = np.concatenate((slope_buf, slope))
        env_buf = np.concatenate((env_buf, env))
        env_end += held.shape[0]
    last_e = env_end - 2 if final else total - n.refractory - 1
    first = core.next_candidate
    found = envelope_candidates(env_buf, slope_buf, first - core.env_start,
                                last_e - core.env_start, core.env_start, n)  # fmt: skip
    next_candidate = max(first, last_e + 1)
    levels, pending = core.levels, core.pending + tuple(found)
    if levels is None and (final or total >= n.learning) and total >= n.min_signal:
        levels = learned_levels(learn_env, n)
    peaks: list[int] = []
    amps: list[float] = []
    reported, last_peak = core.reported_through, core.last_peak
    if levels is not None:
        levels = pan_tompkins_decide(levels, pending, until=env_end if final else last_e, n=n)
        pending = ()
        limit = env_end if final else last_e - n.horizon
        beats = levels.beats
        due = [b for b in beats if reported < b.index <= limit and not b.dropped]
        peaks, amps = _refine(hp_buf, core.hp_start, due, n, total, last_peak)
        last_peak = peaks[-1] if peaks else last_peak
        reported = max(reported, limit)
        undecided = [i for i, b in enumerate(beats) if b.index > reported]
        keep = min([*undecided, max(0, len(beats) - 3)])
        levels = replace(levels, beats=beats[keep:])
    decided = total if final else max(last_peak + 1, min(total, reported + 1 - n.shift - n.refine))
    env_start = max(0, next_candidate - n.refractory)
    hp_start = max(core.hp_start, min(total, reported + 1 - n.shift - n.refine))
    new = replace(
        core, n_seen=total, bp_zi=bp_zi, hp_zi=hp_zi, last_bp=last_bp, last_x=last_x,
        slope_tail=_frozen(slope_buf[env_start - core.env_start :]),
        env_tail=_frozen(env_buf[env_start - core.env_start :]), env_start=env_start,
        next_candidate=next_candidate,
        hp_tail=_frozen(hp_buf[hp_start - core.hp_start :]), hp_start=hp_start,
        learn_env=_frozen(learn_env), pending=pending, levels=levels,
        reported_through=reported, last_peak=last_peak,
    )  # fmt: skip
    return (np.asarray(peaks, dtype=np.int64), np.asarray(amps, dtype=np.float64),
            max(0, decided), new)  # fmt: skip


@dataclass(frozen=True, slots=True)
class RPeakState:
    """Everything the detector carries between chunks: filter states, the short tails of
    the band-passed slope, envelope and baseline-free ECG it still needs, the Pan-Tompkins
    levels, recent beats and candidates, and the sample counter. Immutable: feeding the
    same state twice gives the same result."""

    core: _Core

    @classmethod
    def initial(cls, *, fs_hz: float) -> RPeakState:
        """A new stream at ``fs_hz`` (125-1000 Hz, else :class:`EcgInputError`)."""
        return cls(_Core.initial(fs_hz))

    @property
    def fs_hz(self) -> float:
        return self.core.fs_hz

    @property
    def samples_seen(self) -> int:
        return self.core.n_seen


@dataclass(frozen=True, slots=True)
class PeakBatch:
    """Peaks that became final in one step: absolute sample indices since the stream's
    first sample (increasing), the R amplitude at each (baseline-free ECG, input units),
    and ``decided_until``: no peak before this sample index will be reported any more."""

    indices: IndexArray
    amplitudes: FloatArray
    decided_until: int


def r_peak_step(state: RPeakState, chunk: npt.ArrayLike) -> tuple[PeakBatch, RPeakState]:
    """Feed one chunk; returns the newly final peaks and the next state. Raises
    :class:`EcgInputError` (``not_1d``, ``not_finite``) for a chunk the detector cannot use;
    after a gap the caller starts again from :meth:`RPeakState.initial`."""
    x = validate_ecg(chunk)
    peaks, amps, decided, core = _advance(state.core, x, final=False)
    return PeakBatch(peaks, amps, decided), RPeakState(core)


def r_peak_flush(state: RPeakState) -> PeakBatch:
    """End of stream: decide and return every peak still pending."""
    peaks, amps, decided, _ = _advance(state.core, np.empty(0), final=True)
    return PeakBatch(peaks, amps, decided)


class RPeakStream:
    """Convenience holder of a :class:`RPeakState` for callers that prefer an object."""

    __slots__ = ("state",)

    def __init__(self, *, fs_hz: float) -> None:
        self.state = RPeakState.initial(fs_hz=fs_hz)

    def feed(self, chunk: npt.ArrayLike) -> PeakBatch:
        batch, self.state = r_peak_step(self.state, chunk)
        return batch

    def flush(self) -> PeakBatch:
        return r_peak_flush(self.state)
