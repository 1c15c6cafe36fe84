"""Synthetic skin temperature (°C) from a garment sensor, at ~1 Hz.

Model, noise-free part first:

* core temperature: ``core_c`` + optional circadian sine (peak in the late afternoon)
  + fever episodes (raised-cosine rise, plateau, raised-cosine defervescence);
* skin temperature: core − ``core_skin_gradient_c`` + the fever offset × coupling +
  a slow Ornstein-Uhlenbeck-like drift (low-passed Gaussian, RMS ``drift_c``);
* sensor: before donning it reads ambient; afterwards it approaches the skin through a
  first-order lag with time constant ``warmup_tau_s`` (the sensor's and fabric's
  thermal mass), discretised exactly: ``s[n] = α s[n-1] + (1-α) target[n]``,
  ``α = exp(-1 / (fs·τ))``.

Measured value = sensor + white noise (``noise_c``), optionally quantised to the
sensor's ``resolution_c``. Ground truth: core, skin and noise-free sensor curves per
sample, and fever intervals. Must not: import asyncio/bumble, do I/O, read clocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import signal as sps

from devices.frame import Unit
from devices.sim.signals import (
    BlockSource,
    ColouredNoise,
    EventLog,
    FloatArray,
    SignalError,
    rng_streams,
)

__all__ = ["FeverEpisode", "TemperatureConfig", "TemperatureSynth", "TemperatureTruth"]


@dataclass(frozen=True, slots=True)
class FeverEpisode:
    """A rise of the core temperature by ``delta_c``: rise, plateau, fall (seconds)."""

    start_s: float
    delta_c: float = 1.5
    rise_s: float = 3600.0
    plateau_s: float = 4 * 3600.0
    fall_s: float = 3600.0

    def __post_init__(self) -> None:
        if min(self.rise_s, self.fall_s) <= 0 or self.plateau_s < 0 or not 0 < self.delta_c <= 5:
            raise SignalError("temperature", "bad_fever")

    @property
    def end_s(self) -> float:
        return self.start_s + self.rise_s + self.plateau_s + self.fall_s

    def offset_c(self, t_s: FloatArray) -> FloatArray:
        rise = np.clip((t_s - self.start_s) / self.rise_s, 0.0, 1.0)
        fall = np.clip((t_s - self.start_s - self.rise_s - self.plateau_s) / self.fall_s, 0.0, 1.0)
        up = (1.0 - np.cos(math.pi * rise)) / 2.0
        down = (1.0 - np.cos(math.pi * fall)) / 2.0
        return self.delta_c * up * (1.0 - down)


@dataclass(frozen=True, slots=True)
class TemperatureConfig:
    """Skin temperature sensor; ``clock_hour_at_start`` places t = 0 on the circadian cycle."""

    fs_hz: float = 1.0
    ambient_c: float = 24.0
    core_c: float = 37.0
    core_skin_gradient_c: float = 3.5
    don_s: float = 0.0
    warmup_tau_s: float = 180.0
    circadian_amplitude_c: float = 0.0
    circadian_peak_hour: float = 17.0
    clock_hour_at_start: float = 8.0
    drift_c: float = 0.1
    drift_tau_s: float = 1200.0
    fevers: tuple[FeverEpisode, ...] = ()
    fever_skin_coupling: float = 0.8
    noise_c: float = 0.02
    resolution_c: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "bad_fs": 0 < self.fs_hz <= 10 and math.isfinite(self.fs_hz),
            "bad_tau": self.warmup_tau_s > 0 and self.drift_tau_s * self.fs_hz > 2,
            "negative_noise": min(self.drift_c, self.noise_c, self.resolution_c) >= 0,
            "bad_coupling": 0.0 <= self.fever_skin_coupling <= 1.0,
            "bad_circadian": 0.0 <= self.circadian_amplitude_c <= 1.0,
            "implausible_core": 34.0 <= self.core_c <= 40.0,
        }
        for reason, ok in checks.items():
            if not ok:
                raise SignalError("temperature", reason)


@dataclass(frozen=True, slots=True)
class TemperatureTruth:
    """Per sample read so far: times, core, skin and the noise-free sensor; fevers begun."""

    times_s: FloatArray
    core_c: FloatArray
    skin_c: FloatArray
    sensor_c: FloatArray
    fever_start_s: FloatArray
    fever_end_s: FloatArray


class TemperatureSynth(BlockSource[TemperatureTruth]):
    """Streams the sensor's skin temperature (°C)."""

    def __init__(self, config: TemperatureConfig | None = None) -> None:
        self.config = config or TemperatureConfig()
        cfg = self.config
        super().__init__(
            fs_hz=cfg.fs_hz, unit=Unit.CELSIUS, channels=1, block_len=round(cfg.fs_hz * 60)
        )
        drift_rng, noise_rng = rng_streams(cfg.seed, 2)
        self._drift = (
            ColouredNoise(
                drift_rng,
                fs_hz=cfg.fs_hz,
                cutoff_hz=1.0 / (2 * math.pi * cfg.drift_tau_s),
                rms=cfg.drift_c,
            )
            if cfg.drift_c > 0
            else None
        )
        self._noise_rng = noise_rng
        self._alpha = math.exp(-1.0 / (cfg.fs_hz * cfg.warmup_tau_s))
        self._lag_zi = np.array([self._alpha * cfg.ambient_c])
        self._log = {name: EventLog(np.float64) for name in ("t", "core", "skin", "sensor")}

    def _core(self, t: FloatArray) -> FloatArray:
        cfg = self.config
        hours = cfg.clock_hour_at_start + t / 3600.0
        circadian = cfg.circadian_amplitude_c * np.cos(
            2 * math.pi * (hours - cfg.circadian_peak_hour) / 24.0
        )
        return cfg.core_c + circadian

    def _render(self, start: int, count: int) -> FloatArray:
        cfg = self.config
        t = self._times(start, count)
        fever = np.zeros(count)
        for episode in cfg.fevers:
            fever += episode.offset_c(t)
        core = self._core(t) + fever
        skin = self._core(t) - cfg.core_skin_gradient_c + cfg.fever_skin_coupling * fever
        if self._drift is not None:
            skin = skin + self._drift.next(count)
        target = np.where(t < cfg.don_s, cfg.ambient_c, skin)
        sensor, self._lag_zi = sps.lfilter(
            [1.0 - self._alpha], [1.0, -self._alpha], target, zi=self._lag_zi
        )
        for name, values in (("t", t), ("core", core), ("skin", skin), ("sensor", sensor)):
            self._log[name].extend(values)
        measured = sensor + cfg.noise_c * self._noise_rng.standard_normal(count)
        if cfg.resolution_c > 0:
            measured = np.round(measured / cfg.resolution_c) * cfg.resolution_c
        return np.asarray(measured, dtype=np.float64)

    def truth(self) -> TemperatureTruth:
        n = self.position
        started = [f for f in self.config.fevers if f.start_s < self.now_s]
        return TemperatureTruth(
            times_s=self._log["t"].view()[:n].copy(),
            core_c=self._log["core"].view()[:n].copy(),
            skin_c=self._log["skin"].view()[:n].copy(),
            sensor_c=self._log["sensor"].view()[:n].copy(),
            fever_start_s=np.array([f.start_s for f in started], dtype=np.float64),
            fever_end_s=np.array([f.end_s for f in started], dtype=np.float64),
        )
