"""Device-clock to UTC mapping: a pure, online fit of offset and drift per device session.

Role: given (device time ns, receive time ns) pairs for one device, estimate the line
``receive - device = offset + drift * device`` along the *lower envelope* of the observed
offsets and map device timestamps to UTC ns. BLE delivery jitter only ever delays a
notification (``receive = true + latency``, ``latency >= 0``, heavy-tailed), so the smallest
observed offsets are the ones closest to the truth.

Algorithm (``_bucket_minimum_envelope`` + ``_trimmed_lower_envelope_fit``):

1. Min-filter per bucket: the device time axis is cut into ``bucket_s`` buckets and only the
   minimum ``receive - device`` of each bucket is kept -- the minimum-delay selection of
   NTP's clock filter (RFC 5905, section 10) and of the skew estimators in Moon, Skelly &
   Towsley, "Estimation and removal of clock skew from network delay measurements",
   IEEE INFOCOM 1999 (which fit a line to the lower envelope of delay samples).
2. A sliding window of ``window_s`` of bucket minima is fitted (offset and drift): a
   Theil-Sen line first, then least squares on the minima not lying far *above* it (a stall
   that covered a whole bucket, a transient latency step); points below the line are kept,
   because jitter cannot make an offset too small. This is the windowed robust regression
   Lab Streaming Layer recommends for de-jittering time stamps
   (https://labstreaminglayer.readthedocs.io/info/time_synchronization.html).

The fit is refreshed only when a bucket closes, so an update costs O(1) amortised
(O(window_s / bucket_s) once per bucket). The mapping is biased late by the minimum
transport latency, which no receive-only method can observe; a known floor (for example
half a connection interval) can be given as ``latency_floor_ns``.

State is explicit and immutable (scipy's ``zi`` style): ``ClockModel.update(state, ...)``
returns a new ``ClockState``; ``ClockModel.reset()`` returns the empty state for a new
session (the device restarted its clock, e.g. after a reconnect). A device time that jumps
backwards by more than ``restart_s`` is treated as such a restart automatically and counted
in ``ClockState.restarts``.

Must not: do I/O, read the wall clock, log, use asyncio, or keep module-level state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from devices.errors import BiogwError
from gateway.errors import ConfigError

__all__ = ["ClockModel", "ClockNotReadyError", "ClockState"]

_NS_PER_S = 1_000_000_000


class ClockNotReadyError(BiogwError):
    """``to_utc`` was called on a state that has seen no (device, receive) pair yet."""

    def __init__(self) -> None:
        super().__init__("clock model has no samples in this session")


@dataclass(frozen=True, slots=True)
class ClockState:
    """One session's clock estimate. Build with ``ClockModel.reset()``; never mutate.

    Offsets are stored relative to the session's first pair (``ref_device_ns``,
    ``ref_offset_ns``) so floats only ever hold small numbers. ``buckets`` holds the closed
    bucket minima in the window as (device time since ref in s, offset since ref in ns).
    """

    ref_device_ns: int | None = None
    ref_offset_ns: int = 0
    last_device_ns: int = 0
    bucket_index: int = 0
    bucket_min_x_s: float = 0.0
    bucket_min_y_ns: float = 0.0
    buckets: tuple[tuple[float, float], ...] = ()
    intercept_ns: float = 0.0
    drift_ns_per_s: float = 0.0
    samples: int = 0
    restarts: int = 0

    @property
    def fitted_buckets(self) -> int:
        """Number of closed bucket minima in the window behind the current fit."""
        return len(self.buckets)


@dataclass(frozen=True, slots=True)
class ClockModel:
    """Frozen configuration of the lower-envelope clock fit (invalid values: ``ConfigError``).

    ``window_s``: span of bucket minima kept for the fit; ``bucket_s``: min-filter bucket
    length; ``latency_floor_ns``: known minimum transport latency subtracted from every
    mapping; ``restart_s``: a backwards jump of device time larger than this starts a new
    session; ``trim_ns``: minimum distance above the line for a bucket to be discarded.
    """

    window_s: float = 300.0
    bucket_s: float = 10.0
    latency_floor_ns: int = 0
    restart_s: float = 1.0
    trim_ns: float = 2_000_000.0

    def __post_init__(self) -> None:
        problems = tuple(
            text
            for bad, text in (
                (not self.bucket_s > 0, "bucket_s must be > 0"),
                (not self.window_s >= 2 * self.bucket_s, "window_s must be >= 2 * bucket_s"),
                (self.latency_floor_ns < 0, "latency_floor_ns must be >= 0"),
                (not self.restart_s > 0, "restart_s must be > 0"),
                (not self.trim_ns > 0, "trim_ns must be > 0"),
            )
            if bad
        )
        if problems:
            raise ConfigError("ClockModel", problems)

    def reset(self, previous: ClockState | None = None) -> ClockState:
        """Empty state for a new session; carries over the restart count of ``previous``."""
        return ClockState(restarts=0 if previous is None else previous.restarts)

    def update(self, state: ClockState, device_ns: int, received_ns: int) -> ClockState:
        """Fold one (device time, receive time) pair into ``state``; return the new state."""
        ref = state.ref_device_ns
        if ref is not None and device_ns < state.last_device_ns - self.restart_s * _NS_PER_S:
            state = ClockState(restarts=state.restarts + 1)
            ref = None
        if ref is None:
            return ClockState(
                ref_device_ns=device_ns,
                ref_offset_ns=received_ns - device_ns,
                last_device_ns=device_ns,
                samples=1,
                restarts=state.restarts,
            )
        x_s = (device_ns - ref) / _NS_PER_S
        y_ns = float(received_ns - device_ns - state.ref_offset_ns)
        index = int(x_s // self.bucket_s)
        last = max(device_ns, state.last_device_ns)
        if index > state.bucket_index:
            return self._close_bucket(state, index, x_s, y_ns, last)
        lower = index == state.bucket_index and y_ns < state.bucket_min_y_ns
        return ClockState(
            ref_device_ns=ref,
            ref_offset_ns=state.ref_offset_ns,
            last_device_ns=last,
            bucket_index=state.bucket_index,
            bucket_min_x_s=x_s if lower else state.bucket_min_x_s,
            bucket_min_y_ns=y_ns if lower else state.bucket_min_y_ns,
            buckets=state.buckets,
            intercept_ns=min(y_ns, state.intercept_ns) if not state.buckets else state.intercept_ns,
            drift_ns_per_s=state.drift_ns_per_s,
            samples=state.samples + 1,
            restarts=state.restarts,
        )

    def to_utc(self, state: ClockState, device_ns: int) -> int:
        """UTC ns of the instant the device clock read ``device_ns`` in this session."""
        if state.ref_device_ns is None:
            raise ClockNotReadyError
        dx_ns = device_ns - state.ref_device_ns
        correction = state.intercept_ns + state.drift_ns_per_s * (dx_ns / _NS_PER_S)
        return device_ns + state.ref_offset_ns + round(correction) - self.latency_floor_ns

    def _close_bucket(
        self, state: ClockState, index: int, x_s: float, y_ns: float, last: int
    ) -> ClockState:
        buckets = _bucket_minimum_envelope(
            state.buckets,
            (state.bucket_min_x_s, state.bucket_min_y_ns),
            oldest_s=x_s - self.window_s,
        )
        intercept, drift = _trimmed_lower_envelope_fit(buckets, self.trim_ns)
        return ClockState(
            ref_device_ns=state.ref_device_ns,
            ref_offset_ns=state.ref_offset_ns,
            last_device_ns=last,
            bucket_index=index,
            bucket_min_x_s=x_s,
            bucket_min_y_ns=y_ns,
            buckets=buckets,
            intercept_ns=intercept,
            drift_ns_per_s=drift,
            samples=state.samples + 1,
            restarts=state.restarts,
        )


def _bucket_minimum_envelope(
    buckets: tuple[tuple[float, float], ...], closed: tuple[float, float], *, oldest_s: float
) -> tuple[tuple[float, float], ...]:
    """Append a closed bucket minimum and drop minima older than the window (NTP-style
    minimum-delay filter, RFC 5905 section 10)."""
    kept = tuple(b for b in buckets if b[0] >= oldest_s)
    return (*kept, closed)


def _trimmed_lower_envelope_fit(
    buckets: tuple[tuple[float, float], ...], trim_ns: float
) -> tuple[float, float]:
    """Line (intercept ns at x=0, drift ns per s) through the bucket minima: a Theil-Sen
    start (Sen 1968, median of pairwise slopes; breakdown ~29 %), then least squares on the
    minima not far above it (Moon, Skelly & Towsley 1999 lower-envelope idea; LSL windowed
    robust regression). A single point gives a constant offset."""
    xy = np.asarray(buckets, dtype=np.float64)
    x, y = xy[:, 0], xy[:, 1]
    if len(x) < 2:
        return float(y.min()), 0.0
    intercept, drift = _theil_sen_line(x, y)
    resid = y - (intercept + drift * x)
    spread = 1.4826 * float(np.median(np.abs(resid - np.median(resid))))
    keep = resid <= max(trim_ns, 3.0 * spread)
    if keep.sum() < 2:
        return intercept, drift
    return _least_squares_line(x[keep], y[keep])


def _theil_sen_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Theil-Sen estimator (Sen, JASA 1968): median pairwise slope, median intercept."""
    i, j = np.triu_indices(len(x), k=1)
    dx = x[j] - x[i]
    ok = dx > 0
    if not ok.any():
        return float(np.median(y)), 0.0
    b = float(np.median((y[j] - y[i])[ok] / dx[ok]))
    return float(np.median(y - b * x)), b


def _least_squares_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Ordinary least squares ``y = a + b x``, centred for conditioning; b = 0 if x is flat."""
    mx, my = float(x.mean()), float(y.mean())
    dx = x - mx
    sxx = float(dx @ dx)
    b = float(dx @ (y - my)) / sxx if sxx > 0 else 0.0
    return my - b * mx, b
