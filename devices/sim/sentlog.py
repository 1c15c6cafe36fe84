"""The sent log: what every simulated device generated, and what became of each frame.

Role: ``Outcome`` (sent, corrupted, stalled, skipped, unsubscribed), ``SentFrame`` (one
generated frame with its decoded samples and wire bytes), the ``SentLogSink`` protocol
devices write to, ``SentLog`` (in memory, with exact totals and ``wait_for`` for tests)
and ``SentCounter`` (counts only, for benchmarks). Tests compare what a gateway received
against it.

It must not: send, decode or build frames, read any clock, or log payloads.
"""

from __future__ import annotations

import asyncio
import enum
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from devices.frame import FloatArray
from devices.sim.faults import FaultRecord

__all__ = ["Outcome", "SentCounter", "SentFrame", "SentLog", "SentLogSink"]


class Outcome(enum.StrEnum):
    """What became of one generated frame."""

    SENT = "sent"
    CORRUPTED = "corrupted"
    STALLED = "stalled"
    SKIPPED = "skipped"
    UNSUBSCRIBED = "unsubscribed"

    @property
    def notified(self) -> bool:
        return self in (Outcome.SENT, Outcome.CORRUPTED)


@dataclass(frozen=True, slots=True)
class SentFrame:
    """One frame a device generated, as its decoder would see it if it arrived.

    ``samples`` are the decoded values in physical units (read-only). ``data`` is what
    went on the air (corrupted bytes for ``corrupted``; empty when nothing was sent).
    ``device_time_ns`` is the time the frame carries on the wire (garment: first
    sample, µs since boot x 1000; Polar PMD: last sample, ns since 2000-01-01; ``None``
    for streams without a device time). ``loop_time_s`` is when it was handled.
    """

    device: str
    stream: str
    outcome: Outcome
    samples: FloatArray
    fs_hz: float | None
    device_time_ns: int | None
    sequence: int | None = None
    data: bytes = b""
    loop_time_s: float = 0.0
    rr_intervals_ms: tuple[float, ...] = ()


class SentLogSink(Protocol):
    """Where a device reports what it sent and which faults it suffered."""

    def record_frame(self, entry: SentFrame) -> None: ...

    def record_fault(self, entry: FaultRecord) -> None: ...


class SentLog:
    """In-memory sent log: the last ``max_frames`` frames (``None``: all; a garment frame
    takes about 1 kB), every fault, and exact per-(stream, outcome) totals.
    ``wait_for`` lets tests wait on it."""

    def __init__(self, max_frames: int | None = 20_000) -> None:
        self._frames: deque[SentFrame] = deque(maxlen=max_frames)
        self._faults: list[FaultRecord] = []
        self._totals: Counter[tuple[str, Outcome]] = Counter()
        self._waiters: list[asyncio.Future[None]] = []

    def record_frame(self, entry: SentFrame) -> None:
        self._frames.append(entry)
        self._totals[entry.stream, entry.outcome] += 1
        self._wake()

    def record_fault(self, entry: FaultRecord) -> None:
        self._faults.append(entry)
        self._wake()

    def frames(
        self, stream: str | None = None, *, outcome: Outcome | None = None
    ) -> list[SentFrame]:
        return [
            f
            for f in self._frames
            if (stream is None or f.stream == stream) and (outcome is None or f.outcome is outcome)
        ]

    def faults(self) -> list[FaultRecord]:
        return list(self._faults)

    def count(self, stream: str | None = None, *, outcome: Outcome | None = None) -> int:
        """Frames ever recorded (not limited by ``max_frames``)."""
        return sum(
            n
            for (s, o), n in self._totals.items()
            if (stream is None or s == stream) and (outcome is None or o is outcome)
        )

    async def wait_for(self, predicate: Callable[[SentLog], bool]) -> None:
        """Return once ``predicate(self)`` holds (checked after every record)."""
        while not predicate(self):
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


@dataclass(slots=True)
class SentCounter:
    """A sink that only counts (for benchmarks): frames and bytes per (device, stream, outcome)."""

    frames: Counter[tuple[str, str, Outcome]] = field(default_factory=Counter)
    payload_bytes: int = 0
    faults: int = 0

    def record_frame(self, entry: SentFrame) -> None:
        self.frames[entry.device, entry.stream, entry.outcome] += 1
        self.payload_bytes += len(entry.data)

    def record_fault(self, entry: FaultRecord) -> None:
        self.faults += 1
