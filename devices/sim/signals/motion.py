"""Synthetic 3-axis chest accelerometer (mG) following a schedule of motion episodes.

Garment axis convention (right-handed, sensor on the sternum, body frame):

* ``x`` — toward the wearer's **left**;
* ``y`` — toward the head (**superior**);
* ``z`` — out of the chest (**anterior**).

An accelerometer at rest reads the reaction to gravity, +1000 mG pointing away from
the ground, so the static vectors are (in mG):

=========== ===================== ==================
posture     body axis facing up   reading (x, y, z)
=========== ===================== ==================
upright     head                  (0, +1000, 0)
supine      chest (lying on back) (0, 0, +1000)
prone       back (lying face down)(0, 0, −1000)
left        right side (on left)  (−1000, 0, 0)
right       left side (on right)  (+1000, 0, 0)
=========== ===================== ==================

Each episode gets a small random tilt (``tilt_deg`` RMS) and posture changes rotate the
vector smoothly over ``transition_s``. Walking (~1.9 steps/s) and running (~2.8 steps/s)
add per-step waveforms: vertical ``cos 2πτ + 0.3 cos 4πτ`` peaking at each step (heel
strike), medio-lateral sway at half the step rate and antero-posterior surge; running adds
a 15 ms heel-strike transient. A fall is: 0.1 s stumble, 0.3-0.5 s free fall (the
reading shrinks toward 0 g while the body rotates to the final posture), an impact spike
of several g (Gaussian, σ 30 ms, plus 12 Hz ringing), then stillness lying down. The
last episode is held for ever. Ground truth: labelled segments, step times, fall times.
Must not: import asyncio/bumble, do I/O, read clocks.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

from devices.frame import Unit
from devices.sim.signals import (
    BlockSource,
    EventLog,
    FloatArray,
    SignalError,
    StrArray,
)

__all__ = [
    "GRAVITY_MG",
    "Activity",
    "MotionConfig",
    "MotionEpisode",
    "MotionSynth",
    "MotionTruth",
    "Posture",
]


class Posture(enum.StrEnum):
    UPRIGHT = "upright"
    SUPINE = "supine"
    PRONE = "prone"
    LEFT = "left"
    RIGHT = "right"


class Activity(enum.StrEnum):
    REST = "rest"
    WALK = "walk"
    RUN = "run"
    FALL = "fall"


GRAVITY_MG: dict[Posture, tuple[float, float, float]] = {
    Posture.UPRIGHT: (0.0, 1000.0, 0.0),
    Posture.SUPINE: (0.0, 0.0, 1000.0),
    Posture.PRONE: (0.0, 0.0, -1000.0),
    Posture.LEFT: (-1000.0, 0.0, 0.0),
    Posture.RIGHT: (1000.0, 0.0, 0.0),
}


@dataclass(frozen=True, slots=True)
class _Gait:
    cadence_hz: float
    vertical_mg: float
    lateral_mg: float
    surge_mg: float
    heel_strike_mg: float


_GAITS = {
    Activity.WALK: _Gait(1.9, 250.0, 100.0, 150.0, 0.0),
    Activity.RUN: _Gait(2.8, 900.0, 200.0, 300.0, 600.0),
}
_STUMBLE_S = 0.1
_IMPACT_SIGMA_S = 0.03


@dataclass(frozen=True, slots=True)
class MotionEpisode:
    """``activity`` for ``duration_s`` in ``posture`` (for a fall: the posture landed in)."""

    activity: Activity
    duration_s: float
    posture: Posture = Posture.UPRIGHT
    cadence_hz: float | None = None

    def __post_init__(self) -> None:
        if not (self.duration_s > 0 and math.isfinite(self.duration_s)):
            raise SignalError("motion", "bad_duration")
        if self.activity in _GAITS and self.posture is not Posture.UPRIGHT:
            raise SignalError("motion", "gait_needs_upright", self.activity)
        if self.activity is Activity.FALL and (
            self.posture is Posture.UPRIGHT or self.duration_s < 1.5
        ):
            raise SignalError("motion", "bad_fall", "a fall lasts >= 1.5 s and ends lying down")
        if self.cadence_hz is not None and not 0.5 <= self.cadence_hz <= 4.0:
            raise SignalError("motion", "bad_cadence")


@dataclass(frozen=True, slots=True)
class MotionConfig:
    fs_hz: float = 50.0
    episodes: tuple[MotionEpisode, ...] = (MotionEpisode(Activity.REST, 60.0),)
    noise_mg: float = 5.0
    range_mg: float = 16000.0
    transition_s: float = 1.5
    tilt_deg: float = 4.0
    impact_mg: float = 4500.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.fs_hz > 0 and math.isfinite(self.fs_hz)) or not self.episodes:
            raise SignalError("motion", "bad_config", "need fs_hz > 0 and >= 1 episode")
        if self.episodes[0].activity is Activity.FALL:
            raise SignalError("motion", "bad_fall", "a fall needs a preceding episode")
        if min(self.noise_mg, self.tilt_deg) < 0 or self.transition_s <= 0:
            raise SignalError("motion", "bad_config")
        if not 2000.0 <= self.impact_mg < self.range_mg:
            raise SignalError("motion", "bad_impact")


@dataclass(frozen=True, slots=True)
class MotionTruth:
    """Segments begun before now (ends clipped to now), steps and falls before now."""

    segment_start_s: FloatArray
    segment_end_s: FloatArray
    activity: StrArray
    posture: StrArray
    step_times_s: FloatArray
    fall_times_s: FloatArray
    free_fall_start_s: FloatArray


def _smoothstep(x: FloatArray) -> FloatArray:
    return (1.0 - np.cos(math.pi * np.clip(x, 0.0, 1.0))) / 2.0


def _slerp(a: FloatArray, b: FloatArray, s: FloatArray) -> FloatArray:
    """Unit vectors rotating from ``a`` to ``b`` (``s`` from 0 to 1); antipodes roll about y/x."""
    omega = math.acos(float(np.clip(a @ b, -1.0, 1.0)))
    if omega < 1e-9:
        return np.tile(b, (len(s), 1))
    axis = np.cross(a, b)
    if np.linalg.norm(axis) < 1e-9:
        axis = np.cross(a, [0.0, 1.0, 0.0] if abs(a[1]) < 0.9 else [1.0, 0.0, 0.0])
    axis = axis / np.linalg.norm(axis)
    perp = np.cross(axis, a)
    angle = s[:, None] * omega
    return np.asarray(np.cos(angle) * a + np.sin(angle) * perp, dtype=np.float64)


def _tilted(posture: Posture, tilt_deg: float, rng: np.random.Generator) -> FloatArray:
    g = np.asarray(GRAVITY_MG[posture]) / 1000.0
    direction = rng.standard_normal(3)
    perp = direction - (direction @ g) * g
    perp /= np.linalg.norm(perp)
    angle = math.radians(tilt_deg) * float(rng.standard_normal())
    return np.asarray(math.cos(angle) * g + math.sin(angle) * perp, dtype=np.float64)


class _Realised:
    """One scheduled episode with its random draws; steps are extended lazily."""

    def __init__(
        self,
        episode: MotionEpisode,
        span_s: tuple[float, float],
        g_from: FloatArray | None,
        cfg: MotionConfig,
        index: int,
    ) -> None:
        self.episode = episode
        self.start_s, self.end_s = span_s
        self._rng = np.random.default_rng([cfg.seed, 0x6D6F74, index])
        self.g_to = _tilted(episode.posture, cfg.tilt_deg, self._rng)
        self.g_from = self.g_to if g_from is None else g_from
        self.steps = EventLog(np.float64)
        self.step_gain = EventLog(np.float64)
        gait = _GAITS.get(episode.activity)
        self.gait = gait
        self._period_s = 1.0 / (episode.cadence_hz or (gait.cadence_hz if gait else 1.0))
        self._next_step = self.start_s + self._period_s
        self._finished = False
        free_fall = float(self._rng.uniform(0.3, 0.5))
        self.free_fall_start_s = self.start_s + _STUMBLE_S
        self.impact_s = self.free_fall_start_s + free_fall
        self.impact_mg = cfg.impact_mg * float(self._rng.uniform(0.85, 1.15))
        self.free_fall_level = float(self._rng.uniform(0.05, 0.2))
        ring = self._rng.standard_normal(3)
        self.ring_dir = ring / np.linalg.norm(ring)

    def ensure_steps(self, until_s: float) -> None:
        """Steps past ``until_s`` (for the phase); the last > 1.1 periods before the end."""
        last_allowed = self.end_s - 1.1 * self._period_s
        while self._next_step <= until_s + 2 * self._period_s and not self._finished:
            jitter = 1.0 + 0.02 * self._rng.standard_normal(64)
            times = self._next_step + np.concatenate(
                ([0.0], np.cumsum(jitter[:-1] * self._period_s))
            )
            kept = times[times <= last_allowed]
            self.steps.extend(kept)
            self.step_gain.extend(1.0 + 0.08 * self._rng.standard_normal(len(kept)))
            self._next_step = float(times[-1] + jitter[-1] * self._period_s)
            self._finished = len(kept) < len(times) or self._next_step > last_allowed

    def gravity(self, t: FloatArray, transition_s: float) -> FloatArray:
        if self.episode.activity is not Activity.FALL:
            return _slerp(self.g_from, self.g_to, _smoothstep((t - self.start_s) / transition_s))
        during = (t - self.free_fall_start_s) / (self.impact_s - self.free_fall_start_s)
        direction = _slerp(self.g_from, self.g_to, _smoothstep(during))
        down = _smoothstep((t - self.free_fall_start_s) / 0.08)
        up = _smoothstep((t - self.impact_s + 0.02) / 0.04)
        magnitude = 1.0 - (1.0 - self.free_fall_level) * down * (1.0 - up)
        return np.asarray(direction * magnitude[:, None], dtype=np.float64)

    def impact(self, t: FloatArray) -> FloatArray:
        dt = t - self.impact_s
        spike = self.impact_mg * np.exp(-0.5 * (dt / _IMPACT_SIGMA_S) ** 2)
        ring = np.where(
            dt >= 0, np.exp(-np.maximum(dt, 0) / 0.08) * np.sin(2 * math.pi * 12 * dt), 0.0
        )
        return np.asarray(
            spike[:, None] * self.g_to + (0.3 * self.impact_mg * ring)[:, None] * self.ring_dir,
            dtype=np.float64,
        )

    def _step_window(self, t: FloatArray) -> tuple[FloatArray, FloatArray, int, float, float]:
        """The steps around ``t`` with a virtual step before the first and after the last.

        Returns the window of the extended step list, its gains, the window's index in the
        extended list (for the left/right parity) and the two virtual step times. Only
        the window is touched, so long episodes cost the same per block.
        """
        steps, gain = self.steps.view(), self.step_gain.view()
        n = len(steps)
        first = float(steps[0] - (steps[1] - steps[0]))
        last = float(steps[-1] + (steps[-1] - steps[-2]))
        a = int(np.searchsorted(steps, t[0], side="right"))  # extended index at/before t[0]
        m = int(np.searchsorted(steps, t[-1], side="right"))  # extended index m+1 is after
        middle = slice(max(a - 1, 0), min(m + 1, n))
        before, after = ([first], [gain[0]]) if a == 0 else ([], [])
        tail, tail_gain = ([last], [gain[-1]]) if m >= n else ([], [])
        window = np.concatenate((before, steps[middle], tail))
        gains = np.concatenate((after, gain[middle], tail_gain))
        return window, gains, a, first, last

    def gait_motion(self, t: FloatArray) -> FloatArray:
        """Body-frame dynamic acceleration (mG) of walking or running at times ``t``."""
        assert self.gait is not None
        self.ensure_steps(float(t[-1]))
        if len(self.steps) < 2:
            return np.zeros((len(t), 3))
        ext, ext_gain, base, first, last = self._step_window(t)
        k = np.clip(np.searchsorted(ext, t, side="right") - 1, 0, len(ext) - 2)
        tau = (t - ext[k]) / (ext[k + 1] - ext[k])
        amp = ext_gain[k] + (ext_gain[k + 1] - ext_gain[k]) * tau
        g = self.gait
        vertical = (
            g.vertical_mg * amp * (np.cos(2 * math.pi * tau) + 0.3 * np.cos(4 * math.pi * tau))
        )
        for edge in (ext[k], ext[k + 1]):
            vertical += g.heel_strike_mg * amp * np.exp(-0.5 * ((t - edge) / 0.015) ** 2)
        lateral = g.lateral_mg * np.where((k + base) % 2 == 0, 1.0, -1.0) * np.cos(math.pi * tau)
        surge = -g.surge_mg * np.sin(2 * math.pi * tau)
        # gait starts from and ends in standing: zero at the virtual steps either side
        steps = self.steps.view()
        envelope = _smoothstep((t - first) / (steps[1] - steps[0]))
        if self._finished:
            envelope *= _smoothstep((last - t) / (steps[-1] - steps[-2]))
        body = vertical[:, None] * self.g_to + lateral[:, None] * np.array([1.0, 0.0, 0.0])
        body += surge[:, None] * np.array([0.0, 0.0, 1.0])
        return np.asarray(body * envelope[:, None], dtype=np.float64)


class MotionSynth(BlockSource[MotionTruth]):
    """Streams the chest accelerometer as ``(n, 3)`` mG following ``config.episodes``."""

    def __init__(self, config: MotionConfig | None = None) -> None:
        self.config = config or MotionConfig()
        cfg = self.config
        super().__init__(
            fs_hz=cfg.fs_hz, unit=Unit.MILLI_G, channels=3, block_len=round(cfg.fs_hz * 2)
        )
        self._noise_rng = np.random.default_rng([cfg.seed, 0x6E6F69])
        self._episodes: list[_Realised] = []
        self._cursor = 0

    def _realise_until(self, t_s: float) -> None:
        cfg = self.config
        while not self._episodes or self._episodes[-1].end_s <= t_s:
            index = len(self._episodes)
            if index >= len(cfg.episodes):
                return
            previous = self._episodes[-1] if self._episodes else None
            start = previous.end_s if previous else 0.0
            end = (
                math.inf
                if index == len(cfg.episodes) - 1
                else start + cfg.episodes[index].duration_s
            )
            g_from = previous.g_to if previous else None
            self._episodes.append(_Realised(cfg.episodes[index], (start, end), g_from, cfg, index))

    def _render(self, start: int, count: int) -> FloatArray:
        cfg = self.config
        t = self._times(start, count)
        self._realise_until(float(t[-1]))
        out = np.zeros((count, 3))
        while self._episodes[self._cursor].end_s <= t[0]:
            self._cursor += 1
        for ep in self._episodes[self._cursor :]:
            mask = (t >= ep.start_s) & (t < ep.end_s)
            if not mask.any():
                break
            seg = t[mask]
            part = 1000.0 * ep.gravity(seg, cfg.transition_s)
            if ep.gait is not None:
                part += ep.gait_motion(seg)
            if ep.episode.activity is Activity.FALL:
                part += ep.impact(seg)
            out[mask] = part
        out += cfg.noise_mg * self._noise_rng.standard_normal((count, 3))
        return np.clip(out, -cfg.range_mg, cfg.range_mg)

    def truth(self) -> MotionTruth:
        now = self.now_s
        begun = [ep for ep in self._episodes if ep.start_s < now]
        steps = [ep.steps.view() for ep in begun]
        all_steps = np.concatenate(steps) if steps else np.zeros(0)
        falls = [ep for ep in begun if ep.episode.activity is Activity.FALL]
        return MotionTruth(
            segment_start_s=np.array([ep.start_s for ep in begun], dtype=np.float64),
            segment_end_s=np.array([min(ep.end_s, now) for ep in begun], dtype=np.float64),
            activity=np.array([str(ep.episode.activity) for ep in begun], dtype=np.str_),
            posture=np.array([str(ep.episode.posture) for ep in begun], dtype=np.str_),
            step_times_s=all_steps[all_steps < now],
            fall_times_s=np.array([ep.impact_s for ep in falls if ep.impact_s < now]),
            free_fall_start_s=np.array(
                [ep.free_fall_start_s for ep in falls if ep.free_fall_start_s < now]
            ),
        )
