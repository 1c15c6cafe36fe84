"""The gateway's edge: device streams → clock map → router → sink.

Role: glue the pieces of issue 3 into a running path. For every frame a connected
``DeviceStream`` yields, ``OffsetClock`` maps the device timebase to UTC, the ``Router``
splits it by consent, and whatever the router emits (a clinical and/or research output)
goes to a sink callable. ``DatabaseSubjectDirectory`` is the router's
``SubjectDirectory`` backed by ``identity.devices``.

``OffsetClock`` is the interim clock model, replaced by issue 4's offset+drift fit. It
takes one offset per session from the first DEVICE-timebase frame:
``offset = receive time (UTC) − device time of that frame's last sample``, and applies
it unchanged to every later frame. Its limits, stated plainly:

* no drift correction: a device clock running fast or slow by ``d`` ppm puts frames
  ``d`` µs per second of session off, growing without bound over a long session;
* the first frame's latency and jitter (radio, connection interval, notification
  batching, the gateway's queues) become a constant error of every mapped time: the
  offset is biased late by that frame's transport delay;
* a device reboot or clock reset mid-session is not detected; a new session (a new
  ``OffsetClock``) is needed.

Must not: log subject ids, device keys or payloads above DEBUG; decide consent itself
(the router does); open its own database connections (callers pass them in).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

import psycopg

from devices.frame import Frame, Timebase
from gateway.ble.stream import DeviceStream
from gateway.router import Routed, Router, frame_span_ns
from gateway.store.devices import subject_for_device

__all__ = [
    "DatabaseSubjectDirectory",
    "EdgeCounters",
    "EdgePipeline",
    "OffsetClock",
    "Sink",
]

_log = logging.getLogger(__name__)

Sink = Callable[[Routed], None]
"""Receives every ``Routed`` that carries at least one output (called in the event loop;
it must not block)."""


class OffsetClock:
    """Device clock → UTC by one per-session offset (see the module docstring's limits).

    Frames already on a UTC timebase (``UTC``, ``ARRIVAL``) pass through unchanged. Use
    one instance per device session (its frames share one device clock).
    """

    def __init__(self) -> None:
        self._offset_ns: int | None = None

    @property
    def offset_ns(self) -> int | None:
        """UTC − device time, ns; ``None`` until the first DEVICE-timebase frame."""
        return self._offset_ns

    def to_utc(self, frame: Frame, received_ns: int) -> Frame:
        """``frame`` on ``Timebase.UTC``; ``received_ns`` is its receive time (UTC ns),
        used only to set the offset from the session's first DEVICE frame."""
        if frame.timebase is not Timebase.DEVICE:
            return frame
        if self._offset_ns is None:
            self._offset_ns = received_ns - frame_span_ns(frame)[1]
        return replace(frame, time_ns=frame.time_ns + self._offset_ns, timebase=Timebase.UTC)


class DatabaseSubjectDirectory:
    """The router's ``SubjectDirectory`` over ``identity.devices``.

    A cache of device key → subject for the keys it tracks, filled by ``track`` and
    re-read by ``refresh`` (e.g. after a pairing or unpairing); only bonded devices
    resolve (``subject_for_device``). ``subject_for`` never touches the database, so
    it is safe to call from the router for every frame. A key never tracked, or not a
    UUID, resolves to ``None`` (the router drops its frames as ``unbound_device``).
    """

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn
        self._keys: set[UUID] = set()
        self._subjects: dict[str, UUID] = {}

    async def track(self, device_keys: Iterable[UUID]) -> None:
        """Start tracking ``device_keys`` and resolve them now."""
        self._keys.update(device_keys)
        await self.refresh()

    async def refresh(self) -> None:
        """Re-resolve every tracked key from the database (replaces the whole cache)."""
        subjects: dict[str, UUID] = {}
        for key in sorted(self._keys):
            subject = await subject_for_device(self._conn, key)
            if subject is not None:
                subjects[str(key)] = subject
        self._subjects = subjects
        _log.debug("subject directory: %d of %d devices bound", len(subjects), len(self._keys))

    def subject_for(self, device_key: str) -> UUID | None:
        return self._subjects.get(device_key)


@dataclass(slots=True)
class EdgeCounters:
    """What the pipeline did; the router counts drops per reason itself."""

    frames: int = 0
    clinical: int = 0
    research: int = 0


class EdgePipeline:
    """Run device streams through clock mapping and the router into a sink.

    ``run(streams)`` runs until cancelled (or until a stream or the sink raises; then
    every task is cancelled and the error propagates in an ``ExceptionGroup``). Per
    stream, a named reader task maps each frame to UTC (one ``OffsetClock`` per stream,
    receive time from ``clock_ns`` when the frame leaves the stream) and puts it on a
    bounded queue; one router task routes and hands outputs to ``sink``. A full queue
    makes the readers wait, which backs up into each ``DeviceStream``'s own bounded
    notification queue (there newest notifications are dropped and counted).
    """

    def __init__(
        self,
        router: Router,
        sink: Sink,
        *,
        queue_size: int = 1024,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.router = router
        self.counters = EdgeCounters()
        self._sink = sink
        self._queue_size = queue_size
        self._clock_ns = clock_ns
        self.clocks: dict[str, OffsetClock] = {}

    async def run(self, streams: Sequence[DeviceStream]) -> None:
        """Stream every (already entered) ``DeviceStream`` until cancelled."""
        queue: asyncio.Queue[Frame] = asyncio.Queue(self._queue_size)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._route(queue), name="edge.route")
            for index, stream in enumerate(streams):
                clock = OffsetClock()
                self.clocks[stream.device_key] = clock
                group.create_task(self._read(stream, clock, queue), name=f"edge.read.{index}")

    async def _read(
        self, stream: DeviceStream, clock: OffsetClock, queue: asyncio.Queue[Frame]
    ) -> None:
        async for frame in stream.frames():
            await queue.put(clock.to_utc(frame, self._clock_ns()))

    async def _route(self, queue: asyncio.Queue[Frame]) -> None:
        while True:
            frame = await queue.get()
            self.counters.frames += 1
            routed = self.router.route(frame)
            if routed.clinical is None and routed.research is None:
                continue
            self.counters.clinical += routed.clinical is not None
            self.counters.research += routed.research is not None
            self._sink(routed)
