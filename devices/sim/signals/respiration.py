"""Synthetic respiration band signal (inductance-plethysmography-like, arbitrary units).

Two layers:

* ``BreathTrain`` — the breathing pattern: breath-to-breath durations around a rate
  schedule (paced slow breathing, tachypnoea) with AR(1)-correlated variability, an
  inspiratory fraction Ti/Ttot (~0.4, so expiration is longer), tidal amplitudes with
  correlated variation, and apnoea episodes during which no breath starts (the volume
  stays at end-expiration). It is generated lazily in time order from its own random
  stream, so any number of readers (the band renderer, the ECG's RSA term) see the same
  breaths whatever order they ask in. Breath shape: inspiration a raised cosine,
  expiration ``(1 + cos(π τ^0.6)) / 2`` — smooth at the peak, passive-exponential-like
  fall with a slow tail.
* ``RespirationSynth`` — renders the band: tidal volume × amplitude + offset, slow
  baseline drift, motion artefacts (Hann-windowed 0.5-3 Hz bursts, explicit intervals
  and/or Poisson-timed) and white noise at a chosen SNR.

Ground truth: breath onsets (start of inspiration), peaks (end of inspiration),
per-breath rate and amplitude, apnoea intervals (the whole flat stretch), artefact
intervals. Must not: import asyncio/bumble, do I/O, read clocks.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from devices.frame import Unit
from devices.sim.signals import (
    BlockSource,
    ColouredNoise,
    EventLog,
    FloatArray,
    Interval,
    Schedule,
    SignalError,
    as_schedule,
    rng_streams,
)

__all__ = [
    "RESPIRATION_SCENARIOS",
    "SCENARIO_APNOEAS",
    "BreathTrain",
    "BreathingConfig",
    "RespirationConfig",
    "RespirationSynth",
    "RespirationTruth",
    "respiration_scenario",
]

_EXPIRATION_POWER = 0.6
_MIN_APNOEA_S = 10.0


def breath_shape(t_rel: FloatArray, ti_s: FloatArray, te_s: FloatArray) -> FloatArray:
    """Normalised volume (0..1) of one breath ``t_rel`` seconds after its onset; 0 outside."""
    tau_in = np.clip(t_rel / ti_s, 0.0, 1.0)
    tau_ex = np.clip((t_rel - ti_s) / te_s, 0.0, 1.0)
    inspiring = (1.0 - np.cos(math.pi * tau_in)) / 2.0
    expiring = (1.0 + np.cos(math.pi * tau_ex**_EXPIRATION_POWER)) / 2.0
    inside = (t_rel >= 0.0) & (t_rel < ti_s + te_s)
    return np.where(inside, np.where(t_rel < ti_s, inspiring, expiring), 0.0)


def _shape_stats(ti_fraction: float) -> tuple[float, float]:
    """Mean and standard deviation of the shape over one unit-length breath."""
    grid = (np.arange(4000) + 0.5) / 4000
    v = breath_shape(grid, np.full(1, ti_fraction), np.full(1, 1.0 - ti_fraction))
    return float(v.mean()), float(v.std())


@dataclass(frozen=True, slots=True)
class BreathingConfig:
    """The breathing pattern. ``rate_bpm`` is breaths per minute (constant or schedule)."""

    rate_bpm: float | Schedule = 15.0
    rate_cv: float = 0.12
    ti_fraction: float = 0.4
    ti_cv: float = 0.05
    amplitude_cv: float = 0.12
    apnoeas: tuple[Interval, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        rate = as_schedule(self.rate_bpm)
        if not (rate.lowest >= 2.0 and rate.highest <= 70.0):
            raise SignalError("respiration", "rate_out_of_range")
        if not (0.0 <= self.rate_cv <= 0.5 and 0.0 <= self.ti_cv <= 0.3):
            raise SignalError("respiration", "bad_variability")
        if not (0.0 <= self.amplitude_cv <= 0.5 and 0.2 <= self.ti_fraction <= 0.6):
            raise SignalError("respiration", "bad_shape")
        if any(a.duration_s < _MIN_APNOEA_S for a in self.apnoeas):
            raise SignalError("respiration", "apnoea_too_short", "apnoea means >= 10 s")
        if _overlapping(self.apnoeas):
            raise SignalError("respiration", "apnoeas_overlap")


def _overlapping(intervals: tuple[Interval, ...]) -> bool:
    ordered = sorted(intervals, key=lambda a: a.start_s)
    return any(b.start_s < a.end_s for a, b in itertools.pairwise(ordered))


class BreathTrain:
    """Breaths generated lazily, in order, from one seed; also the ECG's ``RsaDrive``."""

    def __init__(self, config: BreathingConfig | None = None) -> None:
        self.config = config or BreathingConfig()
        self._rate = as_schedule(self.config.rate_bpm)
        self._rng = np.random.default_rng(np.random.SeedSequence(self.config.seed))
        self._apnoeas = sorted(self.config.apnoeas, key=lambda a: a.start_s)
        self.onsets = EventLog(np.float64)
        self.ti_s = EventLog(np.float64)
        self.te_s = EventLog(np.float64)
        self.amplitudes = EventLog(np.float64)
        self.apnoea_start = EventLog(np.float64)
        self.apnoea_end = EventLog(np.float64)
        self._next_onset = float(self._rng.uniform(0.0, 60.0 / self._rate.at(0.0)))
        self._state = np.zeros(3)  # AR(1) states: duration, Ti fraction, amplitude
        self._mean, self._std = _shape_stats(self.config.ti_fraction)

    @property
    def horizon_s(self) -> float:
        """Everything before this time is decided."""
        return self._next_onset

    def ensure(self, until_s: float) -> None:
        """Generate breaths (in batches of 32) until ``horizon_s > until_s``."""
        cfg = self.config
        rho = np.array([0.5, 0.3, 0.7])
        while self._next_onset <= until_s:
            shocks = self._rng.standard_normal((32, 3))
            rows: list[tuple[float, float, float, float]] = []
            for shock in shocks:
                self._state = rho * self._state + np.sqrt(1.0 - rho**2) * shock
                onset = self._next_onset
                total = 60.0 / self._rate.at(onset) * math.exp(cfg.rate_cv * self._state[0])
                ti = total * min(0.6, cfg.ti_fraction * math.exp(cfg.ti_cv * self._state[1]))
                amplitude = max(0.2, 1.0 + cfg.amplitude_cv * self._state[2])
                pause = self._apnoea_hit(onset, onset + total)
                if pause is not None:
                    self.apnoea_start.extend([onset])
                    self.apnoea_end.extend([pause.end_s])
                    self._next_onset = pause.end_s
                    continue
                rows.append((onset, ti, total - ti, amplitude))
                self._next_onset = onset + total
            if rows:
                onset_col, ti_col, te_col, amp_col = zip(*rows, strict=True)
                self.onsets.extend(onset_col)
                self.ti_s.extend(ti_col)
                self.te_s.extend(te_col)
                self.amplitudes.extend(amp_col)

    def _apnoea_hit(self, start_s: float, end_s: float) -> Interval | None:
        """The apnoea a breath spanning ``[start_s, end_s)`` would run into, if any."""
        while self._apnoeas and self._apnoeas[0].end_s <= start_s:
            self._apnoeas.pop(0)
        if self._apnoeas and self._apnoeas[0].start_s < end_s:
            return self._apnoeas[0]
        return None

    def volume(self, t_s: FloatArray) -> FloatArray:
        """Tidal volume (breath amplitude × shape, about 0..1) at times ``t_s``."""
        if len(t_s) == 0:
            return np.zeros(0)
        self.ensure(float(np.max(t_s)))
        onsets = self.onsets.view()
        if len(onsets) == 0:
            return np.zeros(len(t_s))
        index = np.searchsorted(onsets, t_s, side="right") - 1
        known = index >= 0
        i = np.clip(index, 0, None)
        shape = breath_shape(t_s - onsets[i], self.ti_s.view()[i], self.te_s.view()[i])
        return np.where(known, shape * self.amplitudes.view()[i], 0.0)

    def rsa_drive(self, t_s: FloatArray) -> FloatArray:
        """Zero-mean, unit-variance breathing drive for the ECG's HF (RSA) term."""
        return (self.volume(t_s) - self._mean) / self._std


@dataclass(frozen=True, slots=True)
class RespirationConfig:
    """The band signal. ``snr_db`` is against the RMS of a nominal breath (None: no noise)."""

    fs_hz: float = 25.0
    amplitude_au: float = 1000.0
    offset_au: float = 0.0
    drift_au: float = 0.0
    snr_db: float | None = None
    artefacts: tuple[Interval, ...] = ()
    artefact_rate_per_min: float = 0.0
    artefact_au: float = 2000.0
    breathing: BreathingConfig = field(default_factory=BreathingConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.fs_hz > 0 and math.isfinite(self.fs_hz)):
            raise SignalError("respiration", "bad_fs")
        if min(self.amplitude_au, self.drift_au, self.artefact_au, self.artefact_rate_per_min) < 0:
            raise SignalError("respiration", "negative_parameter")


@dataclass(frozen=True, slots=True)
class RespirationTruth:
    """Breaths with onset before the source's current time, and the pauses and artefacts."""

    onset_times_s: FloatArray
    peak_times_s: FloatArray
    rate_bpm: FloatArray
    amplitude_au: FloatArray
    apnoea_start_s: FloatArray
    apnoea_end_s: FloatArray
    artefact_start_s: FloatArray
    artefact_end_s: FloatArray


class _Artefacts:
    """Motion artefact bursts: explicit intervals merged with a Poisson process, in order."""

    def __init__(self, cfg: RespirationConfig, rng: np.random.Generator) -> None:
        self._rng = rng
        self._rate_hz = cfg.artefact_rate_per_min / 60.0
        self._explicit = sorted(cfg.artefacts, key=lambda a: a.start_s)
        self._amplitude = cfg.artefact_au
        self._next_random = self._draw_gap(0.0)
        self.start = EventLog(np.float64)
        self.end = EventLog(np.float64)
        self._params: list[FloatArray] = []  # per burst: amplitude, 3 freqs, 3 phases

    def _draw_gap(self, after_s: float) -> float:
        return after_s + self._rng.exponential(1.0 / self._rate_hz) if self._rate_hz else math.inf

    def _ensure(self, until_s: float) -> None:
        while True:
            explicit = self._explicit[0].start_s if self._explicit else math.inf
            start = min(explicit, self._next_random)
            if start > until_s:
                return
            if explicit <= self._next_random:
                end = self._explicit.pop(0).end_s
            else:
                end = start + float(self._rng.uniform(1.0, 4.0))
                self._next_random = self._draw_gap(end)
            params = np.concatenate(
                (
                    [self._amplitude * float(self._rng.uniform(0.5, 1.5))],
                    self._rng.uniform(0.5, 3.0, 3),
                    self._rng.uniform(0.0, 2 * math.pi, 3),
                )
            )
            self.start.extend([start])
            self.end.extend([end])
            self._params.append(params)

    def render(self, t: FloatArray) -> FloatArray:
        self._ensure(float(t[-1]))
        out = np.zeros(len(t))
        starts, ends = self.start.view(), self.end.view()
        for i in np.flatnonzero((starts <= t[-1]) & (ends > t[0])):
            p = self._params[i]
            rel = t - starts[i]
            window = np.where(
                (rel >= 0) & (t < ends[i]), np.sin(math.pi * rel / (ends[i] - starts[i])) ** 2, 0.0
            )
            burst = np.sin(2 * math.pi * p[1:4, None] * rel + p[4:7, None]).sum(axis=0)
            out += p[0] * window * burst / math.sqrt(1.5)
        return out


class RespirationSynth(BlockSource[RespirationTruth]):
    """Streams the band signal (a.u.); pass ``breaths`` to share them with an ECG's RSA."""

    def __init__(
        self, config: RespirationConfig | None = None, *, breaths: BreathTrain | None = None
    ) -> None:
        self.config = config or RespirationConfig()
        cfg = self.config
        super().__init__(
            fs_hz=cfg.fs_hz, unit=Unit.RESP_AU, channels=1, block_len=round(cfg.fs_hz * 10)
        )
        self.breaths = breaths or BreathTrain(cfg.breathing)
        drift_rng, noise_rng, artefact_rng = rng_streams(cfg.seed, 3)
        self._drift = (
            ColouredNoise(drift_rng, fs_hz=cfg.fs_hz, cutoff_hz=0.02, rms=cfg.drift_au)
            if cfg.drift_au > 0
            else None
        )
        self._noise_rng = noise_rng
        _, shape_std = _shape_stats(self.breaths.config.ti_fraction)
        self._noise_rms = (
            0.0 if cfg.snr_db is None else cfg.amplitude_au * shape_std / 10 ** (cfg.snr_db / 20)
        )
        self._artefacts = _Artefacts(cfg, artefact_rng)

    def _render(self, start: int, count: int) -> FloatArray:
        cfg = self.config
        t = self._times(start, count)
        out = cfg.offset_au + cfg.amplitude_au * self.breaths.volume(t)
        if self._drift is not None:
            out += self._drift.next(count)
        if self._noise_rms > 0:
            out += self._noise_rms * self._noise_rng.standard_normal(count)
        out += self._artefacts.render(t)
        return out

    def truth(self) -> RespirationTruth:
        now = self.now_s
        b = self.breaths
        n = int(np.searchsorted(b.onsets.view(), now, side="left"))
        onsets, ti, te = b.onsets.view()[:n], b.ti_s.view()[:n], b.te_s.view()[:n]
        n_ap = int(np.searchsorted(b.apnoea_start.view(), now, side="left"))
        n_art = int(np.searchsorted(self._artefacts.start.view(), now, side="left"))
        return RespirationTruth(
            onset_times_s=onsets.copy(),
            peak_times_s=onsets + ti,
            rate_bpm=60.0 / (ti + te),
            amplitude_au=b.amplitudes.view()[:n] * self.config.amplitude_au,
            apnoea_start_s=b.apnoea_start.view()[:n_ap].copy(),
            apnoea_end_s=b.apnoea_end.view()[:n_ap].copy(),
            artefact_start_s=self._artefacts.start.view()[:n_art].copy(),
            artefact_end_s=self._artefacts.end.view()[:n_art].copy(),
        )


RESPIRATION_SCENARIOS = ("rest", "slow_paced", "tachypnoea", "exercise", "apnoea", "low_snr")
"""The names :func:`respiration_scenario` knows."""
SCENARIO_APNOEAS = (Interval(60.0, 75.0), Interval(150.0, 180.0), Interval(240.0, 252.0))
"""The pauses of the ``"apnoea"`` scenario (15, 30 and 12 s; meant for a 5 min recording)."""


def respiration_scenario(
    name: str,
    seed: int,
    *,
    fs_hz: float = 25.0,
    duration_s: float = 300.0,
    band_seed: int | None = None,
    rest_rate_bpm: float = 12.0,
) -> RespirationConfig:
    """A named band-recording scenario: 800 a.u. breaths on a 12000 a.u. offset with 40 a.u.
    drift and 25 dB SNR unless stated.

    ``"rest"`` (``rest_rate_bpm``), ``"slow_paced"`` (6 /min, regular), ``"tachypnoea"``
    (30 rising to 40 /min over ``duration_s``), ``"exercise"`` (25 rising to 35 /min, ~2
    motion artefacts of 1-4 s a minute), ``"apnoea"`` (14 /min with
    :data:`SCENARIO_APNOEAS`), ``"low_snr"`` (15 /min at 5 dB). ``seed`` drives the breathing
    pattern, ``band_seed`` (default ``seed``) the noise, drift and artefacts. Raises
    :class:`SignalError` ``unknown_scenario`` for another name.
    """
    snr_db = 25.0
    artefact_rate_per_min = 0.0
    if name == "rest":
        breathing = BreathingConfig(rate_bpm=rest_rate_bpm, seed=seed)
    elif name == "slow_paced":  # paced breathing is regular
        breathing = BreathingConfig(rate_bpm=6.0, rate_cv=0.05, seed=seed)
    elif name == "tachypnoea":
        rising = Schedule.from_pairs([(0.0, 30.0), (duration_s, 40.0)])
        breathing = BreathingConfig(rate_bpm=rising, seed=seed)
    elif name == "exercise":
        rising = Schedule.from_pairs([(0.0, 25.0), (duration_s, 35.0)])
        breathing = BreathingConfig(rate_bpm=rising, seed=seed)
        artefact_rate_per_min = 2.0
    elif name == "apnoea":
        breathing = BreathingConfig(rate_bpm=14.0, apnoeas=SCENARIO_APNOEAS, seed=seed)
    elif name == "low_snr":
        breathing = BreathingConfig(rate_bpm=15.0, seed=seed)
        snr_db = 5.0
    else:
        raise SignalError("respiration", "unknown_scenario", f"not one of {RESPIRATION_SCENARIOS}")
    return RespirationConfig(
        fs_hz=fs_hz,
        amplitude_au=800.0,
        offset_au=12000.0,
        drift_au=40.0,
        snr_db=snr_db,
        artefact_rate_per_min=artefact_rate_per_min,
        breathing=breathing,
        seed=seed if band_seed is None else band_seed,
    )
