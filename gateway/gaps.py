"""Gap accounting: which samples of a device's streams never arrived, and why (issue 4).

Role: ``GapTracker`` follows one device's streams across its whole session lifetime
(reconnects included) and turns every missing range into a ``DeviceGap`` (stream, first
and last missing sample time, how many samples, cause) on the timebase the frames came
on. The edge maps the bounds to UTC (``DeviceGap.to_gap``), routes the resulting ``Gap``
through consent like a frame and publishes it: a gap is data, never hidden. ``Gap`` and
``GapCause`` live here (not in the wire format) so the router can carry them without
importing the transport.

Feed the tracker frames in arrival order *before* clock mapping: ``Timebase.DEVICE``
frames straight from the decoder, ``Timebase.ARRIVAL`` frames (devices without a clock).

Regular device-timebase streams (``fs_hz``; garment, Polar PMD) are counted exactly. The
next frame is expected at ``previous first sample + n_previous / fs``. If it starts
later by more than half a sample period, ``samples_missing = round((t_new -
t_previous_first) * fs / 1e9) - n_previous``. Device times lie on the sample grid up to
their own rounding (whole µs on the garment: exact at its rates, whose periods are whole
µs, and off the grid by less than 1 µs for a 256 Hz stream); the count stays exact while
that error, plus any difference between the device's sample clock and its time stamps
over the hole, is below half a sample period (1.95 ms at 256 Hz). The missing samples'
times are laid on the previous frame's grid: ``start = t_previous_first +
round(n_previous * 1e9 / fs)`` and ``end = start`` plus ``samples_missing - 1`` periods.
Sequence numbers, when present, cross-check the time: a forward jump of the sequence
with a time jump is a gap counted by time; a jump without any time jump counts a
``sequence_mismatches`` (the device's clock says nothing is missing, so nothing is
placed); a garment's sequence survives reconnects, so a reconnect shows as a time jump
with a sequence step of one, which is the gap. A frame starting earlier than expected by
more than half a period resets the stream: a jump back of more than ``restart_s`` is a
device clock restart (a reboot), counted in ``restarts``, anything smaller an
``overlaps``; neither is a gap, because the missing range cannot be placed on two
unrelated device timelines. A sequence going back is a restart too; the same sequence at
the same time is a duplicate and is ignored. A change of rate or timebase starts the
stream afresh (``reconfigurations``).

Irregular streams (``offsets_ns``: RR, PPI) and arrival-timed streams (HRS heart rate,
energy) have no grid. For them a gap is only looked for when something says samples
were lost (a link loss or dropped notifications since the stream's previous frame, or a
``cause_hint``), or when a sequence number jumps. The bounds are then the last sample
time before the hole and the first after it (the missing samples lie strictly between);
``samples_missing`` is an *estimate*: ``round(hole / interval) - 1``, where ``interval``
is ``1e9 / fs`` for a regular stream and otherwise the median of the stream's last
``history`` positive inter-sample intervals (one notification a second for HRS heart
rate; the median RR interval for RR), or ``(sequence step - 1) * n_previous`` for a
sequence jump. With no interval seen yet the gap is still published with
``samples_missing = 0`` and counted in ``unestimated``. Streams in ``untracked`` (battery:
notified only on change, no nominal rate) are never gaps.

Causes: an explicit ``cause_hint`` wins; else ``LINK_LOSS`` if ``link_lost()`` was called
since the stream's previous frame; else ``QUEUE_OVERFLOW`` if ``notifications_dropped()``
was; else ``DEVICE_SKIP``. Call order contract: the tracker sees events and frames in
one sequence, so call ``link_lost()``/``notifications_dropped()`` at the point of the
consumer's frame order where the loss happened (for a drop-newest queue: just before
observing the first notification enqueued after the drop). Frames observed between
``link_lost()`` and ``link_restored()`` were received before the loss and do not clear the
link-loss attribution, so a consumer still draining its queue after the link dropped
cannot hide it.

This module must not do I/O, read clocks, use asyncio, log, or keep module-level state.
"""

from __future__ import annotations

import enum
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from devices.frame import Frame, StreamKind, Timebase

__all__ = [
    "UNTRACKED_STREAMS",
    "DeviceGap",
    "Gap",
    "GapCause",
    "GapCounters",
    "GapTracker",
]

UNTRACKED_STREAMS: Final[frozenset[StreamKind]] = frozenset({StreamKind.BATTERY})
"""Streams with no nominal rate (notified on change): a silence there is not a loss."""

_NS_PER_S: Final = 1_000_000_000
_TRACKED_TIMEBASES: Final = frozenset({Timebase.DEVICE, Timebase.ARRIVAL})


class GapCause(enum.StrEnum):
    """Why samples are missing."""

    LINK_LOSS = "link_loss"
    """The BLE link dropped; samples produced while it was down were never received."""
    DEVICE_SKIP = "device_skip"
    """The device's sequence or sample clock jumped with no event seen by the gateway."""
    QUEUE_OVERFLOW = "queue_overflow"
    """The gateway dropped notifications from a full queue."""
    SPOOL_FULL = "spool_full"
    """The transport refused to spool a clinical frame: the spool is full of clinical data."""


@dataclass(frozen=True, slots=True)
class Gap:
    """Samples of one stream that never arrived: UTC ``[start_ns, end_ns]`` (inclusive,
    on the timebase of the path it is published on), how many, and why."""

    stream: StreamKind
    start_ns: int
    end_ns: int
    samples_missing: int
    cause: GapCause


@dataclass(frozen=True, slots=True)
class DeviceGap:
    """A gap as the tracker sees it, on the frames' own ``timebase``.

    Regular device streams: times of the first and last missing sample (inclusive).
    Irregular and arrival-timed streams: the last sample before and the first after the
    hole, and an estimated count (see the module docstring)."""

    stream: StreamKind
    start_ns: int
    end_ns: int
    samples_missing: int
    cause: GapCause
    timebase: Timebase

    def to_gap(self, device_to_utc_ns: Callable[[int], int]) -> Gap:
        """The UTC ``Gap``: device-timebase bounds mapped by ``device_to_utc_ns`` (the
        session's clock model), arrival-timed bounds (already UTC) unchanged."""
        start, end = self.start_ns, self.end_ns
        if self.timebase is Timebase.DEVICE:
            start, end = device_to_utc_ns(start), device_to_utc_ns(end)
        return Gap(self.stream, start, max(start, end), self.samples_missing, self.cause)


@dataclass(slots=True)
class GapCounters:
    """What the tracker saw over its lifetime. ``gaps`` and ``samples_missing`` are keyed
    by (stream, cause)."""

    frames: int = 0
    gaps: Counter[tuple[StreamKind, GapCause]] = field(default_factory=Counter)
    samples_missing: Counter[tuple[StreamKind, GapCause]] = field(default_factory=Counter)
    restarts: int = 0
    overlaps: int = 0
    duplicates: int = 0
    reconfigurations: int = 0
    sequence_mismatches: int = 0
    unestimated: int = 0
    link_losses: int = 0
    dropped_notifications: int = 0

    def gaps_by_cause(self, cause: GapCause) -> int:
        return sum(n for (_, c), n in self.gaps.items() if c is cause)

    def missing_by_cause(self, cause: GapCause) -> int:
        return sum(n for (_, c), n in self.samples_missing.items() if c is cause)


@dataclass(slots=True)
class _Stream:
    """One stream's state after its last accepted frame."""

    timebase: Timebase
    fs_hz: float | None
    first_ns: int
    last_ns: int
    n: int
    sequence: int | None
    link_epoch: int
    drop_epoch: int
    intervals: deque[int]


def _bounds(frame: Frame) -> tuple[int, int]:
    """Earliest and latest sample time (frames with at least one sample)."""
    if frame.offsets_ns is None:
        assert frame.fs_hz is not None
        return frame.time_ns, frame.time_ns + round((frame.n_samples - 1) * 1e9 / frame.fs_hz)
    offsets = frame.offsets_ns
    if offsets.shape[0] == 1:
        return frame.time_ns + int(offsets[0]), frame.time_ns + int(offsets[0])
    return frame.time_ns + int(offsets.min()), frame.time_ns + int(offsets.max())


class GapTracker:
    """Gap detector for one device, kept for the device's whole session lifetime.

    Not thread-safe. ``counters`` accumulates; read or copy it, don't reset it.
    """

    def __init__(
        self,
        *,
        restart_s: float = 1.0,
        untracked: frozenset[StreamKind] = UNTRACKED_STREAMS,
        history: int = 32,
    ) -> None:
        if not restart_s > 0 or history < 1:
            raise ValueError("restart_s must be > 0 and history >= 1")
        self._restart_ns = round(restart_s * _NS_PER_S)
        self._untracked = untracked
        self._history = history
        self._streams: dict[StreamKind, _Stream] = {}
        self._device_key: str | None = None
        self._link_epoch = 0
        self._drop_epoch = 0
        self._link_down = False
        self.counters = GapCounters()

    @property
    def streams(self) -> tuple[StreamKind, ...]:
        """The streams tracked so far (those seen at least once)."""
        return tuple(self._streams)

    # ------------------------------------------------------------------ events

    def link_lost(self) -> None:
        """The link dropped: each stream's next gap is attributed to ``LINK_LOSS``."""
        self._link_epoch += 1
        self._link_down = True
        self.counters.link_losses += 1

    def link_restored(self) -> None:
        """The link is back; frames observed from now on were received after the loss."""
        self._link_down = False

    def notifications_dropped(self, count: int) -> None:
        """``count`` notifications were dropped from a full queue: a stream whose next
        frame shows a gap (and no link loss) gets ``QUEUE_OVERFLOW``."""
        if count < 0:
            raise ValueError("count must be >= 0")
        if count:
            self._drop_epoch += 1
            self.counters.dropped_notifications += count

    def device_restarted(self) -> None:
        """The device rebooted (e.g. its boot id changed): every stream starts afresh,
        each counted in ``restarts``; no gap spans the two device timelines."""
        self.counters.restarts += len(self._streams)
        self._streams.clear()

    # ------------------------------------------------------------------ frames

    def observe(self, frame: Frame, *, cause_hint: GapCause | None = None) -> tuple[DeviceGap, ...]:
        """Account for one frame (arrival order); the gaps it reveals (at most one)."""
        if frame.timebase not in _TRACKED_TIMEBASES:
            raise ValueError("gap tracking needs DEVICE or ARRIVAL frames (before mapping)")
        if self._device_key is None:
            self._device_key = frame.device_key
        elif frame.device_key != self._device_key:
            raise ValueError("one GapTracker per device: frame of another device")
        self.counters.frames += 1
        if frame.stream in self._untracked or frame.n_samples == 0:
            return ()
        state = self._streams.get(frame.stream)
        if state is None:
            self._streams[frame.stream] = self._fresh(frame)
            return ()
        if state.timebase is not frame.timebase or state.fs_hz != frame.fs_hz:
            self.counters.reconfigurations += 1
            self._streams[frame.stream] = self._fresh(frame)
            return ()
        if frame.fs_hz is not None and frame.timebase is Timebase.DEVICE:
            gap = self._regular(state, frame, frame.fs_hz, cause_hint)
        else:
            gap = self._estimated(state, frame, cause_hint)
        if gap is None:
            return ()
        self.counters.gaps[(gap.stream, gap.cause)] += 1
        self.counters.samples_missing[(gap.stream, gap.cause)] += gap.samples_missing
        return (gap,)

    def _regular(
        self, st: _Stream, frame: Frame, fs_hz: float, hint: GapCause | None
    ) -> DeviceGap | None:
        """Exact accounting on the device's sample grid."""
        step = _sequence_step(st, frame)
        if step is not None and step < 0:
            self._restart(frame)
            return None
        position = (frame.time_ns - st.first_ns) * fs_hz / 1e9  # in samples
        if step == 0 and frame.time_ns == st.first_ns:
            self.counters.duplicates += 1
            return None
        if position < st.n - 0.5:
            if st.first_ns + round(st.n * 1e9 / fs_hz) - frame.time_ns > self._restart_ns:
                self._restart(frame)
            else:
                self.counters.overlaps += 1
                self._streams[frame.stream] = self._fresh(frame)
            return None
        missing = round(position) - st.n if position > st.n + 0.5 else 0
        if step is not None and (step == 0 or (step > 1 and missing < step - 1)):
            self.counters.sequence_mismatches += 1
        cause = self._cause(st, hint) or GapCause.DEVICE_SKIP
        start = st.first_ns + round(st.n * 1e9 / fs_hz)
        end = st.first_ns + round((st.n + missing - 1) * 1e9 / fs_hz)
        self._advance(st, frame)
        if not missing:
            return None
        return DeviceGap(frame.stream, start, end, missing, cause, frame.timebase)

    def _estimated(self, st: _Stream, frame: Frame, hint: GapCause | None) -> DeviceGap | None:
        """Irregular or arrival-timed: a gap only when a loss is signalled or a sequence
        jumps, with an estimated count."""
        step = _sequence_step(st, frame)
        first, _ = _bounds(frame)
        backwards = frame.timebase is Timebase.DEVICE and st.last_ns - first > self._restart_ns
        if (step is not None and step < 0) or backwards:
            self._restart(frame)
            return None
        if step == 0 and first == st.first_ns:
            self.counters.duplicates += 1
            return None
        hole_ns = first - st.last_ns
        cause = self._cause(st, hint)
        missing: int | None = None
        if step is not None and step > 1:
            missing, cause = (step - 1) * st.n, cause or GapCause.DEVICE_SKIP
        elif cause is not None and hole_ns > 0:
            interval = _interval_ns(st)
            if interval is None:
                missing = 0
                self.counters.unestimated += 1
            elif round(hole_ns / interval) > 1:
                missing = round(hole_ns / interval) - 1
        last_ns = st.last_ns
        if missing is None and hole_ns > 0:
            st.intervals.append(hole_ns)  # an ordinary interval, not a hole
        self._advance(st, frame)
        if missing is None or cause is None:
            return None
        return DeviceGap(frame.stream, last_ns, max(first, last_ns), missing, cause, frame.timebase)

    # ------------------------------------------------------------------ state

    def _cause(self, st: _Stream, hint: GapCause | None) -> GapCause | None:
        if hint is not None:
            return hint
        if st.link_epoch != self._link_epoch:
            return GapCause.LINK_LOSS
        if st.drop_epoch != self._drop_epoch:
            return GapCause.QUEUE_OVERFLOW
        return None

    def _restart(self, frame: Frame) -> None:
        self.counters.restarts += 1
        self._streams[frame.stream] = self._fresh(frame)

    def _fresh(self, frame: Frame) -> _Stream:
        # A new stream owes no earlier link loss or drop: both epochs start current.
        link, drop = self._link_epoch, self._drop_epoch
        intervals: deque[int] = deque(maxlen=self._history)
        st = _Stream(frame.timebase, frame.fs_hz, 0, 0, 0, None, link, drop, intervals)
        self._advance(st, frame)
        return st

    def _advance(self, st: _Stream, frame: Frame) -> None:
        """Make ``frame`` the stream's last frame."""
        first, last = _bounds(frame)
        if frame.offsets_ns is not None and frame.n_samples > 1:
            steps = np.diff(frame.offsets_ns)
            st.intervals.extend(int(s) for s in steps[steps > 0][-self._history :])
        st.first_ns, st.last_ns, st.n, st.sequence = first, last, frame.n_samples, frame.sequence
        st.drop_epoch = self._drop_epoch
        if not self._link_down:
            st.link_epoch = self._link_epoch


def _sequence_step(st: _Stream, frame: Frame) -> int | None:
    if st.sequence is None or frame.sequence is None:
        return None
    return frame.sequence - st.sequence


def _interval_ns(st: _Stream) -> float | None:
    """The stream's nominal sample interval: from ``fs_hz``, else the recent median."""
    if st.fs_hz is not None:
        return 1e9 / st.fs_hz
    if not st.intervals:
        return None
    return float(np.median(np.fromiter(st.intervals, dtype=np.int64)))
