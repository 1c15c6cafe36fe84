"""Shared machinery of the simulated devices: a GATT peripheral host on the virtual radio.

Role: ``SimPeripheral`` is the base of every device model. It creates the host on a
``VirtualRadio``, runs the device's tasks in its own ``asyncio.TaskGroup`` (tasks named
``sim[<name>].<what>``), configures SMP (LE Secure Connections, bonding; Just Works or a
fixed displayed passkey), advertises, tracks connections and CCCD subscriptions, builds
the Battery and Device Information services, serves a control point (write, then one
response indication per write), paces frames on the device clock and writes what it
sent to the sent log. Also here: ``DeviceClock`` (ns since boot, ``speed`` times real
time, drift in ppm), ``SampleGrid`` (boot-anchored sample times), ``SourceCursor`` (a
signal source read on that grid, decimated) and the sent log (``SentFrame``,
``SentLog``, ``SentCounter``).

Pacing: frame k of a stream is due when the device clock reaches the end of its samples,
``grid.time_ns(first + (k + 1) * n)``; the loop sleeps until the loop time the clock
maps that to. Late wake-ups send every due frame at once (catch up, never skip) and the
lateness is counted in ``PacingStats``. Times are integers on the grid, so nothing drifts.

It must not: decode a profile's data, read the wall clock for pacing, sleep to
synchronise anything but the frame schedule, or log payloads above DEBUG.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import math
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from fractions import Fraction
from types import TracebackType
from typing import Any, ClassVar, Protocol, Self

import numpy as np
from bumble import att, gatt
from bumble.core import AdvertisingData
from bumble.device import Connection, Device
from bumble.pairing import PairingConfig, PairingDelegate

from devices.frame import FloatArray
from devices.info import (
    BATTERY_LEVEL_UUID,
    BATTERY_SERVICE_UUID,
    DEVICE_INFORMATION_SERVICE_UUID,
    DeviceInformation,
    encode_battery_level,
    encode_device_information,
)
from devices.sim.faults import FaultInjector, FaultKind, FaultRecord, FaultState, FrameAction
from devices.sim.radio import VirtualRadio
from devices.sim.signals import SignalSource

__all__ = [
    "DeviceClock",
    "DeviceLink",
    "Outcome",
    "PacingStats",
    "SampleGrid",
    "SentCounter",
    "SentFrame",
    "SentLog",
    "SentLogSink",
    "SimPeripheral",
    "SourceCursor",
    "ad_structures",
]

logger = logging.getLogger(__name__)

_P = gatt.Characteristic.Properties
_PERM = att.Attribute.Permissions
_CCCD = gatt.GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR
_ATT_CCCD_IMPROPERLY_CONFIGURED = 0xFD  # Core Spec Supplement Part B, common error codes
_ATT_PROCEDURE_IN_PROGRESS = 0xFE
_MAX_AD_BYTES = 31  # legacy advertising data / scan response
_EARLY_WAKE_S = 0.0005  # asyncio may wake a timer this much early
_SEEK_CHUNK_S = 60.0


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


def ad_structures(*structures: tuple[int, bytes]) -> bytes:
    """Legacy advertising data (or scan response) from AD structures; at most 31 bytes."""
    data = bytes(AdvertisingData(list(structures)))
    if len(data) > _MAX_AD_BYTES:
        raise ValueError(f"{len(data)} bytes of advertising data; legacy PDUs carry 31")
    return data


class _Delegate(PairingDelegate):
    """Just Works without a passkey; with one, the device displays that fixed passkey."""

    def __init__(self, passkey: int | None) -> None:
        io = (
            PairingDelegate.IoCapability.NO_OUTPUT_NO_INPUT
            if passkey is None
            else PairingDelegate.IoCapability.DISPLAY_OUTPUT_ONLY
        )
        super().__init__(io_capability=io)
        self._passkey = passkey

    async def generate_passkey(self) -> int:
        return await super().generate_passkey() if self._passkey is None else self._passkey


@dataclass(slots=True)
class DeviceLink:
    """Per-connection state: the control point's request queue and pending response."""

    connection: Connection
    requests: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    response_pending: bool = False
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


ControlHandler = Callable[[Connection, bytes], bytes]


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
        self.require_bonding = require_bonding
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
        self._subscriptions: dict[tuple[int, int], tuple[bool, bool]] = {}
        self._all_tasks: set[asyncio.Task[None]] = set()
        self._pending_cccds: list[tuple[gatt.Characteristic[bytes], bool]] = []
        self._control: tuple[gatt.Characteristic[bytes], ControlHandler] | None = None
        self._link_waiters: list[asyncio.Future[None]] = []
        self._battery_char = self._sensor_char(
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
            device.pairing_config_factory = self._pairing_config
            services = [*self._services(), *self._info_services()]
            self._attach_cccds(device)
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

    # --- GATT building blocks ---------------------------------------------------------

    def _read_permissions(self, secure: bool) -> att.Attribute.Permissions:
        if secure and self.require_bonding:
            return (
                _PERM.READABLE | _PERM.READ_REQUIRES_ENCRYPTION | _PERM.READ_REQUIRES_AUTHENTICATION
            )
        return _PERM.READABLE

    def _write_permissions(self, secure: bool) -> att.Attribute.Permissions:
        if secure and self.require_bonding:
            return (
                _PERM.WRITEABLE
                | _PERM.WRITE_REQUIRES_ENCRYPTION
                | _PERM.WRITE_REQUIRES_AUTHENTICATION
            )
        return _PERM.WRITEABLE

    def _sensor_char(
        self,
        uuid: str,
        properties: gatt.Characteristic.Properties,
        *,
        read: Callable[[], bytes] | None = None,
        write: Callable[[Connection, bytes], None] | None = None,
        secure: bool = True,
    ) -> gatt.Characteristic[bytes]:
        """A characteristic whose reads, writes and CCCD writes need an encrypted,
        authenticated link when ``secure`` and the device requires bonding."""
        permissions = self._read_permissions(secure)
        if write is not None:
            permissions |= self._write_permissions(secure)
        reader = read if read is not None else _empty
        value = gatt.CharacteristicValue(read=lambda _connection: reader(), write=write)
        char: gatt.Characteristic[bytes] = gatt.Characteristic(uuid, properties, permissions, value)
        if properties & (_P.NOTIFY | _P.INDICATE):
            char.on(gatt.Characteristic.EVENT_SUBSCRIPTION, functools.partial(self._cccd, char))
            self._pending_cccds.append((char, secure))
        return char

    def _attach_cccds(self, device: Device) -> None:
        # bumble's own CCCDs accept any write; ours carry the characteristic's security.
        for char, secure in self._pending_cccds:
            permissions = self._read_permissions(False) | self._write_permissions(secure)
            value = device.gatt_server.make_descriptor_value(char)
            char.descriptors = [gatt.Descriptor(_CCCD, permissions, value)]

    def _cccd(
        self, char: gatt.Characteristic[bytes], bearer: att.Bearer, notify: bool, indicate: bool
    ) -> None:
        connection = bearer if isinstance(bearer, Connection) else bearer.connection
        self._subscriptions[connection.handle, char.handle] = (notify, indicate)

    def is_subscribed(
        self, connection: Connection, char: gatt.Characteristic[bytes], *, indicate: bool = False
    ) -> bool:
        notify_on, indicate_on = self._subscriptions.get(
            (connection.handle, char.handle), (False, False)
        )
        return indicate_on if indicate else notify_on

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
        """A control point: each accepted write gets exactly one response indication,
        built by ``handler`` in the link's control task, in write order. A write is
        refused with ATT 0xFD when indications are off and, if ``one_at_a_time``, with
        0xFE while the previous response is unconfirmed (else it waits its turn)."""
        char: gatt.Characteristic[bytes]

        def on_write(connection: Connection, value: bytes) -> None:
            link = self._link
            if link is None or link.connection is not connection:
                raise att.ATT_Error(att.ATT_UNLIKELY_ERROR_ERROR)
            if not self.is_subscribed(connection, char, indicate=True):
                raise att.ATT_Error(_ATT_CCCD_IMPROPERLY_CONFIGURED)
            if one_at_a_time and (link.response_pending or not link.requests.empty()):
                raise att.ATT_Error(_ATT_PROCEDURE_IN_PROGRESS)
            link.requests.put_nowait(bytes(value))

        char = self._sensor_char(uuid, properties, read=read, write=on_write)
        self._control = (char, handler)
        return char

    async def _serve_control(
        self, link: DeviceLink, control: tuple[gatt.Characteristic[bytes], ControlHandler]
    ) -> None:
        char, handler = control
        while True:
            request = await link.requests.get()
            response = handler(link.connection, request)
            link.response_pending = True
            try:
                await self.device.indicate_subscriber(link.connection, char, response)
            except TimeoutError:
                # ATT transaction timeout (Vol 3 Part F 3.3.3): no more ATT on this link.
                logger.warning("sim[%s] response not confirmed; disconnecting", self._name)
                await link.connection.disconnect()
                return
            link.response_pending = False

    # --- connections ---------------------------------------------------------------

    def _pairing_config(self, _connection: Connection) -> PairingConfig:
        return PairingConfig(
            sc=True, mitm=self.passkey is not None, bonding=True, delegate=_Delegate(self.passkey)
        )

    def _on_connection(self, connection: Connection) -> None:
        if self._closing:
            return
        link = DeviceLink(connection)
        self._link = link
        connection.on(
            Connection.EVENT_DISCONNECTION, functools.partial(self._on_disconnection, link)
        )
        if self._control is not None:
            self.spawn(self._serve_control(link, self._control), "control", link=link)
        self._on_link_up(link)
        self._link_changed()
        logger.debug("sim[%s] connected", self._name)

    def _on_disconnection(self, link: DeviceLink, reason: int) -> None:
        handle = link.connection.handle
        for key in [k for k in self._subscriptions if k[0] == handle]:
            del self._subscriptions[key]
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
        if not self.is_subscribed(connection, char):
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
            if link is not None and self.is_subscribed(link.connection, self._battery_char):
                await self.device.notify_subscriber(
                    link.connection, self._battery_char, self._battery_value()
                )

    def _battery_changed(self) -> None:
        """Hook: the battery level dropped by one percent."""


def _empty() -> bytes:
    return b""
