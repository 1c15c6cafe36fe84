"""Fixtures for the bumble backend conformance suite: a virtual radio per test, the
gateway's adapter on it, and a test peripheral (a real bumble GATT server).

The peripheral's service has: a readable characteristic, a writable one (with and
without response) whose writes are echoed as notifications on the notify
characteristic, an indicate characteristic, and a characteristic whose read needs an
encrypted link from a bonded central. Everything is the real bumble stack; waits are on
queues and events, never on sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from bumble import att, core, gatt
from bumble.core import AdvertisingData
from bumble.device import Connection, Device
from bumble.keys import PairingKeys
from bumble.pairing import PairingConfig, PairingDelegate

from devices.sim.radio import VirtualRadio
from gateway.ble.bumble_backend import BumbleAdapter, PairingPolicy

_P = gatt.Characteristic.Properties
_NO_IO = PairingDelegate.IoCapability.NO_OUTPUT_NO_INPUT

CENTRAL_ADDRESS = "C0:00:00:00:00:01"
PERIPHERAL_ADDRESS = "C0:00:00:00:00:02"
PERIPHERAL_NAME = "biogw-test"
SERVICE_UUID = "b1090001-5e4c-4a7e-9c1d-6a2f0e7d3b11"
READ_UUID = "b1090002-5e4c-4a7e-9c1d-6a2f0e7d3b11"
WRITE_UUID = "b1090003-5e4c-4a7e-9c1d-6a2f0e7d3b11"
NOTIFY_UUID = "b1090004-5e4c-4a7e-9c1d-6a2f0e7d3b11"
INDICATE_UUID = "b1090005-5e4c-4a7e-9c1d-6a2f0e7d3b11"
SECURE_UUID = "b1090006-5e4c-4a7e-9c1d-6a2f0e7d3b11"
OTHER_SERVICE_UUID = "b1090101-5e4c-4a7e-9c1d-6a2f0e7d3b11"
READ_VALUE = b"biogw-read"
SECURE_VALUE = b"bonded-only"
HEART_RATE_SERVICE_16 = 0x180D  # advertised 16-bit UUID (Assigned Numbers 3.4.2)
BATTERY_SERVICE_16 = 0x180F  # advertised service data key
COMPANY_ID = 0xFFFF  # "reserved for internal use / testing" (Assigned Numbers 7)
MANUFACTURER_PAYLOAD = b"\x01\x02\x03"
BATTERY_LEVEL = b"\x5a"
TX_POWER_DBM = -4


class _PeripheralDelegate(PairingDelegate):
    def __init__(self, io_capability: PairingDelegate.IoCapability, passkey: int) -> None:
        super().__init__(io_capability=io_capability)
        self._passkey = passkey

    async def generate_passkey(self) -> int:
        return self._passkey


class TestPeripheral:
    """A bumble peripheral on the radio with the conformance service. Tests reach the
    constants through the instance (``peripheral.READ_UUID``): importing ``conftest``
    from a test module is ambiguous in a tree without ``__init__.py`` files."""

    __test__ = False  # not a pytest test class

    SERVICE_UUID = SERVICE_UUID
    READ_UUID = READ_UUID
    WRITE_UUID = WRITE_UUID
    NOTIFY_UUID = NOTIFY_UUID
    INDICATE_UUID = INDICATE_UUID
    SECURE_UUID = SECURE_UUID
    OTHER_SERVICE_UUID = OTHER_SERVICE_UUID
    READ_VALUE = READ_VALUE
    SECURE_VALUE = SECURE_VALUE
    NAME = PERIPHERAL_NAME
    HEART_RATE_SERVICE_16 = HEART_RATE_SERVICE_16
    BATTERY_SERVICE_16 = BATTERY_SERVICE_16
    COMPANY_ID = COMPANY_ID
    MANUFACTURER_PAYLOAD = MANUFACTURER_PAYLOAD
    BATTERY_LEVEL = BATTERY_LEVEL
    TX_POWER_DBM = TX_POWER_DBM

    def __init__(self, device: Device, service_uuid: str) -> None:
        self.device = device
        self.address = device.static_address.to_string(False)
        self.service_uuid = service_uuid
        self.pairings: list[PairingKeys] = []
        self.connections: asyncio.Queue[Connection] = asyncio.Queue()
        self.disconnections: asyncio.Queue[int] = asyncio.Queue()
        self.subscriptions: asyncio.Queue[tuple[int, bool, bool]] = asyncio.Queue()
        self.reads_started = asyncio.Event()
        self.reads_held: asyncio.Future[None] | None = None
        """Set to a future to hold reads of the readable characteristic until it resolves."""
        self.notify_char = gatt.Characteristic(
            NOTIFY_UUID, _P.NOTIFY, gatt.Characteristic.READABLE, b""
        )
        self.indicate_char = gatt.Characteristic(
            INDICATE_UUID, _P.INDICATE, gatt.Characteristic.READABLE, b""
        )
        # bumble's server does not enforce write permissions: the value rejects writes.
        self.read_char = gatt.Characteristic(
            READ_UUID,
            _P.READ,
            gatt.Characteristic.READABLE,
            gatt.CharacteristicValue(read=self._read, write=_reject_write),
        )
        self.write_char = gatt.Characteristic(
            WRITE_UUID,
            _P.WRITE | _P.WRITE_WITHOUT_RESPONSE,
            gatt.Characteristic.WRITEABLE,
            gatt.CharacteristicValue(write=self._echo),
        )
        self.secure_char = gatt.Characteristic(
            SECURE_UUID,
            _P.READ,
            gatt.Characteristic.READ_REQUIRES_ENCRYPTION
            | gatt.Characteristic.READ_REQUIRES_AUTHENTICATION,
            SECURE_VALUE,
        )
        chars = [
            self.read_char,
            self.write_char,
            self.notify_char,
            self.indicate_char,
            self.secure_char,
        ]
        device.add_service(gatt.Service(service_uuid, chars))
        device.on(Device.EVENT_CONNECTION, self._on_connection)
        for char in (self.notify_char, self.indicate_char):
            char.on(gatt.Characteristic.EVENT_SUBSCRIPTION, self._subscription_listener(char))

    @classmethod
    async def create(
        cls,
        radio: VirtualRadio,
        *,
        address: str = PERIPHERAL_ADDRESS,
        name: str = PERIPHERAL_NAME,
        service_uuid: str = SERVICE_UUID,
        io_capability: PairingDelegate.IoCapability = _NO_IO,
        passkey: int = 0,
    ) -> TestPeripheral:
        device = await radio.add_host(address=address, name=name)
        peripheral = cls(device, service_uuid)
        mitm = io_capability != _NO_IO
        device.pairing_config_factory = lambda _connection: PairingConfig(
            sc=True, mitm=mitm, bonding=True, delegate=_PeripheralDelegate(io_capability, passkey)
        )
        await device.start_advertising(
            advertising_data=advertising_data(name, service_uuid),
            advertising_interval_min=20,
            advertising_interval_max=20,
            auto_restart=True,
        )
        return peripheral

    @property
    def connection(self) -> Connection:
        (connection,) = self.device.connections.values()
        return connection

    async def notify(self, value: bytes) -> None:
        await self.device.notify_subscribers(self.notify_char, value)

    async def indicate(self, value: bytes) -> None:
        await self.device.indicate_subscribers(self.indicate_char, value)

    async def _read(self, _connection: Connection) -> bytes:
        self.reads_started.set()
        if self.reads_held is not None:
            await self.reads_held
        return READ_VALUE

    async def _echo(self, connection: Connection, value: bytes) -> None:
        await self.device.notify_subscriber(connection, self.notify_char, value)

    def _on_connection(self, connection: Connection) -> None:
        connection.on(Connection.EVENT_PAIRING, self.pairings.append)
        connection.on(Connection.EVENT_DISCONNECTION, self.disconnections.put_nowait)
        self.connections.put_nowait(connection)

    def _subscription_listener(
        self, char: gatt.Characteristic[bytes]
    ) -> Callable[[object, bool, bool], None]:
        def on_subscription(_bearer: object, notify: bool, indicate: bool) -> None:
            self.subscriptions.put_nowait((char.handle, notify, indicate))

        return on_subscription


def _reject_write(_connection: Connection, _value: bytes) -> None:
    raise att.ATT_Error(att.ATT_WRITE_NOT_PERMITTED_ERROR)


def advertising_data(name: str, service_uuid: str) -> bytes:
    """Flags, complete name, 16- and 128-bit service UUIDs, service data, manufacturer
    data and TX power: every field bleak's AdvertisementData carries."""
    return bytes(
        AdvertisingData(
            [
                (AdvertisingData.FLAGS, bytes([0x06])),
                (AdvertisingData.COMPLETE_LOCAL_NAME, name.encode()),
                (
                    AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
                    HEART_RATE_SERVICE_16.to_bytes(2, "little"),
                ),
                (
                    AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
                    core.UUID(service_uuid).uuid_128_bytes,
                ),
                (
                    AdvertisingData.SERVICE_DATA_16_BIT_UUID,
                    BATTERY_SERVICE_16.to_bytes(2, "little") + BATTERY_LEVEL,
                ),
                (
                    AdvertisingData.MANUFACTURER_SPECIFIC_DATA,
                    COMPANY_ID.to_bytes(2, "little") + MANUFACTURER_PAYLOAD,
                ),
                (AdvertisingData.TX_POWER_LEVEL, TX_POWER_DBM.to_bytes(1, "little", signed=True)),
            ]
        )
    )


@pytest.fixture
async def radio() -> AsyncIterator[VirtualRadio]:
    async with VirtualRadio() as radio:
        yield radio


@pytest.fixture
async def peripheral(radio: VirtualRadio) -> TestPeripheral:
    return await TestPeripheral.create(radio)


@pytest.fixture
async def adapter(radio: VirtualRadio) -> AsyncIterator[BumbleAdapter]:
    async with BumbleAdapter(radio, address=CENTRAL_ADDRESS, pairing=PairingPolicy()) as adapter:
        yield adapter


PeripheralFactory = Callable[..., Awaitable[TestPeripheral]]
AdapterFactory = Callable[..., BumbleAdapter]


@pytest.fixture
def make_peripheral(radio: VirtualRadio) -> PeripheralFactory:
    """``await make_peripheral(address=..., service_uuid=..., io_capability=..., passkey=...)``."""

    async def make(**kwargs: Any) -> TestPeripheral:
        return await TestPeripheral.create(radio, **kwargs)

    return make


@pytest.fixture
def make_adapter(radio: VirtualRadio) -> AdapterFactory:
    """``async with make_adapter(pairing=..., key_dir=..., max_connections=...)``: an
    adapter at the usual central address, opened by the test."""

    def make(**kwargs: Any) -> BumbleAdapter:
        kwargs.setdefault("address", CENTRAL_ADDRESS)
        return BumbleAdapter(radio, **kwargs)

    return make
