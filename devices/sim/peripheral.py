"""Shared machinery of the simulated devices: a GATT peripheral host on the virtual radio.

Role: ``SimPeripheral`` is the base of every device model. It creates the host on a
``VirtualRadio``, runs the device's tasks in its own ``asyncio.TaskGroup`` (tasks named
``sim[<name>].<what>``), configures SMP (``gap.pairing_config``), advertises, tracks
connections, builds the Battery and Device Information services, serves the control
point its ``GattTable`` built, paces frames on the device clock, sends them through the
fault state and writes what became of each to the sent log. Its parts live next door:
the attribute table in ``gatt_table``, advertising data and pairing in ``gap``, device
time in ``clock``, the sent log in ``sentlog``.

Pacing: frame k of a stream is due when the device clock reaches the end of its samples,
``grid.time_ns(first + (k + 1) * n)``; the loop sleeps until the loop time the clock
maps that to. Late wake-ups send every due frame at once (catch up, never skip) and the
lateness is counted in ``PacingStats``. Times are integers on the grid, so nothing drifts.

It must not: decode a profile's data, read the wall clock for pacing, sleep to
synchronise anything but the frame schedule, or log payloads above DEBUG.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, ClassVar, Self

from bumble import att, gatt
from bumble.device import Connection, Device

from devices.frame import FloatArray
from devices.info import (
    BATTERY_LEVEL_UUID,
    BATTERY_SERVICE_UUID,
    DEVICE_INFORMATION_SERVICE_UUID,
    DeviceInformation,
    encode_battery_level,
    encode_device_information,
)
from devices.sim.clock import DeviceClock, PacingStats, SampleGrid
from devices.sim.faults import FaultInjector, FaultKind, FaultRecord, FaultState, FrameAction
from devices.sim.gap import pairing_config
from devices.sim.gatt_table import ControlHandler, DeviceLink, GattTable, serve_control
from devices.sim.radio import VirtualRadio
from devices.sim.sentlog import Outcome, SentFrame, SentLogSink

__all__ = ["SimPeripheral"]

logger = logging.getLogger(__name__)

_P = gatt.Characteristic.Properties
_PERM = att.Attribute.Permissions


class SimPeripheral:
    """Base of the device models; use the models as async context managers.

    Subclasses set ``model``, ``stream_names`` and ``max_mtu`` and implement
    ``_services``, ``_advertising``, ``_corrupt``, ``_on_link_up`` and ``_on_link_down``.
    """

    model: ClassVar[str] = "peripheral"
    stream_names: ClassVar[tuple[str, ...]] = ()
    max_mtu: ClassVar[int] = 247

    def __init__(
        self,
        radio: VirtualRadio,
        *,
        address: str,
        name: str,
        info: DeviceInformation,
        require_bonding: bool = False,
        passkey: int | None = None,
        speed: float = 1.0,
        log: SentLogSink | None = None,
        battery_percent: int = 100,
        drain_percent_per_hour: float = 1.0,
        advertising_interval_ms: float = 100.0,
    ) -> None:
        if passkey is not None and not 0 <= passkey <= 999_999:
            raise ValueError("passkey must be 0..999999")
        if not 0 <= battery_percent <= 100 or not drain_percent_per_hour >= 0:
            raise ValueError("battery_percent 0..100 and a non-negative drain")
        self.radio = radio
        self.address = address.upper()
        self._name = name
        self.info = info
        self.attributes = GattTable(require_bonding=require_bonding)
        self.passkey = passkey
        self.log = log
        self.clock = DeviceClock(speed=speed)
        self.pacing = PacingStats()
        self.battery_percent = battery_percent
        self._drain_per_hour = drain_percent_per_hour
        self._adv_interval_ms = advertising_interval_ms
        self._fault_state = FaultState(self.stream_names)
        self.faults = FaultInjector(self)
        self._device: Device | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._stack = AsyncExitStack()
        self._closing = False
        self._link: DeviceLink | None = None
        self._streams: dict[str, asyncio.Task[None]] = {}
        self._all_tasks: set[asyncio.Task[None]] = set()
        self._link_waiters: list[asyncio.Future[None]] = []
        self._battery_char = self.attributes.characteristic(
            BATTERY_LEVEL_UUID, _P.READ | _P.NOTIFY, read=self._battery_value, secure=False
        )

    # --- life cycle -----------------------------------------------------------------

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            device = await self.radio.add_host(address=self.address, name=self._name)
            stack.push_async_callback(self.radio.remove_host, device)
            self._device = device
            self._tasks = await stack.enter_async_context(asyncio.TaskGroup())
            stack.callback(self._shutdown)
            device.gatt_server.max_mtu = self.max_mtu
            device.pairing_config_factory = lambda _connection: pairing_config(self.passkey)
            services = [*self._services(), *self._info_services()]
            self.attributes.attach_cccds(device)
            device.add_services(services)
            device.on(Device.EVENT_CONNECTION, self._on_connection)
            self.clock.start()
            self.spawn(self._drain_battery(), "battery")
            advertising, scan_response = self._advertising()
            await device.start_advertising(
                advertising_data=advertising,
                scan_response_data=scan_response,
                auto_restart=True,
                advertising_interval_min=self._adv_interval_ms,
                advertising_interval_max=self._adv_interval_ms,
            )
            self._stack = stack.pop_all()
        logger.debug("sim[%s] up at %s", self.name, self.address)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    def _shutdown(self) -> None:
        self._closing = True
        for task in list(self._all_tasks):
            task.cancel()

    @property
    def name(self) -> str:
        return self._name

    @property
    def device(self) -> Device:
        if self._device is None:
            raise RuntimeError(f"sim[{self._name}] is not running")
        return self._device

    @property
    def connection(self) -> Connection | None:
        return None if self._link is None else self._link.connection

    async def wait_connected(self, connected: bool = True) -> None:
        """Return once a central is connected (``connected=False``: once none is)."""
        while (self._link is not None) != connected:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._link_waiters.append(waiter)
            await waiter

    def _link_changed(self) -> None:
        waiters, self._link_waiters = self._link_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def spawn(
        self, coro: Coroutine[Any, Any, None], what: str, *, link: DeviceLink | None = None
    ) -> asyncio.Task[None] | None:
        """Run ``coro`` in the device's task group as ``sim[<name>].<what>`` (``None``
        once the device is closing). Tasks of a ``link`` are cancelled when it drops."""
        if self._tasks is None or self._closing:
            coro.close()
            return None
        task = self._tasks.create_task(coro, name=f"sim[{self._name}].{what}")
        self._all_tasks.add(task)
        task.add_done_callback(self._all_tasks.discard)
        if link is not None:
            link.tasks.add(task)
            task.add_done_callback(link.tasks.discard)
        return task

    # --- hooks for the models -----------------------------------------------------------

    def _services(self) -> list[gatt.Service]:
        raise NotImplementedError

    def _advertising(self) -> tuple[bytes, bytes]:
        """(advertising data, scan response), each at most 31 bytes."""
        raise NotImplementedError

    def _corrupt(self, stream: str, data: bytes, index: int) -> bytes:
        """Bytes the stream's decoder must reject, made from a valid frame."""
        raise NotImplementedError

    def _on_link_up(self, link: DeviceLink) -> None:
        """A central connected (spawn per-link tasks with ``spawn(..., link=link)``)."""

    def _on_link_down(self, connection: Connection) -> None:
        """The link dropped: the base has already stopped every stream."""

    # --- FaultHost -------------------------------------------------------------------

    @property
    def fault_state(self) -> FaultState:
        return self._fault_state

    def device_now_ns(self) -> int:
        return self.clock.now_ns()

    def set_drift_ppm(self, ppm: float) -> None:
        self.clock.set_drift_ppm(ppm)

    def record_fault(self, record: FaultRecord) -> None:
        logger.info("sim[%s] fault %s", self._name, record.kind)
        if self.log is not None:
            self.log.record_fault(record)

    async def lose_link(self, out_of_range_s: float | None) -> int:
        device = self.device
        if out_of_range_s is None:
            return await self.radio.drop_link(device)
        links = len(device.connections)
        await self.radio.set_in_range(device, False)
        back_ns = self.clock.now_ns() + round(out_of_range_s * 1e9)
        self.spawn(self._back_in_range(back_ns), "fault.range")
        return links

    async def _back_in_range(self, at_ns: int) -> None:
        await self.clock.sleep_until(at_ns)
        await self.radio.set_in_range(self.device, True)
        self.record_fault(FaultRecord(self._name, FaultKind.BACK_IN_RANGE, self.clock.now_ns()))

    # --- GATT -----------------------------------------------------------------------

    @property
    def require_bonding(self) -> bool:
        return self.attributes.require_bonding

    def _info_services(self) -> list[gatt.Service]:
        info_chars = [
            gatt.Characteristic(uuid, _P.READ, _PERM.READABLE, value)
            for uuid, value in encode_device_information(self.info).items()
        ]
        return [
            gatt.Service(BATTERY_SERVICE_UUID, [self._battery_char]),
            gatt.Service(DEVICE_INFORMATION_SERVICE_UUID, info_chars),
        ]

    def control_point(
        self,
        uuid: str,
        properties: gatt.Characteristic.Properties,
        handler: ControlHandler,
        *,
        read: Callable[[], bytes] | None = None,
        one_at_a_time: bool = True,
    ) -> gatt.Characteristic[bytes]:
        """The device's control point: ``GattTable.control_point`` on the current link;
        the link's control task answers each accepted write with ``handler``."""
        return self.attributes.control_point(
            uuid,
            properties,
            handler,
            current_link=lambda: self._link,
            read=read,
            one_at_a_time=one_at_a_time,
        )

    # --- connections ---------------------------------------------------------------

    def _on_connection(self, connection: Connection) -> None:
        if self._closing:
            return
        link = DeviceLink(connection)
        self._link = link
        connection.on(
            Connection.EVENT_DISCONNECTION, functools.partial(self._on_disconnection, link)
        )
        control = self.attributes.control
        if control is not None:
            self.spawn(serve_control(self.device, link, control, self._name), "control", link=link)
        self._on_link_up(link)
        self._link_changed()
        logger.debug("sim[%s] connected", self._name)

    def _on_disconnection(self, link: DeviceLink, reason: int) -> None:
        self.attributes.forget(link.connection)
        for task in list(link.tasks):
            task.cancel()
        self.stop_all_streams()
        if self._link is link:
            self._link = None
        self._on_link_down(link.connection)
        self._link_changed()
        logger.debug("sim[%s] disconnected (HCI 0x%02X)", self._name, reason)

    # --- streams ---------------------------------------------------------------------

    @property
    def running_streams(self) -> tuple[str, ...]:
        return tuple(self._streams)

    def start_stream(self, stream: str, coro: Coroutine[Any, Any, None]) -> None:
        """Run a stream's frame loop (replacing a running one of the same name)."""
        self.stop_stream(stream)
        task = self.spawn(coro, stream, link=self._link)
        if task is not None:
            self._streams[stream] = task
            task.add_done_callback(lambda done: self._forget_stream(stream, done))

    def _forget_stream(self, stream: str, task: asyncio.Task[None]) -> None:
        if self._streams.get(stream) is task:
            del self._streams[stream]

    def stop_stream(self, stream: str) -> None:
        task = self._streams.pop(stream, None)
        if task is not None:
            task.cancel()

    def stop_all_streams(self) -> None:
        for stream in list(self._streams):
            self.stop_stream(stream)

    async def paced(
        self, grid: SampleGrid, first: int, n: int, produce: Callable[[int], Awaitable[None]]
    ) -> None:
        """Call ``produce(start)`` for frames of ``n`` samples from sample ``first`` on,
        each when the device clock reaches the end of its samples."""
        start = first
        while True:
            await self.clock.sleep_until(grid.time_ns(start + n), self.pacing)
            await produce(start)
            start += n

    async def emit(
        self,
        connection: Connection,
        char: gatt.Characteristic[bytes],
        data: bytes,
        *,
        stream: str,
        samples: FloatArray,
        fs_hz: float | None,
        device_time_ns: int | None,
        sequence: int | None = None,
        rr_intervals_ms: tuple[float, ...] = (),
    ) -> Outcome:
        """Send one frame through the fault state and record what happened."""
        sent = b""
        if not self.attributes.is_subscribed(connection, char):
            outcome = Outcome.UNSUBSCRIBED
        else:
            action = self._fault_state.action(stream, self.clock.now_ns())
            if action is FrameAction.STALL:
                outcome = Outcome.STALLED
            elif action is FrameAction.SKIP:
                outcome = Outcome.SKIPPED
            else:
                outcome = Outcome.SENT
                sent = data
                if action is FrameAction.CORRUPT:
                    outcome = Outcome.CORRUPTED
                    sent = self._corrupt(stream, data, self._fault_state.corrupted_so_far(stream))
                await self.device.notify_subscriber(connection, char, sent)
        if self.log is not None:
            entry = SentFrame(
                self._name,
                stream,
                outcome,
                samples,
                fs_hz,
                device_time_ns,
                sequence,
                sent,
                asyncio.get_running_loop().time(),
                rr_intervals_ms,
            )
            self.log.record_frame(entry)
        return outcome

    # --- battery --------------------------------------------------------------------

    def _battery_value(self) -> bytes:
        return encode_battery_level(self.battery_percent)

    async def _drain_battery(self) -> None:
        if self._drain_per_hour <= 0:
            return
        step_ns = round(3600e9 / self._drain_per_hour)
        due = self.clock.now_ns()
        while self.battery_percent > 0:
            due += step_ns
            await self.clock.sleep_until(due)
            self.battery_percent -= 1
            self._battery_changed()
            link = self._link
            if link is not None and self.attributes.is_subscribed(
                link.connection, self._battery_char
            ):
                await self.device.notify_subscriber(
                    link.connection, self._battery_char, self._battery_value()
                )

    def _battery_changed(self) -> None:
        """Hook: the battery level dropped by one percent."""
