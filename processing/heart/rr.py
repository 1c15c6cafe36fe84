"""RR intervals from beat times and their artefact correction (ectopic, missed, extra beats).

Role: turn R-peak times (or a device's RR list) into a normal-to-normal (NN) interval series
fit for heart rate and HRV: the Lipponen & Tarvainen (2019) classification of each interval
as normal, ectopic, missed, extra or long/short, and its correction. The corrector runs beat
by beat with two intervals of look-ahead, so :func:`correct_step` (streaming) and
:func:`correct_rr` (batch) give the same series whatever the grouping.
Must not: do I/O, import ``gateway`` or ``devices``, or keep more than the last 91 intervals.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
LabelArray = npt.NDArray[np.int8]

__all__ = [
    "Artefact",
    "CorrectedRR",
    "RrCorrectorState",
    "correct_rr",
    "correct_step",
    "rr_from_beats",
]


class Artefact(enum.IntEnum):
    """Label of one output NN interval (what was corrected to produce it)."""

    NORMAL = 0
    ECTOPIC = 1
    """The beat ending it (or starting it) was misplaced and moved half-way."""
    MISSED = 2
    """Part of a long interval split because beats were missed."""
    EXTRA = 3
    """Two intervals merged because the beat between them was spurious."""
    LONG_SHORT = 4
    """An unexplained long or short interval, replaced by the local median."""


# Lipponen & Tarvainen 2019, section 2.2: alpha, c1, c2, the 91-beat threshold window and
# the 11-beat median.
_ALPHA = 5.2
_C1 = 0.13
_C2 = 0.17
_THRESHOLD_WINDOW = 91
_MEDIAN_WINDOW = 11
_MEDIAN_PAST = _MEDIAN_WINDOW - 3  # past intervals; the current one and two ahead complete it
# Additions (not in the paper): thresholds never fall below a fraction of the median RR, so a
# metronomic series (quartile deviation 0) does not flag quantisation jitter; during warm-up
# (fewer than _MIN_HISTORY decided intervals) only the higher floor applies.
_FLOOR_FRACTION = 0.05
_WARMUP_FLOOR_FRACTION = 0.10
_MIN_HISTORY = 10
_MAX_MISSED = 3  # at most this many beats are restored in one long interval
# A long or short interval that is not missed/extra is only replaced when it is also off the
# local median (|mRRs| > 1; the paper replaces any): strong sinus arrhythmia at three beats per
# breath has the paper's long/short dRR pattern without being an artefact.
_MIN_LONG_SHORT_MRRS = 1.0


def rr_from_beats(beats_s: npt.ArrayLike) -> FloatArray:
    """RR intervals in ms between consecutive beat times in seconds (length n - 1)."""
    t = np.asarray(beats_s, dtype=np.float64)
    return np.asarray(np.diff(t) * 1000.0, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class RrCorrectorState:
    """Decided history (last 91 NN intervals and their |mRR|) and up to three undecided
    intervals ``(end_s, rr_ms, label)``."""

    history_rr_ms: tuple[float, ...] = ()
    history_abs_mrr_ms: tuple[float, ...] = ()
    pending: tuple[tuple[float, float, int], ...] = ()

    @classmethod
    def initial(cls) -> RrCorrectorState:
        return cls()


@dataclass(frozen=True, slots=True)
class CorrectedRR:
    """Corrected NN intervals: ``rr_ms[k]`` ends at ``end_s[k]``; ``labels[k]`` is an
    :class:`Artefact` code; ``span_ms[k]`` is the time the interval really spans (equal to
    ``rr_ms[k]`` except for a replaced long/short interval), so beats per minute over a
    stretch are ``60000 * n / sum(span_ms)``. ``n_input`` counts the intervals given."""

    end_s: FloatArray
    rr_ms: FloatArray
    labels: LabelArray
    span_ms: FloatArray
    n_input: int

    @property
    def corrected_fraction(self) -> float:
        """Share of output intervals that are not plain normal intervals."""
        return float(np.mean(self.labels != Artefact.NORMAL)) if self.labels.size else 0.0

    def count(self, label: Artefact) -> int:
        return int(np.count_nonzero(self.labels == label))


def _quartile_deviation(values: FloatArray) -> float:
    q1, q3 = np.percentile(values, (25.0, 75.0))
    return float(q3 - q1) / 2.0


def _thresholds(
    history: tuple[float, ...], abs_mrr: tuple[float, ...], median_ms: float
) -> tuple[float, float]:
    """Th1 (for dRR) and Th2 (for mRR): alpha times the quartile deviation over the last 91
    decided intervals, floored at a fraction of the median RR."""
    if len(history) < _MIN_HISTORY:
        floor = _WARMUP_FLOOR_FRACTION * median_ms
        return floor, floor
    floor = _FLOOR_FRACTION * median_ms
    drr = np.abs(np.diff(np.asarray(history, dtype=np.float64)))
    th1 = _ALPHA * _quartile_deviation(drr)
    th2 = _ALPHA * _quartile_deviation(np.asarray(abs_mrr, dtype=np.float64))
    return max(th1, floor), max(th2, floor)


_Decided = tuple[float, float, int, float]  # end_s, rr_ms, label, span_ms


def _lipponen_tarvainen(
    state: RrCorrectorState, final: bool
) -> tuple[list[_Decided], RrCorrectorState, bool]:
    """Decide the oldest pending interval by Lipponen & Tarvainen, "A robust algorithm for
    heart rate variability time series artefact correction using novel beat classification",
    J Med Eng Technol 43(3):173-181, 2019 (Figure 1), read beat by beat:

    * dRR (successive differences) over Th1 and mRR (deviation from the 11-beat median,
      negatives doubled) over Th2, thresholds 5.2 quartile deviations over 91 beats;
    * ectopic when the next difference S11 and its neighbours S12 fall in the ectopic regions
      ``S11 > 1 and S12 < -c1·S11 - c2`` or ``S11 < -1 and S12 > -c1·S11 + c2``: the beat
      between this interval and the next is moved half-way (both become their mean);
    * else a candidate when ``|dRRs| > 1`` or ``|mRRs| > 3``: extra beat when short
      (``dRRs < -1, S22 > 1``) and ``|RR + RR_next - medRR| < Th2`` (the two are merged);
      missed beat(s) when long (``dRRs > 1, S22 < -1``) and ``|RR/m - medRR| < Th2`` for
      m = round(RR/medRR) in 2..3 (the paper: m = 2; split in m); other long or short
      intervals that are also off the median (``|mRRs| > 1``) are replaced by the median.

    Windows are the decided past plus two intervals ahead (the paper centres them), so the
    result does not depend on how the series is fed. Returns the decided outputs, the new
    state and whether anything was decided or merged (``False``: wait for more)."""
    pending = list(state.pending)
    need = 1 if final else 3
    if len(pending) < need or not pending:
        return [], state, False
    hist = state.history_rr_ms
    end0, x, label0 = pending[0]
    n1 = pending[1][1] if len(pending) > 1 else x
    n2 = pending[2][1] if len(pending) > 2 else n1
    prev = hist[-1] if hist else x
    window = [*hist[-_MEDIAN_PAST:], *(p[1] for p in pending[:3])]
    med = float(np.median(window))
    th1, th2 = _thresholds(hist, state.history_abs_mrr_ms, med)
    d0, d1, d2 = (x - prev) / th1, (n1 - x) / th1, (n2 - n1) / th1
    mrr = x - med
    m0 = (2.0 * mrr if mrr < 0 else mrr) / th2
    out: list[_Decided]
    if len(pending) >= 3:
        s12 = max(d0, d2) if d1 > 0 else min(d0, d2)
        if (d1 > 1 and s12 < -_C1 * d1 - _C2) or (d1 < -1 and s12 > -_C1 * d1 + _C2):
            mean = 0.5 * (x + n1)
            out = [(end0 + (mean - x) / 1000.0, mean, int(Artefact.ECTOPIC), mean)]
            pending[1] = (pending[1][0], mean, int(Artefact.ECTOPIC))
            return out, _push(state, out, pending[1:], med), True
    label, span = int(Artefact.NORMAL), x
    if abs(d0) > 1 or abs(m0) > 3:
        s22 = min(d1, d2) if d0 >= 0 else max(d1, d2)
        long_, short = d0 > 1 and s22 < -1, d0 < -1 and s22 > 1
        if short and len(pending) > 1 and abs(x + n1 - med) < th2:
            merged = (pending[1][0], x + n1, int(Artefact.EXTRA))
            return (
                [],
                RrCorrectorState(hist, state.history_abs_mrr_ms, (merged, *pending[2:])),
                True,
            )
        m = round(x / med)
        if long_ and 2 <= m <= _MAX_MISSED and abs(x / m - med) < th2:
            part = x / m
            start = end0 - x / 1000.0
            out = [
                (start + part * (i + 1) / 1000.0, part, int(Artefact.MISSED), part)
                for i in range(m)
            ]
            return out, _push(state, out, pending[1:], med), True
        if ((long_ or short) and abs(m0) > _MIN_LONG_SHORT_MRRS) or abs(m0) > 3:
            label = int(Artefact.LONG_SHORT)
            x = med
    out = [(end0, x, max(label, label0), span)]
    return out, _push(state, out, pending[1:], med), True


def _push(
    state: RrCorrectorState,
    decided: list[_Decided],
    pending: list[tuple[float, float, int]],
    median_ms: float,
) -> RrCorrectorState:
    rr = [d[1] for d in decided]
    # |mRR| of the time actually spanned: a replaced long/short interval still widens Th2
    mrr = [abs(2.0 * (d[3] - median_ms) if d[3] < median_ms else d[3] - median_ms) for d in decided]
    return RrCorrectorState(
        (*state.history_rr_ms, *rr)[-_THRESHOLD_WINDOW:],
        (*state.history_abs_mrr_ms, *mrr)[-_THRESHOLD_WINDOW:],
        tuple(pending),
    )


def correct_step(
    state: RrCorrectorState,
    end_s: npt.ArrayLike,
    rr_ms: npt.ArrayLike,
    *,
    final: bool = False,
) -> tuple[CorrectedRR, RrCorrectorState]:
    """Add raw intervals (``rr_ms[k]`` ending at ``end_s[k]``, in order) and return the NN
    intervals decided so far. Each interval is decided once two more have arrived;
    ``final=True`` decides the rest without look-ahead (end of data, or a gap in the beat
    stream). The loop is per beat."""
    ends = np.asarray(end_s, dtype=np.float64).ravel()
    rrs = np.asarray(rr_ms, dtype=np.float64).ravel()
    if ends.shape != rrs.shape:
        raise ValueError("end_s and rr_ms must have the same length")
    keep = np.isfinite(ends) & np.isfinite(rrs) & (rrs > 0)
    incoming = [
        (e, r, int(Artefact.NORMAL))
        for e, r in zip(ends[keep].tolist(), rrs[keep].tolist(), strict=True)
    ]
    decided: list[_Decided] = []
    st = state
    for item in incoming:
        st = RrCorrectorState(st.history_rr_ms, st.history_abs_mrr_ms, (*st.pending, item))
        progressed = True
        while progressed and len(st.pending) >= 3:
            out, st, progressed = _lipponen_tarvainen(st, final=False)
            decided.extend(out)
    while final and st.pending:
        out, st, _ = _lipponen_tarvainen(st, final=True)
        decided.extend(out)
    return _as_result(decided, int(np.count_nonzero(keep))), st


def _as_result(decided: list[_Decided], n_input: int) -> CorrectedRR:
    arr = np.asarray(decided, dtype=np.float64).reshape(-1, 4)
    return CorrectedRR(
        end_s=np.ascontiguousarray(arr[:, 0]),
        rr_ms=np.ascontiguousarray(arr[:, 1]),
        labels=arr[:, 2].astype(np.int8),
        span_ms=np.ascontiguousarray(arr[:, 3]),
        n_input=n_input,
    )


def correct_rr(rr_ms: npt.ArrayLike, *, end_s: npt.ArrayLike | None = None) -> CorrectedRR:
    """Artefact-corrected NN series of a whole RR series (ms). ``end_s`` gives each
    interval's end time; by default the cumulative sum of the intervals (first one ending
    at its own length)."""
    rr = np.asarray(rr_ms, dtype=np.float64).ravel()
    ends = np.cumsum(rr) / 1000.0 if end_s is None else np.asarray(end_s, dtype=np.float64)
    result, _ = correct_step(RrCorrectorState.initial(), ends, rr, final=True)
    return result
