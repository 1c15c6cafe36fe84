"""Reconnect backoff: a small pure policy with explicit state and an injected clock.

Role: decide how long to wait before the next connection attempt (to a device, to the
broker). Exponential growth with "full jitter" (AWS Architecture Blog, "Exponential
Backoff And Jitter", 2015): the delay before attempt ``n`` (``n`` consecutive failures so
far) is ``uniform(0, min(max_s, initial_s * multiplier**(n-1)))``, floored at
``floor_s``. A connection that stayed up for ``stable_s`` resets the count, so a device
that drops once an hour reconnects at once, while one that drops right after every
connect backs off. The caller supplies the time (``now_s``, monotonic seconds) and the
random draw (``rand`` in [0, 1)), so tests drive it without sleeping.

Must not: sleep, read a clock, draw random numbers itself, or do I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

__all__ = ["BackoffPolicy", "BackoffState"]


@dataclass(frozen=True, slots=True)
class BackoffState:
    """Consecutive failures, and when the current connection came up (if it is up)."""

    failures: int = 0
    connected_at_s: float | None = None


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    initial_s: float = 0.25
    max_s: float = 30.0
    multiplier: float = 2.0
    floor_s: float = 0.0
    """Smallest delay after a failure (e.g. to let a radio settle)."""
    stable_s: float = 30.0
    """A connection that lasted this long wipes the failure count when it ends."""

    def __post_init__(self) -> None:
        if not (0 < self.initial_s <= self.max_s and math.isfinite(self.max_s)):
            raise ValueError("need 0 < initial_s <= max_s < inf")
        if not (self.multiplier >= 1 and 0 <= self.floor_s <= self.max_s and self.stable_s >= 0):
            raise ValueError("need multiplier >= 1, 0 <= floor_s <= max_s, stable_s >= 0")

    def ceiling_s(self, failures: int) -> float:
        """The largest delay possible after ``failures`` consecutive failures."""
        if failures <= 0:
            return 0.0
        exponent = min(failures - 1, 64)  # past this the cap has long been reached
        return min(self.max_s, self.initial_s * self.multiplier**exponent)

    def delay_s(self, state: BackoffState, rand: float) -> float:
        """Seconds to wait before the next attempt; ``rand`` is a uniform draw in [0, 1)."""
        if not 0.0 <= rand < 1.0:
            raise ValueError("rand must be in [0, 1)")
        if state.failures == 0:
            return 0.0
        return max(self.floor_s, self.ceiling_s(state.failures) * rand)

    def failed(self, state: BackoffState) -> BackoffState:
        """An attempt failed (could not connect)."""
        return BackoffState(failures=state.failures + 1)

    def connected(self, state: BackoffState, now_s: float) -> BackoffState:
        """The connection is up (the failure count is kept until it proves stable)."""
        return replace(state, connected_at_s=now_s)

    def disconnected(self, state: BackoffState, now_s: float) -> BackoffState:
        """The connection went down: a stable one resets the count, a short-lived one
        counts as a failure."""
        if state.connected_at_s is not None and now_s - state.connected_at_s >= self.stable_s:
            return BackoffState()
        return BackoffState(failures=state.failures + 1)
