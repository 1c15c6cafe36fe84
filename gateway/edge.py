"""The gateway's edge: device sessions → gaps → clock map → router → outbox.

Role: one consumer task takes what the device sessions produce (``Received`` frames on
the device timebase with their receive time, ``LinkEvent``\\s) from one bounded queue and,
per device:

1. finds missing ranges (``gateway.gaps.GapTracker``, on the device timebase, where
   sample counts are exact): link losses, device skips, notification-queue overflow;
2. maps device time to UTC with the device's ``ClockModel`` state (an online fit of
   offset and drift over (time of the notification's last sample, receive time) pairs;
   the state lives as long as the gateway knows the device, so the first frame after a
   reconnect is placed by the fit the earlier connection built; a device clock that
   restarted is detected by the model). Arrival-timed frames (HRS) are already UTC;
   their jitter is the radio's and the gateway's queues' (tens of ms, see
   docs/transport.md);
3. routes frames and gaps by consent (``Router``) and hands every output to the
   ``Outbox`` (encode, spool, publish). After each burst of queued items it calls
   ``Outbox.flush()`` (one group commit of the spool, one wake-up of the publisher).

Queue policy: the edge queue is bounded; a full queue makes sessions wait, which backs
up into each session's own bounded notification queue, where the newest notifications
are dropped and counted; the gap tracker turns them into ``queue_overflow`` gaps.

``DatabaseSubjectDirectory`` is the router's ``SubjectDirectory`` over
``identity.devices``.

Must not: log subject ids, addresses or payloads above DEBUG (the device key, a random
UUID that only the care database links to a person, is the device's name in logs, as in
the BLE layer); decide consent itself; do BLE or network I/O; open its own database
connections.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol
from uuid import UUID

import psycopg

from devices.frame import Frame, Quality, StreamKind, Timebase
from gateway.ble.session import LinkDown, LinkEvent, Received, SessionOutput
from gateway.ble.stream import DeviceStream
from gateway.clock import ClockModel, ClockState
from gateway.gaps import DeviceGap, GapTracker
from gateway.router import Routed, RoutedGap, Router, frame_span_ns
from gateway.store.devices import subject_for_device
from gateway.transport.status import DeviceStatus

__all__ = [
    "DatabaseSubjectDirectory",
    "EdgeCounters",
    "EdgePipeline",
    "Outbox",
    "StatusSink",
]

_log = logging.getLogger(__name__)
_CONTACT_SUPPORTED: Final = int(Quality.CONTACT_SUPPORTED)
_NO_CONTACT: Final = int(Quality.NO_CONTACT)


class Outbox(Protocol):
    """Where routed outputs go (the transport: encode, spool, publish)."""

    def frame(self, routed: Routed) -> None: ...

    def gap(self, routed: RoutedGap) -> None: ...

    def flush(self) -> None:
        """End of a burst: make what was handed over durable and wake the publisher."""
        ...


class StatusSink(Protocol):
    """Where device status goes (the publisher's retained status topics)."""

    def set_device_status(self, device_key: str, status: DeviceStatus) -> None: ...


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

    items: int = 0
    frames: int = 0
    samples: int = 0
    clinical: int = 0
    research: int = 0
    gaps: int = 0
    gap_samples: int = 0
    flushes: int = 0
    queue_depth: int = 0


@dataclass(slots=True)
class _Device:
    """Per-device state that outlives connections."""

    clock: ClockState
    gaps: GapTracker
    dropped_notifications: int = 0
    status: DeviceStatus | None = None
    streams: set[StreamKind] = field(default_factory=set)


class EdgePipeline:
    """Consume session output into the outbox (see the module docstring).

    ``put`` is the sessions' ``SessionSink``. ``run()`` consumes until cancelled;
    ``run_streams(streams)`` additionally pumps already-entered plain ``DeviceStream``\\s
    into the queue (tools and tests that don't need supervision).
    """

    def __init__(
        self,
        router: Router,
        outbox: Outbox,
        *,
        status: StatusSink | None = None,
        clock_model: ClockModel | None = None,
        queue_size: int = 8192,
        burst: int = 512,
    ) -> None:
        self.router = router
        self.counters = EdgeCounters()
        self._outbox = outbox
        self._status = status
        self._model = clock_model if clock_model is not None else ClockModel()
        self._queue: asyncio.Queue[SessionOutput] = asyncio.Queue(queue_size)
        self._burst = burst
        self._devices: dict[str, _Device] = {}

    def put(self, item: SessionOutput) -> Any:
        """Hand over one session output (waits while the queue is full)."""
        return self._queue.put(item)

    def clock_state(self, device_key: str) -> ClockState | None:
        device = self._devices.get(device_key)
        return None if device is None else device.clock

    def gap_tracker(self, device_key: str) -> GapTracker | None:
        device = self._devices.get(device_key)
        return None if device is None else device.gaps

    async def run(self) -> None:
        """Consume the queue until cancelled, flushing the outbox after every burst."""
        queue = self._queue
        while True:
            self.handle(await queue.get())
            for _ in range(self._burst - 1):
                if queue.empty():
                    break
                self.handle(queue.get_nowait())
            self.counters.queue_depth = queue.qsize()
            self._outbox.flush()
            self.counters.flushes += 1

    async def run_streams(self, streams: Sequence[DeviceStream]) -> None:
        """``run()`` fed by plain (already entered, unsupervised) device streams."""

        async def pump(stream: DeviceStream) -> None:
            async for batch in stream.decoded():
                dropped = stream.counters.dropped_notifications
                if batch.frames:
                    await self.put(
                        Received(stream.device_key, batch.frames, batch.received_ns, dropped)
                    )

        async with asyncio.TaskGroup() as group:
            group.create_task(self.run(), name="edge.route")
            for stream in streams:
                group.create_task(pump(stream), name=f"ble[{stream.device_key}].edge")

    def handle(self, item: SessionOutput) -> None:
        """Process one session output synchronously (the consumer's body)."""
        self.counters.items += 1
        device = self._devices.get(item.device_key)
        if device is None:
            device = _Device(self._model.reset(), GapTracker())
            self._devices[item.device_key] = device
        if isinstance(item, LinkEvent):
            self._link(item, device)
            return
        if item.dropped_notifications > device.dropped_notifications:
            device.gaps.notifications_dropped(
                item.dropped_notifications - device.dropped_notifications
            )
            device.dropped_notifications = item.dropped_notifications
        last = item.frames[-1]
        if last.timebase is Timebase.DEVICE:
            device.clock = self._model.update(
                device.clock, frame_span_ns(last)[1], item.received_ns
            )
        for frame in item.frames:
            self._frame(item.device_key, device, frame)

    def _frame(self, device_key: str, device: _Device, frame: Frame) -> None:
        for gap in device.gaps.observe(frame):
            self._gap(device_key, device, gap)
        if frame.timebase is Timebase.DEVICE:
            frame = Frame(  # positional: a third of the cost of dataclasses.replace
                frame.device_key,
                frame.stream,
                self._model.to_utc(device.clock, frame.time_ns),
                Timebase.UTC,
                frame.samples,
                frame.unit,
                frame.fs_hz,
                frame.offsets_ns,
                frame.sequence,
                frame.quality,
                frame.channels,
            )
        counters = self.counters
        counters.frames += 1
        counters.samples += frame.n_samples
        self._track_status(device_key, device, frame)
        routed = self.router.route(frame)
        if routed.clinical is None and routed.research is None:
            return
        counters.clinical += routed.clinical is not None
        counters.research += routed.research is not None
        self._outbox.frame(routed)

    def _gap(self, device_key: str, device: _Device, gap: DeviceGap) -> None:
        if device.clock.samples:
            utc = gap.to_gap(lambda t: self._model.to_utc(device.clock, t))
        else:  # nothing to map with yet (cannot happen after a frame): keep device bounds
            utc = gap.to_gap(lambda t: t)
        self.counters.gaps += 1
        self.counters.gap_samples += gap.samples_missing
        _log.debug(
            "device %s: gap in %s, %d samples (%s)",
            device_key,
            gap.stream.value,
            gap.samples_missing,
            gap.cause.value,
        )
        routed = self.router.route_gap(device_key, utc)
        if routed.clinical is not None or routed.research is not None:
            self._outbox.gap(routed)

    def _link(self, event: LinkEvent, device: _Device) -> None:
        if event.up:
            device.gaps.link_restored()
        else:
            device.gaps.link_lost()
        stalled = event.reason is LinkDown.WATCHDOG
        self._set_status(event.device_key, device, online=event.up, stalled=stalled)

    def _track_status(self, device_key: str, device: _Device, frame: Frame) -> None:
        status = device.status
        if frame.stream is StreamKind.BATTERY and frame.n_samples:
            battery = min(100, max(0, round(float(frame.samples[-1]))))
            if status is None or status.battery_pct != battery:
                self._set_status(device_key, device, battery_pct=battery)
        elif int(frame.quality) & _CONTACT_SUPPORTED:  # int: IntFlag & costs an enum build
            contact = not int(frame.quality) & _NO_CONTACT
            if status is None or status.skin_contact != contact:
                self._set_status(device_key, device, skin_contact=contact)

    def _set_status(self, device_key: str, device: _Device, **change: Any) -> None:
        old = device.status or DeviceStatus(online=True)
        new = replace(old, **change)
        if new == device.status:
            return
        device.status = new
        if self._status is not None:
            self._status.set_device_status(device_key, new)
