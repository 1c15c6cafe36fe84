"""Synthetic single-lead ECG in µV: the ECGSYN dynamical model in closed form, streamed.

Model: McSharry, Clifford, Tarassenko & Smith, "A dynamical model for generating
synthetic electrocardiogram signals", IEEE Trans Biomed Eng 50(3):289-294, 2003
(ECGSYN). A trajectory turns around a unit limit cycle with angular speed
``ω(t) = 2π / RR(t)``; the P, Q, R, S and T waves are Gaussian events at angles
``θ_i`` with widths ``b_i``. For an ω that is constant over the cardiac cycle the
z-equation ``dz/dt = -Σ a_i Δθ_i ω exp(-Δθ_i²/2b_i²)`` integrates in closed form to
``z = Σ a_i b_i² exp(-Δθ_i²/2b_i²)``, so each beat is a sum of five Gaussians in time
placed around its R peak; no ODE solver is needed and blocks render in pure numpy.

* RR tachogram: ``RR(t) = 60/HR(t) + σ_LF·LF(t) + σ_HF·HF(t)`` on a 4 Hz grid, where
  ``HR(t)`` is a schedule (rate changes, tachycardia episodes), LF (Mayer waves, ~0.1 Hz)
  and HF (respiratory sinus arrhythmia, ~0.25 Hz) are unit-variance narrow-band
  resonators, ``σ_LF² / σ_HF² = LF/HF`` and ``σ_LF² + σ_HF² = (60·HR_std/HR²)²`` as in
  ECGSYN. With an ``RsaDrive`` (a breathing process) the HF term follows that breathing
  instead: RR shortens on inspiration.
* Beats are placed by integral pulse-frequency modulation: R peaks where ``∫ dt/RR``
  crosses an integer (what ECGSYN's θ crossing zero amounts to).
* As in ECGSYN, ``θ_i`` and ``b_i`` scale with ``sqrt(HR/60)``; here per beat, from the
  beat's own (sinus) RR, so the QT interval follows the rate.
* Optional premature ventricular beats: early (coupling × RR), no P wave, wide tall QRS
  and a discordant T, followed by a full compensatory pause (the sinus node is not reset).
* Noise options: baseline wander (low-passed Gaussian, < 0.3 Hz), powerline (50/60 Hz
  sine) and EMG (white Gaussian), all in µV RMS/amplitude.

Ground truth: R-peak times, beat labels (``N``/``V``), RR and instantaneous HR, and the
scheduled mean HR at each beat. Must not: import asyncio/bumble, do I/O, read clocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy import signal as sps

from devices.frame import Unit
from devices.sim.signals import (
    BlockSource,
    ColouredNoise,
    EventLog,
    FloatArray,
    Schedule,
    SignalError,
    StrArray,
    as_schedule,
    rng_streams,
)

__all__ = ["EcgConfig", "EcgSynth", "EcgTruth", "RsaDrive"]

_TWO_PI = 2.0 * math.pi
# ECGSYN Table 1 (P, Q, R, S, T): angles θ_i (rad), a_i and b_i (rad). Heights are the
# closed-form peak values a_i·b_i², relative to the R wave's.
_ECGSYN_THETA = np.array([-math.pi / 3, -math.pi / 12, 0.0, math.pi / 12, math.pi / 2])
_ECGSYN_A = np.array([1.2, -5.0, 30.0, -7.5, 0.75])
_ECGSYN_B = np.array([0.25, 0.1, 0.1, 0.1, 0.4])
_ECGSYN_H = _ECGSYN_A * _ECGSYN_B**2 / (_ECGSYN_A[2] * _ECGSYN_B[2] ** 2)
# Premature ventricular beat (row 1): no P, wide tall QRS, T opposite to the QRS.
_THETA = np.stack([_ECGSYN_THETA, np.array([0.0, -0.3, 0.0, 0.4, 1.7])])
_WIDTH = np.stack([_ECGSYN_B, np.array([0.3, 0.16, 0.22, 0.22, 0.45])])
_HEIGHT = np.stack([_ECGSYN_H, np.array([0.0, -0.15, 1.6, -0.5, -0.55])])
# ECGSYN: θ_i scaled by [hrfact^½, hrfact, 1, hrfact, hrfact^½], b_i by hrfact.
_THETA_EXPONENT = np.array([0.5, 1.0, 0.0, 1.0, 0.5])
_LABELS = np.array(["N", "V"])
_NEIGHBOURS = np.array([-1, 0, 1])
_GRID_HZ = 4.0
_GRID_CHUNK = 240
_RESONATOR_BANDWIDTH_HZ = 0.04
_RR_LIMITS_S = (0.24, 3.0)


class RsaDrive(Protocol):
    """A breathing process the HF (RSA) term can follow.

    ``rsa_drive(t)`` is zero-mean with unit variance over normal breathing and high on
    inspiration. ``respiration.BreathTrain`` implements it.
    """

    def rsa_drive(self, t_s: FloatArray) -> FloatArray: ...


@dataclass(frozen=True, slots=True)
class EcgConfig:
    """Parameters of the synthetic ECG; defaults are ECGSYN's (HR 60 ± 1 bpm, LF/HF 0.5)."""

    fs_hz: float = 250.0
    hr_bpm: float | Schedule = 60.0
    hr_std_bpm: float = 1.0
    lf_hf_ratio: float = 0.5
    lf_hz: float = 0.1
    hf_hz: float = 0.25
    r_amplitude_uv: float = 1000.0
    baseline_wander_uv: float = 0.0
    powerline_uv: float = 0.0
    powerline_hz: float = 50.0
    emg_noise_uv: float = 0.0
    pvc_probability: float = 0.0
    pvc_coupling: float = 0.6
    seed: int = 0

    def __post_init__(self) -> None:
        hr = as_schedule(self.hr_bpm)
        checks = {
            "bad_fs": self.fs_hz > 0 and math.isfinite(self.fs_hz),
            "hr_out_of_range": hr.lowest >= 20.0 and hr.highest <= 250.0,
            "bad_hr_std": 0.0 <= self.hr_std_bpm <= 30.0,
            "bad_lf_hf": self.lf_hf_ratio > 0,
            "bad_bands": 0 < self.lf_hz < self.hf_hz < _GRID_HZ / 2,
            "negative_noise": min(self.baseline_wander_uv, self.powerline_uv, self.emg_noise_uv)
            >= 0,
            "powerline_above_nyquist": self.powerline_uv == 0 or self.powerline_hz < self.fs_hz / 2,
            "bad_pvc_probability": 0.0 <= self.pvc_probability <= 0.5,
            "bad_pvc_coupling": 0.3 <= self.pvc_coupling <= 0.9,
        }
        for reason, ok in checks.items():
            if not ok:
                raise SignalError("ecg", reason)


@dataclass(frozen=True, slots=True)
class EcgTruth:
    """Beats whose R peak is before the source's current time.

    ``rr_ms`` / ``hr_bpm`` are from the previous R peak (the first beat: the tachogram's
    RR at that time); ``hr_mean_bpm`` is the scheduled mean HR at the beat.
    """

    r_peak_times_s: FloatArray
    beat_labels: StrArray
    rr_ms: FloatArray
    hr_bpm: FloatArray
    hr_mean_bpm: FloatArray


def _resonator(f0_hz: float) -> tuple[FloatArray, float]:
    """AR(2) resonator at ``f0_hz`` on the 4 Hz grid, and the gain making it unit variance."""
    r = math.exp(-math.pi * _RESONATOR_BANDWIDTH_HZ / _GRID_HZ)
    a = np.array([1.0, -2.0 * r * math.cos(_TWO_PI * f0_hz / _GRID_HZ), r * r])
    impulse = np.zeros(4000)
    impulse[0] = 1.0
    h = sps.lfilter([1.0], a, impulse)
    return a, 1.0 / float(np.sqrt(np.sum(h**2)))


class _Tachogram:
    """IPFM beat generator driven by the RR process; extends one 60 s grid chunk at a time."""

    def __init__(self, config: EcgConfig, rng: np.random.Generator, rsa: RsaDrive | None) -> None:
        self._hr = as_schedule(config.hr_bpm)
        self._hr_std = config.hr_std_bpm
        self._lf_share = config.lf_hf_ratio / (1.0 + config.lf_hf_ratio)
        self._rng = rng
        self._rsa = rsa
        self._lf_a, self._lf_gain = _resonator(config.lf_hz)
        self._hf_a, self._hf_gain = _resonator(config.hf_hz)
        burn = rng.standard_normal((2, 400))
        _, self._lf_zi = sps.lfilter([1.0], self._lf_a, burn[0], zi=np.zeros(2))
        _, self._hf_zi = sps.lfilter([1.0], self._hf_a, burn[1], zi=np.zeros(2))
        self._next_index = 0
        self._last: tuple[float, float, float] | None = None  # (t, 1/RR, phase in beats)
        self._phase0 = float(rng.uniform(0.0, 1.0))
        self.horizon_s = 0.0

    def hr_at(self, t_s: FloatArray) -> FloatArray:
        return self._hr(t_s)

    def _rr_grid(self, t: FloatArray) -> FloatArray:
        hr = self._hr(t)
        rr_std = 60.0 * self._hr_std / hr**2
        noise = self._rng.standard_normal((2, len(t)))
        lf, self._lf_zi = sps.lfilter([1.0], self._lf_a, noise[0], zi=self._lf_zi)
        hf, self._hf_zi = sps.lfilter([1.0], self._hf_a, noise[1], zi=self._hf_zi)
        hf_term = -self._rsa.rsa_drive(t) if self._rsa is not None else hf * self._hf_gain
        rr = (
            60.0 / hr
            + rr_std * math.sqrt(self._lf_share) * lf * self._lf_gain
            + rr_std * math.sqrt(1.0 - self._lf_share) * hf_term
        )
        return np.asarray(np.clip(rr, *_RR_LIMITS_S), dtype=np.float64)

    def extend(self) -> tuple[FloatArray, FloatArray]:
        """The next chunk's R-peak times and the tachogram RR at each of them."""
        t = (self._next_index + np.arange(_GRID_CHUNK)) / _GRID_HZ
        self._next_index += _GRID_CHUNK
        rr = self._rr_grid(t)
        inv = 1.0 / rr
        if self._last is None:
            t_all, inv_all, phase_start = t, inv, self._phase0
        else:
            t_prev, inv_prev, phase_start = self._last
            t_all = np.concatenate(([t_prev], t))
            inv_all = np.concatenate(([inv_prev], inv))
        steps = 0.5 * (inv_all[1:] + inv_all[:-1]) * np.diff(t_all)
        phase = phase_start + np.concatenate(([0.0], np.cumsum(steps)))
        self._last = (float(t_all[-1]), float(inv_all[-1]), float(phase[-1]))
        self.horizon_s = float(t_all[-1])
        counts = np.arange(math.floor(phase[0]) + 1, math.floor(phase[-1]) + 1, dtype=np.float64)
        beats = np.interp(counts, phase, t_all)
        return beats, np.interp(beats, t_all, 1.0 / inv_all)


class EcgSynth(BlockSource[EcgTruth]):
    """Streams the synthetic ECG in µV at ``config.fs_hz`` (one channel)."""

    def __init__(self, config: EcgConfig | None = None, *, rsa: RsaDrive | None = None) -> None:
        self.config = config or EcgConfig()
        cfg = self.config
        super().__init__(
            fs_hz=cfg.fs_hz, unit=Unit.MICROVOLT, channels=1, block_len=round(cfg.fs_hz * 4)
        )
        rr_rng, beat_rng, wander_rng, emg_rng, line_rng = rng_streams(cfg.seed, 5)
        self._tachogram = _Tachogram(cfg, rr_rng, rsa)
        self._beat_rng = beat_rng
        self._emg_rng = emg_rng
        self._wander = (
            ColouredNoise(wander_rng, fs_hz=cfg.fs_hz, cutoff_hz=0.3, rms=cfg.baseline_wander_uv)
            if cfg.baseline_wander_uv > 0
            else None
        )
        self._line_phase = float(line_rng.uniform(0.0, _TWO_PI))
        self._beat_t = EventLog(np.float64)
        self._beat_rr = EventLog(np.float64)  # sinus RR that scales the beat's morphology
        self._beat_kind = EventLog(np.int64)
        self._last_sinus_t: float | None = None
        self._last_kind = 0

    def _ensure_beats(self, until_s: float) -> None:
        while self._tachogram.horizon_s < until_s:
            times, rr_local = self._tachogram.extend()
            premature = self._beat_rng.random(len(times)) < self.config.pvc_probability
            out_t = np.empty_like(times)
            out_rr = np.empty_like(times)
            kinds = np.zeros(len(times), dtype=np.int64)
            for i, (t, rr) in enumerate(zip(times.tolist(), rr_local.tolist(), strict=True)):
                sinus_rr = rr if self._last_sinus_t is None else t - self._last_sinus_t
                out_t[i], out_rr[i] = t, sinus_rr
                if premature[i] and self._last_kind == 0 and self._last_sinus_t is not None:
                    out_t[i] = self._last_sinus_t + self.config.pvc_coupling * sinus_rr
                    kinds[i] = 1
                self._last_sinus_t, self._last_kind = t, int(kinds[i])
            self._beat_t.extend(out_t)
            self._beat_rr.extend(out_rr)
            self._beat_kind.extend(kinds)

    def _beats_sum(self, t: FloatArray) -> FloatArray:
        """Σ over the neighbouring beats and their five waves of height·Gaussian(t)."""
        beat_t = self._beat_t.view()
        last = np.searchsorted(beat_t, t, side="right") - 1
        index = last[:, None] + _NEIGHBOURS
        valid = (index >= 0) & (index < len(beat_t))
        index = np.clip(index, 0, len(beat_t) - 1)
        kind = self._beat_kind.view()[index]
        rr = self._beat_rr.view()[index][..., None]
        hrfact = 1.0 / np.sqrt(rr)
        centre = beat_t[index][..., None] + _THETA[kind] * hrfact**_THETA_EXPONENT * rr / _TWO_PI
        sigma = _WIDTH[kind] * hrfact * rr / _TWO_PI
        waves = _HEIGHT[kind] * np.exp(-0.5 * ((t[:, None, None] - centre) / sigma) ** 2)
        return np.asarray(np.sum(waves.sum(axis=2) * valid, axis=1), dtype=np.float64)

    def _render(self, start: int, count: int) -> FloatArray:
        cfg = self.config
        t = self._times(start, count)
        self._ensure_beats(float(t[-1]) + 2.5)
        out = self._beats_sum(t) * cfg.r_amplitude_uv
        if self._wander is not None:
            out += self._wander.next(count)
        if cfg.emg_noise_uv > 0:
            out += cfg.emg_noise_uv * self._emg_rng.standard_normal(count)
        if cfg.powerline_uv > 0:
            cycles = np.mod((start + np.arange(count)) * (cfg.powerline_hz / cfg.fs_hz), 1.0)
            out += cfg.powerline_uv * np.sin(_TWO_PI * cycles + self._line_phase)
        return out

    def truth(self) -> EcgTruth:
        beat_t = self._beat_t.view()
        n = int(np.searchsorted(beat_t, self.now_s, side="left"))
        times = beat_t[:n].copy()
        rr_s = np.diff(times, prepend=np.nan)
        if n:
            rr_s[0] = self._beat_rr.view()[0]
        return EcgTruth(
            r_peak_times_s=times,
            beat_labels=_LABELS[self._beat_kind.view()[:n]],
            rr_ms=rr_s * 1000.0,
            hr_bpm=60.0 / rr_s,
            hr_mean_bpm=self._tachogram.hr_at(times),
        )
