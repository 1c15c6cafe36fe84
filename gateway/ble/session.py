"""One supervised session per paired device: connect, stream, notice loss, reconnect.

Role: ``DeviceSession.run()`` owns one device for as long as the gateway runs, in its own
task subtree (tasks named ``ble[<device key>].…``), so a failing device restarts only
itself. The loop:

1. wait (``AdvertisementWatcher``) until the device advertises after the last loss;
2. take a connection slot (``SlotBudget``; devices beyond the budget queue);
3. connect with bleak-retry-connector's ``establish_connection`` (its error-classified
   retries for transient BlueZ/adapter errors), open a ``DeviceStream`` (subscribe, send
   the profile's start commands), and hand every notification's decoded frames with its
   receive time to the ``SessionSink``;
4. on link loss, a silent device (the watchdog: no notification for ``watchdog_s``), or
   a device that refused to start, emit a ``LinkEvent`` down, decode what was already
   queued, release the slot and go back to 1 after the backoff policy's delay
   (``gateway.backoff``: no delay after a connection that was stable; exponential with
   full jitter after short-lived ones or failed attempts).

Battery level and device information come as ordinary frames from the profile's
subscriptions. Time and randomness are injected (``SessionClock``, ``random.Random``).

Must not: decode in BLE callbacks (``DeviceStream`` only stamps and queues), map clocks,
route, or log addresses, names or payloads above DEBUG (device keys are random UUIDs).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from bleak import BleakClient
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError
from bleak_retry_connector import establish_connection

from devices.errors import BiogwError, ProfileError
from devices.frame import Frame
from devices.registry import Profile
from gateway.backoff import BackoffPolicy, BackoffState
from gateway.ble.link import BleLink
from gateway.ble.presence import AdvertisementWatcher
from gateway.ble.slots import SlotBudget
from gateway.ble.stream import DeviceStream, StreamCounters

__all__ = [
    "DeviceSession",
    "LinkDown",
    "LinkEvent",
    "Received",
    "SessionClock",
    "SessionCounters",
    "SessionOutput",
    "SessionSink",
    "SessionState",
]

logger = logging.getLogger(__name__)


class SessionState(enum.StrEnum):
    SEARCHING = "searching"
    """Waiting for the device to advertise."""
    WAITING_SLOT = "waiting_slot"
    CONNECTING = "connecting"
    STREAMING = "streaming"
    BACKOFF = "backoff"


class LinkDown(enum.StrEnum):
    """Why a connection ended."""

    LINK_LOSS = "link_loss"
    WATCHDOG = "watchdog"
    """Connected but silent for longer than ``watchdog_s``: the session dropped it."""
    REFUSED = "refused"
    """The device refused to start, or stopped a measurement on its own."""


@dataclass(frozen=True, slots=True)
class Received:
    """One notification's frames (on the device's timebase) and its receive time."""

    device_key: str
    frames: tuple[Frame, ...]
    received_ns: int
    dropped_notifications: int
    """Notifications this session dropped on queue overflow so far (cumulative)."""


@dataclass(frozen=True, slots=True)
class LinkEvent:
    device_key: str
    up: bool
    at_ns: int
    reason: LinkDown | None = None


SessionOutput = Received | LinkEvent


class SessionSink(Protocol):
    """Where a session's output goes (the edge pipeline's bounded queue: ``put`` waits
    when it is full, which backs up into the session's notification queue, where the
    newest notifications are dropped and counted)."""

    def put(self, item: SessionOutput) -> Awaitable[None]: ...


class SessionClock(Protocol):
    def monotonic(self) -> float: ...

    def time_ns(self) -> int: ...

    def sleep(self, seconds: float) -> Awaitable[None]: ...


class SystemClock:
    """The real clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time_ns(self) -> int:
        return time.time_ns()

    def sleep(self, seconds: float) -> Awaitable[None]:
        return asyncio.sleep(seconds)


@dataclass(slots=True)
class SessionCounters:
    connects: int = 0
    connect_failures: int = 0
    link_losses: int = 0
    watchdog_resets: int = 0
    refusals: int = 0
    stream: StreamCounters = field(default_factory=StreamCounters)
    """Counters of the current (latest) connection's stream."""
    dropped_notifications: int = 0
    """Over all connections (the stream counters restart per connection)."""


@dataclass(frozen=True, slots=True)
class SessionOptions:
    watchdog_s: float = 5.0
    notification_queue: int = 4096
    connect_timeout_s: float = 10.0
    connect_attempts: int = 2
    """``establish_connection`` attempts per advertisement heard."""


class DeviceSession:
    """Supervises one device until cancelled (see the module docstring)."""

    def __init__(
        self,
        *,
        device_key: str,
        address: str,
        profile: Profile,
        link: BleLink,
        watcher: AdvertisementWatcher,
        slots: SlotBudget,
        sink: SessionSink,
        policy: BackoffPolicy,
        options: SessionOptions = SessionOptions(),
        clock: SessionClock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.device_key = device_key
        self._address = address
        self.profile = profile
        self._link = link
        self._watcher = watcher
        self._slots = slots
        self._sink = sink
        self._policy = policy
        self._options = options
        self._clock: SessionClock = clock if clock is not None else SystemClock()
        self._rng = rng if rng is not None else random.Random()  # jitter, not crypto
        self.state = SessionState.SEARCHING
        self.counters = SessionCounters()
        self.on_state: Callable[[DeviceSession], None] | None = None
        """Called after every state change (status displays, status topics)."""

    def _set(self, state: SessionState) -> None:
        self.state = state
        if self.on_state is not None:
            self.on_state(self)

    async def run(self) -> None:
        backoff = BackoffState()
        lost_at_s = float("-inf")
        while True:
            _raise_if_cancelled()
            delay = self._policy.delay_s(backoff, self._rng.random())
            if delay > 0:
                self._set(SessionState.BACKOFF)
                await self._clock.sleep(delay)
            self._set(SessionState.SEARCHING)
            heard = await self._watcher.wait_for(self._address, after_s=lost_at_s)
            self._set(SessionState.WAITING_SLOT)
            async with self._slots.slot():
                self._set(SessionState.CONNECTING)
                lost = asyncio.Event()
                client = await self._connect(heard.device, lost)
                if client is None:
                    backoff = self._policy.failed(backoff)
                    lost_at_s = self._clock.monotonic()
                    continue
                backoff = self._policy.connected(backoff, self._clock.monotonic())
                reason = await self._stream(client, lost)
                lost_at_s = self._clock.monotonic()
                backoff = self._policy.disconnected(backoff, lost_at_s)
            logger.info("device %s: link down (%s)", self.device_key, reason)

    async def _connect(self, device: BLEDevice, lost: asyncio.Event) -> BleakClient | None:
        try:
            async with asyncio.timeout(self._options.connect_timeout_s * 2):
                client = await establish_connection(
                    BleakClient,
                    device,
                    self.device_key,
                    disconnected_callback=lambda _: lost.set(),
                    max_attempts=self._options.connect_attempts,
                    use_services_cache=False,
                    timeout=self._options.connect_timeout_s,
                    **self._link.client_kwargs,
                )
        except (BleakError, BiogwError, TimeoutError) as exc:
            self.counters.connect_failures += 1
            logger.info("device %s: connect failed (%s)", self.device_key, type(exc).__name__)
            return None
        self.counters.connects += 1
        return client

    async def _stream(self, client: BleakClient, lost: asyncio.Event) -> LinkDown:
        """Stream until the link is lost, the watchdog fires or the device refuses."""
        stream = DeviceStream(
            client,
            self.profile,
            device_key=self.device_key,
            queue_size=self._options.notification_queue,
            clock_ns=self._clock.time_ns,
        )
        self.counters.stream = stream.counters
        dropped_before = self.counters.dropped_notifications
        try:
            async with stream:
                _raise_if_cancelled()
                self._set(SessionState.STREAMING)
                await self._sink.put(LinkEvent(self.device_key, True, self._clock.time_ns()))
                reason = await self._until_down(stream, lost, dropped_before)
                # What arrived before the end is data like any other: hand it on.
                for batch in stream.drain_decoded():
                    await self._emit(stream, batch.frames, batch.received_ns, dropped_before)
        except ProfileError as exc:
            logger.warning("device %s refused to stream: %s", self.device_key, exc.reason)
            reason = LinkDown.REFUSED
        except (BleakError, BiogwError, TimeoutError) as exc:
            logger.info("device %s: link error (%s)", self.device_key, type(exc).__name__)
            reason = LinkDown.LINK_LOSS
        match reason:
            case LinkDown.LINK_LOSS:
                self.counters.link_losses += 1
            case LinkDown.WATCHDOG:
                self.counters.watchdog_resets += 1
            case LinkDown.REFUSED:
                self.counters.refusals += 1
        await self._sink.put(LinkEvent(self.device_key, False, self._clock.time_ns(), reason))
        return reason

    async def _emit(
        self, stream: DeviceStream, frames: tuple[Frame, ...], received_ns: int, before: int
    ) -> None:
        self.counters.dropped_notifications = before + stream.counters.dropped_notifications
        if frames:
            item = Received(
                self.device_key, frames, received_ns, self.counters.dropped_notifications
            )
            await self._sink.put(item)

    async def _until_down(self, stream: DeviceStream, lost: asyncio.Event, before: int) -> LinkDown:
        async def pump() -> None:  # returns only when the device refuses (ProfileError)
            try:
                async for batch in stream.decoded():
                    await self._emit(stream, batch.frames, batch.received_ns, before)
            except ProfileError as exc:
                logger.warning("device %s stopped streaming: %s", self.device_key, exc.reason)

        key = self.device_key
        async with asyncio.TaskGroup() as group:
            tasks = {
                group.create_task(pump(), name=f"ble[{key}].decode"): LinkDown.REFUSED,
                group.create_task(lost.wait(), name=f"ble[{key}].link"): LinkDown.LINK_LOSS,
                group.create_task(self._watchdog(stream), name=f"ble[{key}].watchdog"): (
                    LinkDown.WATCHDOG
                ),
            }
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        return tasks[next(iter(done))]

    async def _watchdog(self, stream: DeviceStream) -> None:
        """Return once no notification has arrived for ``watchdog_s``."""
        limit_ns = round(self._options.watchdog_s * 1e9)
        started_ns = self._clock.time_ns()
        while True:
            last = stream.counters.last_notification_ns or started_ns
            idle_ns = self._clock.time_ns() - last
            if idle_ns >= limit_ns:
                logger.warning(
                    "device %s: no notification for %.1f s, reconnecting",
                    self.device_key,
                    idle_ns / 1e9,
                )
                return
            await self._clock.sleep(max(0.05, (limit_ns - idle_ns) / 1e9))


def _raise_if_cancelled() -> None:
    """Re-raise a cancellation that a library swallowed. Python 3.11's ``asyncio.wait_for``
    (used by bumble for every ATT request) drops a cancellation that arrives as the
    awaited response completes (CPython gh-86296, fixed in 3.12); the request comes back
    normally but the task stays marked as cancelling. Checked at the points a session
    would otherwise go on to wait for a long time."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
