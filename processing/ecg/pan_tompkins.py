"""Pan-Tompkins QRS decision engine shared by the streaming (and so the batch) R-peak detector.

Role: the decision half of R-peak detection on the slope-energy envelope: the tuning, the
per-rate sample counts, candidate picking (envelope maxima), the learning phase (only from
QRS-like peaks, so that a stream starting in asystole learns no noise; again after 2 s
without a beat, so that no artefact or amplitude drop blinds the detector for good), and
the Pan-Tompkins rules applied one candidate at a time with every decision confined to a short
horizon; :mod:`processing.ecg.stream` computes the envelope and carries the state.
Must not: do I/O, import ``gateway`` or ``devices``, log signal values, or loop per sample in
Python (the only Python loop is per envelope candidate).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import lru_cache
from statistics import median

import numpy as np
from scipy import ndimage

from processing.ecg.filters import FloatArray

__all__ = [
    "TUNING",
    "Beat",
    "Candidate",
    "Levels",
    "Samples",
    "Tuning",
    "envelope_candidates",
    "learned_levels",
    "pan_tompkins_decide",
]


@dataclass(frozen=True, slots=True)
class Tuning:
    """Times in seconds, fractions of the running peak levels."""

    integration_s: float = 0.150
    band_delay_s: float = 0.042  # group delay of the causal 5-15 Hz band-pass near 10 Hz
    refractory_s: float = 0.200
    t_wave_window_s: float = 0.360
    t_wave_slope_ratio: float = 0.5
    threshold_fraction: float = 0.4
    searchback_rr_factor: float = 1.66
    searchback_extra_max_s: float = 0.35
    searchback_fraction: float = 0.5
    refine_s: float = 0.075
    split_rr_fraction: float = 1.3
    split_height_fraction: float = 0.6
    learning_s: float = 1.0
    horizon_s: float = 0.55  # how far back a decision can still change (>= t_wave_window_s)
    min_signal_s: float = 0.5
    level_cap: float = 3.0  # a peak counts at most this many times the level it updates
    quiet_s: float = 2.0  # without a beat this long, levels are learned again
    prominence: float = 5.0  # peak over the envelope's minimum within one refractory period
    prominent_min: int = 2  # QRS-like candidates needed to learn again


TUNING = Tuning()


@dataclass(frozen=True, slots=True)
class Samples:
    """Per-rate sample counts derived from the tuning; envelope index ``i`` describes the QRS
    near sample ``i - shift``."""

    width: int
    refractory: int
    t_window: int
    searchback_extra_max: int
    refine: int
    shift: int
    horizon: int
    learning: int
    min_signal: int
    quiet: int

    @staticmethod
    @lru_cache(maxsize=64)
    def at(fs_hz: float) -> Samples:
        t = TUNING
        width = max(1, round(t.integration_s * fs_hz))
        return Samples(
            width=width,
            refractory=max(1, round(t.refractory_s * fs_hz)),
            t_window=round(t.t_wave_window_s * fs_hz),
            searchback_extra_max=round(t.searchback_extra_max_s * fs_hz),
            refine=max(1, round(t.refine_s * fs_hz)),
            shift=round(t.band_delay_s * fs_hz) + (width - 1) // 2,
            horizon=round(t.horizon_s * fs_hz),
            learning=round(t.learning_s * fs_hz),
            min_signal=round(t.min_signal_s * fs_hz),
            quiet=round(t.quiet_s * fs_hz),
        )


@dataclass(frozen=True, slots=True)
class Candidate:
    """A local maximum of the envelope: its index on the envelope's timeline (the QRS sits
    ``shift`` samples earlier), its height, the steepest slope of its QRS and the envelope's
    minimum within one refractory period either side (``floor``)."""

    index: int
    height: float
    slope: float
    floor: float = 0.0


@dataclass(frozen=True, slots=True)
class Beat:
    """An accepted candidate; ``dropped`` once a later beat shows it split an RR interval."""

    index: int
    height: float
    slope: float
    dropped: bool = False


@dataclass(frozen=True, slots=True)
class Levels:
    """Pan-Tompkins running state: signal and noise peak levels, the last RR intervals, the
    recent beats (the last three decided ones plus every undecided one) and the candidates
    seen since the last beat, a searchback may still pick one of them; ``quiet`` holds the
    candidates since the later of the last beat and the last re-learning (at ``relearnt``).
    ``learnt`` is False while no QRS has been seen yet: no beat is accepted until a quiet
    stretch has QRS-like peaks to learn the levels from."""

    spk: float
    npk: float
    rr: tuple[int, ...] = ()
    beats: tuple[Beat, ...] = ()
    since_beat: tuple[Candidate, ...] = ()
    checked_until: int = -1  # time of the last timed searchback
    quiet: tuple[Candidate, ...] = ()
    relearnt: int = 0
    learnt: bool = True


def envelope_candidates(
    env: FloatArray, slopes: FloatArray, first: int, last: int, offset: int, n: Samples
) -> list[Candidate]:
    """Envelope maxima at buffer positions ``first..last`` that are rising-edge local maxima
    and the highest point within one refractory period either side; ``slopes`` is aligned so
    that ``slopes[p : p + width]`` is the QRS before envelope position ``p``."""
    if last < first:
        return []
    peak = ndimage.maximum_filter1d(env, size=2 * n.refractory + 1, mode="nearest")
    seg = env[first : last + 1]
    is_peak = (
        (seg > env[first - 1 : last])
        & (seg >= env[first + 1 : last + 2])
        & (seg > 0.0)
        & (seg >= peak[first : last + 1])
    )
    pos = np.flatnonzero(is_peak) + first
    if pos.size == 0:
        return []
    steepest = slopes[pos[:, None] + np.arange(n.width)[None, :]].max(axis=1)
    floor = _floor(env, offset, n)[pos]
    return [
        Candidate(int(p) + offset, float(h), float(s), float(f))
        for p, h, s, f in zip(
            pos.tolist(), env[pos].tolist(), steepest.tolist(), floor.tolist(), strict=True
        )
    ]


def _floor(env: FloatArray, offset: int, n: Samples) -> FloatArray:
    """The envelope's minimum within one refractory period either side of each position of
    ``env`` (which starts at envelope index ``offset``), leaving out the stream's first
    ``width - 1`` samples, where the integration window is still filling."""
    ramp = n.width - 1 - offset
    if ramp > 0:
        env = env.copy()
        env[:ramp] = np.inf
    return np.asarray(
        ndimage.minimum_filter1d(env, size=2 * n.refractory + 1, mode="nearest"), np.float64
    )


def _prominent_count(env: FloatArray, n: Samples) -> int:
    """How many envelope maxima of the stream's first envelope samples ``env`` (the highest
    point within one refractory period either side) stand ``prominence`` times over the
    envelope's minimum there."""
    if env.size < 3:
        return 0
    peak = ndimage.maximum_filter1d(env, size=2 * n.refractory + 1, mode="nearest")
    floor = _floor(env, 0, n)
    mid = env[1:-1]
    is_peak = (mid > env[:-2]) & (mid >= env[2:]) & (mid >= peak[1:-1]) & (mid > 0.0)
    return int(np.count_nonzero(is_peak & (mid >= TUNING.prominence * floor[1:-1])))


def learned_levels(learn_env: FloatArray, n: Samples) -> Levels:
    """Pan-Tompkins learning phase: signal level half the envelope maximum, noise level half
    its mean over the first second, provided that second holds QRS-like peaks
    (:func:`_prominent_count`) at the re-learning's rate (``prominent_min`` per ``quiet_s``,
    so one in one second: a second at 60 bpm holds a single QRS); otherwise (a stream
    starting in asystole or noise) the detector stays unlearned and learns later."""
    t = TUNING
    needed = max(1, round(t.prominent_min * t.learning_s / t.quiet_s))
    if _prominent_count(learn_env, n) < needed:
        return Levels(spk=0.0, npk=0.0, learnt=False)
    spk = 0.5 * float(learn_env.max())
    npk = 0.5 * float(learn_env.mean())
    return Levels(spk=spk, npk=min(npk, 0.5 * spk))


class _PanTompkins:
    """Pan-Tompkins decision rules over envelope candidates, one candidate at a time (Pan &
    Tompkins, IEEE Trans. Biomed. Eng. 32(3):230-236, 1985; Hamilton & Tompkins, IEEE TBME
    33(12):1157-1165, 1986): running signal and noise peak levels, a threshold between them,
    searchback at half the threshold after min(1.66 mean RR, mean RR + 0.35 s) without a
    beat, a 200 ms refractory period and T-wave rejection by maximum slope within 360 ms.
    Additions: a much steeper candidate within 360 ms replaces the previous detection (that
    one was this beat's P wave or an artefact, e.g. right after a step up in amplitude), and
    a weak detection that splits an ordinary RR interval between two strong beats is
    dropped (a premature beat is followed by a compensatory pause, so it does not split an
    interval this way). A peak raises a level by at most ``level_cap`` times that level, and
    after ``quiet_s`` without a beat the levels are learned again from the QRS-like peaks of
    that stretch (:meth:`_relearn`). Decisions reach at most ``horizon`` samples back."""

    def __init__(self, levels: Levels, n: Samples) -> None:
        self.spk = levels.spk
        self.npk = levels.npk
        self.rr = list(levels.rr)
        self.beats = list(levels.beats)
        self.since = list(levels.since_beat)
        self.checked_until = levels.checked_until
        self.quiet = list(levels.quiet)
        self.relearnt = levels.relearnt
        self.learnt = levels.learnt
        self.n = n

    def levels(self) -> Levels:
        return Levels(self.spk, self.npk, tuple(self.rr), tuple(self.beats), tuple(self.since),
                      self.checked_until, tuple(self.quiet), self.relearnt,
                      self.learnt)  # fmt: skip

    def _capped(self, height: float, level: float) -> float:
        """``height`` limited to ``level_cap`` times ``level``: one artefact cannot raise a
        level far above the peaks that made it."""
        return min(height, TUNING.level_cap * level) if level > 0.0 else height

    def _quiet_due(self) -> int:
        return max(self.beats[-1].index if self.beats else 0, self.relearnt) + self.n.quiet

    def _relearn(self, c: int) -> None:
        """No beat for ``quiet_s`` up to ``c``: if the candidates of that stretch that stand
        out of their surroundings (at least two QRS complexes rather than noise) all stayed
        under the threshold, learn the levels again from them as the learning phase does
        (signal level half their maximum); otherwise (asystole, noise) nothing changes."""
        t = TUNING
        window = [k for k in self.quiet if k.index < c]
        self.quiet = [k for k in self.quiet if k.index >= c]
        self.relearnt = c
        prominent = [k.height for k in window if k.height >= t.prominence * k.floor]
        thr = self.npk + t.threshold_fraction * (self.spk - self.npk)
        if len(prominent) >= t.prominent_min and max(prominent) < thr:
            self.spk = 0.5 * max(prominent)
            self.npk = min(self.npk, 0.5 * median(k.height for k in window), 0.5 * self.spk)

    def _first_learning(self, k: Candidate) -> None:
        """Not learnt yet (the first second had no QRS-like peaks): learn as :meth:`_relearn`
        does once the last ``quiet_s`` up to ``k`` hold ``prominent_min`` QRS-like peaks,
        then decide the candidates still within the horizon (``k`` among them)."""
        t = TUNING
        self.quiet = [q for q in self.quiet if q.index > k.index - self.n.quiet] + [k]
        prominent = [q.height for q in self.quiet if q.height >= t.prominence * q.floor]
        if len(prominent) < t.prominent_min:
            return
        self.learnt = True
        self.spk = 0.5 * max(prominent)
        self.npk = min(0.5 * median(q.height for q in self.quiet), 0.5 * self.spk)
        self.relearnt = k.index
        replay = [q for q in self.quiet if k.index - q.index <= self.n.horizon]
        self.quiet = []
        for q in replay:
            self.feed(q)

    def _is_t_wave(self, k: Candidate) -> bool:
        last = self.beats[-1] if self.beats else None
        return (
            last is not None
            and k.index - last.index < self.n.t_window
            and k.slope < TUNING.t_wave_slope_ratio * last.slope
        )

    def _accept(self, k: Candidate, now: int) -> None:
        t = TUNING
        beats = self.beats
        if len(beats) >= 2 and len(self.rr) >= 4 and now - beats[-1].index <= self.n.horizon:
            p2, p1 = beats[-2], beats[-1]
            if (
                not p1.dropped
                and k.index - p2.index < t.split_rr_fraction * median(self.rr)
                and p1.height < t.split_height_fraction * min(p2.height, k.height)
            ):
                beats[-1] = replace(p1, dropped=True)
        if beats:
            self.rr.append(k.index - beats[-1].index)
            if len(self.rr) > 8:
                del self.rr[0]
        beats.append(Beat(k.index, k.height, k.slope))
        self.since = [s for s in self.since if s.index > k.index]
        self.quiet = [s for s in self.quiet if s.index > k.index]

    def _wait(self) -> float:
        """How long after the last beat a searchback starts."""
        rr_avg = sum(self.rr) / len(self.rr)
        extra = (TUNING.searchback_rr_factor - 1.0) * rr_avg
        return rr_avg + min(extra, self.n.searchback_extra_max)

    def _next_due(self) -> tuple[int, float] | None:
        """The next moment a searchback falls due and the gap since the last beat it
        needs: ``wait`` after the last beat, or the moment the oldest candidate still
        eligible would leave the searchback horizon, once a mean RR has passed."""
        if not self.beats or len(self.rr) < 2:
            return None
        last = self.beats[-1].index
        rr_avg = sum(self.rr) / len(self.rr)
        dues = [(last + int(self._wait()) + 1, self._wait())]
        for k in self.since:
            d = k.index + self.n.horizon
            if d > self.checked_until and k.index - last >= self.n.refractory:
                dues.append((d, rr_avg))
                break
        dues = [d for d in dues if d[0] > self.checked_until]
        return min(dues) if dues else None

    def timed(self, now: int) -> None:
        """Run the searchbacks that fall due up to ``now`` in time order, even if no
        candidate follows (this bounds the decision delay), and the re-learning after
        ``quiet_s`` without a beat."""
        while self.learnt:
            due = self._next_due()
            quiet = self._quiet_due()
            if due is not None and due[0] <= min(now, quiet):
                self.checked_until = due[0]
                self._searchback(due[0], due[1])
            elif quiet <= now:
                self._relearn(quiet)
            else:
                return

    def _searchback(self, c: int, min_gap: float | None = None) -> None:
        t = TUNING
        if not self.beats or len(self.rr) < 2 or not self.since:
            return
        last = self.beats[-1].index
        if c - last <= (self._wait() if min_gap is None else min_gap):
            return
        window = [
            k
            for k in self.since
            if k.index - last >= self.n.refractory
            and k.index < c
            and c - k.index <= self.n.horizon
            and not self._is_t_wave(k)
        ]
        if not window:
            return
        best = window[0]
        for k in window[1:]:
            if k.height > best.height:
                best = k
        thr = self.npk + t.threshold_fraction * (self.spk - self.npk)
        if best.height > t.searchback_fraction * thr:
            self._accept(best, c)
            self.spk = 0.25 * self._capped(best.height, self.spk) + 0.75 * self.spk

    def _rejected(self, k: Candidate) -> None:
        """Keep ``k`` for a later searchback; once a searchback is due, try it at once."""
        self.since.append(k)
        self._searchback(k.index + 1)

    def feed(self, k: Candidate) -> None:
        t = TUNING
        if not self.learnt:
            self._first_learning(k)
            return
        self.timed(k.index)
        self.quiet.append(k)
        horizon_start = k.index - self.n.horizon
        self.since = [s for s in self.since if s.index >= horizon_start]
        self._searchback(k.index)
        thr = self.npk + t.threshold_fraction * (self.spk - self.npk)
        beats = self.beats
        in_refractory = bool(beats) and k.index - beats[-1].index < self.n.refractory
        if k.height <= thr or (not in_refractory and self._is_t_wave(k)):
            self.npk = 0.125 * self._capped(k.height, self.spk / t.level_cap) + 0.875 * self.npk
            self._rejected(k)
            return
        if in_refractory:
            self._rejected(k)
            return
        if (
            beats
            and k.index - beats[-1].index < self.n.t_window
            and t.t_wave_slope_ratio * k.slope > beats[-1].slope
        ):
            # the previous detection was this beat's P wave or a smaller artefact
            beats.pop()
            if self.rr:
                self.rr.pop()
        self._accept(k, k.index)
        self.spk = 0.125 * self._capped(k.height, self.spk) + 0.875 * self.spk


def pan_tompkins_decide(
    levels: Levels, candidates: Iterable[Candidate], *, until: int, n: Samples
) -> Levels:
    """Apply the Pan-Tompkins rules (:class:`_PanTompkins`) to ``candidates`` in time order,
    then run the searchbacks that fall due up to envelope index ``until``; returns the new
    levels (its ``beats`` include the ones not yet final)."""
    pt = _PanTompkins(levels, n)
    for k in candidates:
        pt.feed(k)
    pt.timed(until)
    return pt.levels()
