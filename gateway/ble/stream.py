"""One device's notifications turned into frames: connect, subscribe, start, decode.

The BLE callback only stamps the receive time and puts the bytes on a bounded queue
(overflow policy: drop the newest notification and count it); decoding happens in the
consumer, ``DeviceStream.frames()``. A malformed notification is counted and logged
without its payload, and the stream goes on. Reconnection and supervision are not this
module's job (see the session supervisor); it serves ``biogw stream``, tests and
benchmarks with the plain path from radio to ``Frame``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.exc import BleakError

from devices.errors import BiogwError, FrameDecodeError
from devices.frame import Frame
from devices.registry import Profile

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Notification:
    """Bytes as they came off the radio, with the gateway's receive time (UTC ns)."""

    characteristic: str
    data: bytes
    received_ns: int


@dataclass(slots=True)
class StreamCounters:
    """What happened on one stream; read by status displays and tests."""

    notifications: int = 0
    dropped_notifications: int = 0
    decode_errors: int = 0
    frames: int = 0
    samples: int = 0
    last_notification_ns: int = 0
    """Receive time of the latest notification (0: none yet); the session watchdog reads it."""


@dataclass(frozen=True, slots=True)
class Decoded:
    """The frames of one notification and when it arrived (UTC ns). ``frames`` is empty
    for a notification that carried no frame or was malformed (counted)."""

    frames: tuple[Frame, ...]
    received_ns: int


class NotificationQueue:
    """Bounded hand-off from the BLE callback to the decoder.

    Overflow policy: the newest notification is dropped and counted, so what is queued
    stays in order and the gap is visible in the counters (and, downstream, as a
    sequence gap).
    """

    def __init__(self, maxsize: int, counters: StreamCounters) -> None:
        self._queue: asyncio.Queue[Notification] = asyncio.Queue(maxsize)
        self._counters = counters

    def put(self, notification: Notification) -> None:
        self._counters.notifications += 1
        self._counters.last_notification_ns = notification.received_ns
        try:
            self._queue.put_nowait(notification)
        except asyncio.QueueFull:
            self._counters.dropped_notifications += 1

    async def get(self) -> Notification:
        return await self._queue.get()

    def get_nowait(self) -> Notification:
        return self._queue.get_nowait()

    def qsize(self) -> int:
        return self._queue.qsize()


class DeviceStream:
    """Async context manager: a connected, subscribed, streaming device.

    Entering connects the client (unless it is connected already), subscribes to the
    profile's characteristics in order and writes its start commands; a failure half-way
    undoes what was done. Leaving writes the stop commands (best effort, if still
    connected) and disconnects.
    """

    def __init__(
        self,
        client: BleakClient,
        profile: Profile,
        *,
        device_key: str,
        queue_size: int = 4096,
        clock_ns: Callable[[], int] = time.time_ns,
        stop_timeout_s: float = 2.0,
    ) -> None:
        self.client = client
        self.profile = profile
        self.device_key = device_key
        self.counters = StreamCounters()
        self._queue = NotificationQueue(queue_size, self.counters)
        self._clock_ns = clock_ns
        self.stop_timeout_s = stop_timeout_s
        self._decoder = profile.new_decoder(device_key)
        self._stack = contextlib.AsyncExitStack()

    def _callback(
        self, characteristic: str
    ) -> Callable[[BleakGATTCharacteristic, bytearray], None]:
        put = self._queue.put
        clock = self._clock_ns

        def on_notify(_: BleakGATTCharacteristic, data: bytearray) -> None:
            put(Notification(characteristic, bytes(data), clock()))

        return on_notify

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            if self.client.is_connected:  # connected by the caller (e.g. a retry helper)
                stack.push_async_callback(self.client.disconnect)
            else:
                await stack.enter_async_context(self.client)
            for sub in self.profile.subscriptions:
                callback = self._callback(sub.characteristic)
                await self.client.start_notify(sub.characteristic, callback)
            for command in self.profile.start_commands:
                await self.client.write_gatt_char(
                    command.characteristic, command.data, response=command.with_response
                )
            stack.push_async_callback(self.stop)
            self._stack = stack.pop_all()
        logger.info("device %s streaming (%s)", self.device_key, self.profile.name)
        return self

    async def stop(self) -> None:
        """Write the profile's stop commands (best effort, if still connected). Writes
        with response return after every notification sent before them has been
        queued here, so ``drain()`` afterwards sees the whole stream."""
        if not self.client.is_connected:
            return
        try:
            # One bound for all of them: on the way out (also on cancellation, e.g. a
            # gateway shutting down mid-handshake) a silent device must not hold us up.
            async with asyncio.timeout(self.stop_timeout_s):
                for command in self.profile.stop_commands:
                    await self.client.write_gatt_char(
                        command.characteristic, command.data, response=command.with_response
                    )
        except (BleakError, BiogwError, TimeoutError) as exc:  # best effort on the way out
            logger.info(
                "device %s: stop commands not delivered (%s)",
                self.device_key,
                type(exc).__name__,
            )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    def decode(self, notification: Notification) -> tuple[Frame, ...]:
        """Decode one notification; a malformed one is counted, logged and skipped.

        A ``ProfileError`` (the device refused to start, or stopped a measurement on its
        own) is not a bad frame: it propagates, and the stream is over."""
        try:
            frames = self._decoder.decode(
                notification.characteristic, notification.data, notification.received_ns
            )
        except FrameDecodeError as exc:
            self.counters.decode_errors += 1
            logger.warning(
                "device %s: dropped a malformed notification (%s: %s, %d bytes)",
                self.device_key,
                exc.kind,
                exc.reason,
                len(notification.data),
            )
            return ()
        self.counters.frames += len(frames)
        self.counters.samples += sum(f.n_samples for f in frames)
        return frames

    def drain(self) -> list[Frame]:
        """Decode whatever is queued now, without waiting (after ``stop()``)."""
        return [frame for batch in self.drain_decoded() for frame in batch.frames]

    def drain_decoded(self) -> list[Decoded]:
        """``drain()`` keeping each notification's receive time."""
        batches: list[Decoded] = []
        while self._queue.qsize():
            notification = self._queue.get_nowait()
            batches.append(Decoded(self.decode(notification), notification.received_ns))
        return batches

    async def decoded(self) -> AsyncIterator[Decoded]:
        """Every notification's frames with its receive time, in notification order."""
        while True:
            notification = await self._queue.get()
            yield Decoded(self.decode(notification), notification.received_ns)

    async def frames(self) -> AsyncIterator[Frame]:
        """Decoded frames, in notification order, for as long as the caller iterates."""
        async for batch in self.decoded():
            for frame in batch.frames:
                yield frame
