"""Device time for the simulated devices: the device clock, sample grids and source cursors.

Role: ``DeviceClock`` (ns since boot, ``speed`` times the loop clock, drift in ppm, and
``sleep_until`` a device time), ``PacingStats`` (how late frames left), ``SampleGrid``
(boot-anchored integer sample times) and ``SourceCursor`` (a signal source read on that
grid, decimated). Times are integers on the grid, so nothing drifts.

It must not: read the wall clock (only the event loop's clock, or an injected one), know
a GATT profile or the radio, or sleep for anything but reaching a device time.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from devices.frame import FloatArray
from devices.sim.signals import SignalSource

__all__ = ["DeviceClock", "PacingStats", "SampleGrid", "SourceCursor"]

_EARLY_WAKE_S = 0.0005  # asyncio may wake a timer this much early
_SEEK_CHUNK_S = 60.0


@dataclass(slots=True)
class PacingStats:
    """How late frames left against their due time on the loop clock."""

    frames: int = 0
    max_lateness_s: float = 0.0
    total_lateness_s: float = 0.0

    def note(self, lateness_s: float) -> None:
        self.frames += 1
        self.total_lateness_s += lateness_s
        self.max_lateness_s = max(self.max_lateness_s, lateness_s)


class DeviceClock:
    """The device's own clock in ns since boot: ``speed`` times the loop clock, off by
    ``drift_ppm``. ``start()`` boots it. ``time`` defaults to the running loop's clock;
    another source only suits tests of the mapping (``sleep_until`` sleeps on the loop)."""

    def __init__(self, *, speed: float = 1.0, time: Callable[[], float] | None = None) -> None:
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError("speed must be a positive number")
        self.speed = float(speed)
        self._time = time
        self._anchor_time: float | None = None
        self._anchor_ns = 0
        self._drift_ppm = 0.0

    def _now(self) -> float:
        return self._time() if self._time is not None else asyncio.get_running_loop().time()

    def start(self) -> None:
        self._anchor_time, self._anchor_ns = self._now(), 0

    @property
    def drift_ppm(self) -> float:
        return self._drift_ppm

    def _rate_ns_per_s(self) -> float:
        return 1e9 * self.speed * (1.0 + self._drift_ppm * 1e-6)

    def _anchor(self) -> float:
        if self._anchor_time is None:
            raise RuntimeError("device clock not started")
        return self._anchor_time

    def now_ns(self) -> int:
        return self._anchor_ns + math.floor((self._now() - self._anchor()) * self._rate_ns_per_s())

    def time_at(self, device_ns: int) -> float:
        """The loop time at which the clock reads ``device_ns`` (at the current drift)."""
        return self._anchor() + (device_ns - self._anchor_ns) / self._rate_ns_per_s()

    def set_drift_ppm(self, ppm: float) -> None:
        """Change the drift from now on; the reading stays continuous."""
        if not (math.isfinite(ppm) and -1e6 < ppm < 1e6):
            raise ValueError("ppm must be finite and within +-1e6")
        now_ns = self.now_ns()
        self._anchor_time, self._anchor_ns, self._drift_ppm = self._now(), now_ns, ppm

    async def sleep_until(self, device_ns: int, stats: PacingStats | None = None) -> None:
        """Sleep until the clock reads ``device_ns``; if that is past, only yield once."""
        slept = False
        while (delay := self.time_at(device_ns) - self._now()) > _EARLY_WAKE_S:
            await asyncio.sleep(delay)
            slept = True
        if stats is not None:
            stats.note(max(0.0, -delay))
        if not slept:
            await asyncio.sleep(0)


@dataclass(frozen=True, slots=True)
class SampleGrid:
    """Sample ``j`` of a stream at ``fs`` Hz is taken ``floor(j * 1e9 / fs)`` ns after boot."""

    fs: Fraction

    @classmethod
    def from_hz(cls, fs_hz: float) -> SampleGrid:
        return cls(Fraction(fs_hz).limit_denominator(1000))

    def time_ns(self, index: int) -> int:
        return index * 1_000_000_000 * self.fs.denominator // self.fs.numerator

    def first_at_or_after(self, t_ns: int) -> int:
        """The first sample index whose time is not before ``t_ns``."""
        return -((-t_ns * self.fs.numerator) // (1_000_000_000 * self.fs.denominator))


class SourceCursor:
    """A signal source read on the device's boot-anchored grid: source sample ``i`` is
    the signal at ``i / source.fs_hz`` s after boot. A stream at ``fs`` takes every
    ``source.fs_hz / fs``-th sample. The cursor must be the source's only reader."""

    def __init__(self, source: SignalSource[Any]) -> None:
        self.source = source
        self._base = Fraction(source.fs_hz).limit_denominator(1000)
        self.position = 0

    def factor(self, grid: SampleGrid) -> int | None:
        """Decimation factor for ``grid`` (``None`` if the source cannot serve it)."""
        ratio = self._base / grid.fs
        return ratio.numerator if ratio.denominator == 1 else None

    async def seek(self, base_index: int) -> None:
        """Skip (read and drop) up to source sample ``base_index``, yielding to the loop
        every minute of signal so a long idle period does not stall other devices."""
        chunk = max(1, math.ceil(float(self._base) * _SEEK_CHUNK_S))
        while self.position < base_index:
            step = min(chunk, base_index - self.position)
            self.source.read(step)
            self.position += step
            if self.position < base_index:
                await asyncio.sleep(0)

    def read(self, n: int, factor: int) -> FloatArray:
        raw = self.source.read(n * factor)
        self.position += n * factor
        return np.ascontiguousarray(raw[::factor])
