"""Conformance of the bumble bleak backend: gateway-style bleak code against a real
bumble GATT peripheral on the virtual radio (no mocks). Each test builds its own radio;
waits are on queues/events; the only wall-clock waits are the connection timeouts the
not-found tests measure.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import (
    BleakDeviceNotFoundError,
    BleakError,
    BleakGATTProtocolError,
    BleakGATTProtocolErrorCode,
)
from bleak.uuids import normalize_uuid_16
from bumble import hci
from bumble.pairing import PairingDelegate

from devices.sim.radio import LINK_LOSS_REASON, VirtualRadio
from gateway.ble.bumble_backend import (
    REQUESTED_MTU,
    BumbleAdapter,
    BumbleClient,
    BumbleGATTError,
    BumbleLinkError,
    BumblePairingError,
    BumbleScanner,
    PairingPolicy,
)

if TYPE_CHECKING:
    from conftest import AdapterFactory, PeripheralFactory, TestPeripheral

pytestmark = [pytest.mark.timeout(15)]

ABSENT_ADDRESS = "C0:00:00:00:0F:FF"


def client_for(
    target: BLEDevice | str,
    adapter: BumbleAdapter,
    disconnected: asyncio.Event | None = None,
    **kwargs: object,
) -> BleakClient:
    callback = None if disconnected is None else (lambda _client: disconnected.set())
    return BleakClient(target, callback, backend=BumbleClient, bumble_adapter=adapter, **kwargs)


async def sighting(scanner: BleakScanner, address: str) -> tuple[BLEDevice, AdvertisementData]:
    async for device, advertisement in scanner.advertisement_data():
        if device.address == address:
            return device, advertisement
    raise AssertionError("advertisement_data() ended")


# --- scanning ---------------------------------------------------------------------


async def test_scan_reports_advertised_fields_and_rssi(
    radio: VirtualRadio, peripheral: TestPeripheral, adapter: BumbleAdapter
) -> None:
    radio.set_rssi(peripheral.device, -67)
    async with BleakScanner(backend=BumbleScanner, bumble_adapter=adapter) as scanner:
        device, ad = await sighting(scanner, peripheral.address)

    assert device.name == peripheral.NAME
    assert device.details == hci.Address(peripheral.address)
    assert ad.local_name == peripheral.NAME
    assert ad.service_uuids == [
        normalize_uuid_16(peripheral.HEART_RATE_SERVICE_16),
        peripheral.SERVICE_UUID,
    ]
    assert ad.manufacturer_data == {peripheral.COMPANY_ID: peripheral.MANUFACTURER_PAYLOAD}
    assert ad.service_data == {
        normalize_uuid_16(peripheral.BATTERY_SERVICE_16): peripheral.BATTERY_LEVEL
    }
    assert ad.tx_power == peripheral.TX_POWER_DBM
    assert ad.rssi == -67
    assert scanner.discovered_devices_and_advertisement_data[peripheral.address][0] is device


async def test_scan_filters_by_service_uuid(
    make_peripheral: PeripheralFactory, adapter: BumbleAdapter
) -> None:
    wanted = await make_peripheral(address="C0:00:00:00:01:01", name="wanted")
    other = await make_peripheral(
        address="C0:00:00:00:01:02",
        name="other",
        service_uuid=wanted.OTHER_SERVICE_UUID,
    )
    filtered: list[str] = []
    everything = BleakScanner(backend=BumbleScanner, bumble_adapter=adapter)
    only_wanted = BleakScanner(
        lambda device, _ad: filtered.append(device.address),
        service_uuids=[wanted.SERVICE_UUID.upper()],
        backend=BumbleScanner,
        bumble_adapter=adapter,
    )
    async with only_wanted, everything:
        heard: set[str] = set()
        async for device, _ad in everything.advertisement_data():
            heard.add(device.address)
            if heard >= {wanted.address, other.address}:
                break
        # Both scanners get each advertisement in the same dispatch, so the filtered
        # one has had its chance to see `other` by now.
        while wanted.address not in filtered:
            await sighting(everything, wanted.address)

    assert set(filtered) == {wanted.address}


async def test_find_device_by_address_and_name(
    peripheral: TestPeripheral, adapter: BumbleAdapter
) -> None:
    by_address = await BleakScanner.find_device_by_address(
        peripheral.address, timeout=5, backend=BumbleScanner, bumble_adapter=adapter
    )
    by_name = await BleakScanner.find_device_by_name(
        peripheral.NAME, timeout=5, backend=BumbleScanner, bumble_adapter=adapter
    )
    assert by_address is not None
    assert by_name is not None
    assert by_address.address == by_name.address == peripheral.address


# --- connection, discovery, MTU -----------------------------------------------------


async def test_connect_discovers_services_characteristics_and_descriptors(
    peripheral: TestPeripheral, adapter: BumbleAdapter
) -> None:
    async with client_for(peripheral.address, adapter) as client:
        assert client.is_connected
        assert client.name == peripheral.NAME  # GAP Device Name, read on connect
        service = client.services.get_service(peripheral.SERVICE_UUID)
        assert service is not None
        chars = {c.uuid: c for c in service.characteristics}
        assert set(chars) == {
            peripheral.READ_UUID,
            peripheral.WRITE_UUID,
            peripheral.NOTIFY_UUID,
            peripheral.INDICATE_UUID,
            peripheral.SECURE_UUID,
        }
        assert chars[peripheral.READ_UUID].properties == ["read"]
        assert chars[peripheral.WRITE_UUID].properties == ["write-without-response", "write"]
        assert chars[peripheral.NOTIFY_UUID].properties == ["notify"]
        assert chars[peripheral.INDICATE_UUID].properties == ["indicate"]
        for uuid, server_char in (
            (peripheral.READ_UUID, peripheral.read_char),
            (peripheral.NOTIFY_UUID, peripheral.notify_char),
        ):
            assert chars[uuid].handle == server_char.handle  # the value handle
            assert client.services.get_characteristic(server_char.handle) is chars[uuid]
        cccd = chars[peripheral.NOTIFY_UUID].get_descriptor(normalize_uuid_16(0x2902))
        assert cccd is not None
        assert cccd.handle == peripheral.notify_char.handle + 1
        assert chars[peripheral.READ_UUID].descriptors == []
        assert chars[peripheral.WRITE_UUID].max_write_without_response_size == REQUESTED_MTU - 3


async def test_mtu_is_exchanged_to_247_on_connect(
    peripheral: TestPeripheral, adapter: BumbleAdapter
) -> None:
    async with client_for(peripheral.address, adapter) as client:
        assert client.mtu_size == REQUESTED_MTU == 247
        assert peripheral.connection.att_mtu == 247


async def test_connect_by_scanned_device_and_service_filter(
    peripheral: TestPeripheral, adapter: BumbleAdapter
) -> None:
    device = await BleakScanner.find_device_by_name(
        peripheral.NAME, timeout=5, backend=BumbleScanner, bumble_adapter=adapter
    )
    assert device is not None
    async with client_for(device, adapter, services=[peripheral.SERVICE_UUID]) as client:
        assert [s.uuid for s in client.services] == [peripheral.SERVICE_UUID]


# --- read / write / notify / indicate -----------------------------------------------


async def test_read(peripheral: TestPeripheral, adapter: BumbleAdapter) -> None:
    async with client_for(peripheral.address, adapter) as client:
        value = await client.read_gatt_char(peripheral.READ_UUID)
        assert value == bytearray(peripheral.READ_VALUE)
        assert isinstance(value, bytearray)
        cached = await client.read_gatt_char(peripheral.READ_UUID, use_cached=True)
        assert cached == value


async def test_write_with_and_without_response(
    peripheral: TestPeripheral, adapter: BumbleAdapter
) -> None:
    echoes: asyncio.Queue[bytearray] = asyncio.Queue()
    async with client_for(peripheral.address, adapter) as client:
        await client.start_notify(peripheral.NOTIFY_UUID, lambda _c, data: echoes.put_nowait(data))
        await client.write_gatt_char(peripheral.WRITE_UUID, b"with", response=True)
        assert echoes.get_nowait() == bytearray(b"with")  # echoed before the write response
        await client.write_gatt_char(peripheral.WRITE_UUID, b"\x00" * 244, response=False)
        assert await echoes.get() == bytearray(244)
        with pytest.raises(BleakError):
            await client.write_gatt_char(peripheral.WRITE_UUID, bytes(245), response=False)


async def test_att_error_keeps_its_code(peripheral: TestPeripheral, adapter: BumbleAdapter) -> None:
    async with client_for(peripheral.address, adapter) as client:
        with pytest.raises(BumbleGATTError) as caught:
            await client.write_gatt_char(peripheral.READ_UUID, b"x", response=True)
    assert isinstance(caught.value, BleakGATTProtocolError)
    assert caught.value.code == BleakGATTProtocolErrorCode.WRITE_NOT_PERMITTED
    assert caught.value.att_error == 0x03
    assert caught.value.handle == peripheral.read_char.handle
    assert "0x03" in str(caught.value)


async def test_notifications_arrive_complete_and_in_order(
    peripheral: TestPeripheral, adapter: BumbleAdapter
) -> None:
    count = 1000
    received: list[bytearray] = []
    all_in = asyncio.Event()

    def on_notification(_char: object, data: bytearray) -> None:
        received.append(data)
        if len(received) == count:
            all_in.set()

    async with client_for(peripheral.address, adapter) as client:
        await client.start_notify(peripheral.NOTIFY_UUID, on_notification)
        for seq in range(count):
            await peripheral.notify(seq.to_bytes(4, "little") + bytes(240))
        await all_in.wait()

    assert [int.from_bytes(d[:4], "little") for d in received] == list(range(count))
    assert all(isinstance(d, bytearray) and len(d) == 244 for d in received)


async def test_indications_arrive_in_order(
    peripheral: TestPeripheral, adapter: BumbleAdapter
) -> None:
    received: asyncio.Queue[bytearray] = asyncio.Queue()
    async with client_for(peripheral.address, adapter) as client:
        await client.start_notify(peripheral.INDICATE_UUID, lambda _c, d: received.put_nowait(d))
        assert await peripheral.subscriptions.get() == (
            peripheral.indicate_char.handle,
            False,
            True,
        )
        for seq in range(50):
            await peripheral.indicate(bytes([seq]))  # returns once confirmed
        assert [received.get_nowait()[0] for _ in range(50)] == list(range(50))


async def test_stop_notify_stops_delivery(
    peripheral: TestPeripheral, adapter: BumbleAdapter
) -> None:
    received: list[bytearray] = []
    async with client_for(peripheral.address, adapter) as client:
        await client.start_notify(peripheral.NOTIFY_UUID, lambda _c, d: received.append(d))
        assert await peripheral.subscriptions.get() == (peripheral.notify_char.handle, True, False)
        await client.stop_notify(peripheral.NOTIFY_UUID)
        assert await peripheral.subscriptions.get() == (peripheral.notify_char.handle, False, False)
        await peripheral.notify(b"dropped by the server")
        # A misbehaving server notifies anyway; the client must not deliver it.
        await peripheral.device.notify_subscribers(peripheral.notify_char, b"forced", force=True)
        await client.read_gatt_char(peripheral.READ_UUID)  # ATT is ordered: a barrier
    assert received == []


# --- disconnection and link loss ------------------------------------------------------


async def test_disconnect(peripheral: TestPeripheral, adapter: BumbleAdapter) -> None:
    disconnected = asyncio.Event()
    client = client_for(peripheral.address, adapter, disconnected)
    await client.connect()
    await client.disconnect()
    assert not client.is_connected
    assert disconnected.is_set()  # fired for a requested disconnect too, as on BlueZ
    assert await peripheral.disconnections.get() == hci.HCI_REMOTE_USER_TERMINATED_CONNECTION_ERROR
    await client.disconnect()  # idempotent
    with pytest.raises(BleakError, match="Not connected"):
        await client.start_notify(peripheral.NOTIFY_UUID, lambda _c, _d: None)


async def test_peripheral_initiated_disconnect_fires_callback(
    peripheral: TestPeripheral, adapter: BumbleAdapter
) -> None:
    disconnected = asyncio.Event()
    client = client_for(peripheral.address, adapter, disconnected)
    await client.connect()
    await peripheral.connection.disconnect(hci.HCI_REMOTE_USER_TERMINATED_CONNECTION_ERROR)
    await disconnected.wait()
    assert not client.is_connected
    backend = client._backend
    assert isinstance(backend, BumbleClient)
    assert backend.last_disconnect_reason == hci.HCI_REMOTE_USER_TERMINATED_CONNECTION_ERROR


async def test_link_loss_fires_callback_with_timeout_reason(
    radio: VirtualRadio, peripheral: TestPeripheral, adapter: BumbleAdapter
) -> None:
    disconnected = asyncio.Event()
    client = client_for(peripheral.address, adapter, disconnected)
    await client.connect()
    assert await radio.drop_link(peripheral.device) == 1
    await disconnected.wait()
    backend = client._backend
    assert isinstance(backend, BumbleClient)
    assert backend.last_disconnect_reason == LINK_LOSS_REASON == 0x08
    assert await peripheral.disconnections.get() == LINK_LOSS_REASON
    await client.connect()  # still advertising: reconnects
    assert await client.read_gatt_char(peripheral.READ_UUID) == bytearray(peripheral.READ_VALUE)
    await client.disconnect()


async def test_link_loss_under_a_read_fails_the_read_with_the_reason(
    radio: VirtualRadio, peripheral: TestPeripheral, adapter: BumbleAdapter
) -> None:
    client = client_for(peripheral.address, adapter)
    await client.connect()
    peripheral.reads_held = asyncio.get_running_loop().create_future()

    async def read_expecting_loss() -> BumbleLinkError:
        with pytest.raises(BumbleLinkError) as caught:
            await client.read_gatt_char(peripheral.READ_UUID)
        return caught.value

    async def lose_link_mid_read() -> None:
        await peripheral.reads_started.wait()
        await radio.drop_link(peripheral.device)

    async with asyncio.TaskGroup() as group:
        failed_read = group.create_task(read_expecting_loss())
        group.create_task(lose_link_mid_read())
    peripheral.reads_held.set_result(None)
    assert failed_read.result().operation == "read"
    assert failed_read.result().hci_reason == LINK_LOSS_REASON
    assert not client.is_connected


async def test_out_of_range_peripheral_cannot_be_reached_until_back(
    radio: VirtualRadio, peripheral: TestPeripheral, adapter: BumbleAdapter
) -> None:
    disconnected = asyncio.Event()
    client = client_for(peripheral.address, adapter, disconnected, timeout=0.3)
    await client.connect()
    await radio.set_in_range(peripheral.device, False)
    await disconnected.wait()
    with pytest.raises(BleakDeviceNotFoundError):
        await client.connect()
    await radio.set_in_range(peripheral.device, True)
    await client.connect()
    assert client.is_connected
    await client.disconnect()


async def test_absent_address_is_not_found_within_timeout(
    peripheral: TestPeripheral, adapter: BumbleAdapter
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(BleakDeviceNotFoundError) as caught:
        await client_for(ABSENT_ADDRESS, adapter, timeout=0.3).connect()
    assert loop.time() - started < 2.0
    assert caught.value.identifier == ABSENT_ADDRESS
    # The controller was left idle: the next connection works.
    async with client_for(peripheral.address, adapter) as client:
        assert client.is_connected


async def test_cancelled_connect_leaves_the_adapter_usable(
    peripheral: TestPeripheral, adapter: BumbleAdapter
) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await client_for(ABSENT_ADDRESS, adapter, timeout=30).connect()
    async with client_for(peripheral.address, adapter) as client:
        assert client.is_connected


# --- pairing and bonds ----------------------------------------------------------------


async def test_protected_read_needs_pairing_and_bond_survives_reconnect(
    peripheral: TestPeripheral, adapter: BumbleAdapter
) -> None:
    async with client_for(peripheral.address, adapter) as client:
        with pytest.raises(BumbleGATTError) as caught:
            await client.read_gatt_char(peripheral.SECURE_UUID)
        assert caught.value.code == BleakGATTProtocolErrorCode.INSUFFICIENT_ENCRYPTION
        await client.pair()
        assert await client.read_gatt_char(peripheral.SECURE_UUID) == bytearray(
            peripheral.SECURE_VALUE
        )
        await client.pair()  # already bonded and encrypted: no second pairing

    async with client_for(peripheral.address, adapter) as client:
        assert await client.read_gatt_char(peripheral.SECURE_UUID) == bytearray(
            peripheral.SECURE_VALUE
        )
    assert len(peripheral.pairings) == 1


async def test_peer_that_lost_the_bond_fails_connect(
    peripheral: TestPeripheral, adapter: BumbleAdapter
) -> None:
    client = client_for(peripheral.address, adapter)
    await client.connect()
    await client.pair()
    await client.disconnect()
    await peripheral.disconnections.get()
    assert peripheral.device.keystore is not None
    await peripheral.device.keystore.delete_all()  # the garment was reset
    with pytest.raises(BumbleLinkError) as caught:
        await client.connect()
    assert caught.value.operation == "encrypt"
    assert caught.value.hci_reason == hci.HCI_PIN_OR_KEY_MISSING_ERROR
    assert not client.is_connected
    await peripheral.disconnections.get()  # the failed session was closed
    assert peripheral.device.connections == {}
    await client.unpair()  # forget the stale bond; pairing again works
    async with client_for(peripheral.address, adapter, pair=True) as again:
        assert await again.read_gatt_char(peripheral.SECURE_UUID) == bytearray(
            peripheral.SECURE_VALUE
        )


async def test_pair_before_connect_when_asked(
    peripheral: TestPeripheral, adapter: BumbleAdapter
) -> None:
    async with client_for(peripheral.address, adapter, pair=True) as client:
        assert await client.read_gatt_char(peripheral.SECURE_UUID) == bytearray(
            peripheral.SECURE_VALUE
        )
    assert len(peripheral.pairings) == 1


async def test_bond_survives_adapter_restart_with_key_dir(
    peripheral: TestPeripheral, make_adapter: AdapterFactory, tmp_path: Path
) -> None:
    async with make_adapter(key_dir=tmp_path) as adapter:
        client = client_for(peripheral.address, adapter)
        async with client:
            await client.pair()
    assert (tmp_path / "bonds.json").is_file()
    async with make_adapter(key_dir=tmp_path) as adapter:
        client = client_for(peripheral.address, adapter)
        async with client:
            assert await client.read_gatt_char(peripheral.SECURE_UUID) == bytearray(
                peripheral.SECURE_VALUE
            )
    assert len(peripheral.pairings) == 1


async def test_unpair_removes_the_bond(peripheral: TestPeripheral, adapter: BumbleAdapter) -> None:
    disconnected = asyncio.Event()
    client = client_for(peripheral.address, adapter, disconnected)
    await client.connect()
    await client.pair()
    assert await adapter.bond(hci.Address(peripheral.address)) is not None
    await client.unpair()
    assert disconnected.is_set()
    assert await adapter.bond(hci.Address(peripheral.address)) is None
    await client.connect()
    with pytest.raises(BumbleGATTError) as caught:
        await client.read_gatt_char(peripheral.SECURE_UUID)
    assert caught.value.att_error == 0x0F
    await client.unpair()  # no bond left: nothing to do but disconnect


async def test_passkey_entry_pairing(
    make_peripheral: PeripheralFactory, make_adapter: AdapterFactory
) -> None:
    peripheral = await make_peripheral(
        io_capability=PairingDelegate.IoCapability.DISPLAY_OUTPUT_ONLY, passkey=123456
    )
    asked: list[str] = []

    async def passkey_for(address: str) -> int:
        asked.append(address)
        return 123456

    policy = PairingPolicy(io_capability="keyboard_only", passkey_provider=passkey_for)
    async with make_adapter(pairing=policy) as adapter:
        async with client_for(peripheral.address, adapter) as client:
            await client.pair()
            assert await client.read_gatt_char(peripheral.SECURE_UUID) == bytearray(
                peripheral.SECURE_VALUE
            )
        bond = await adapter.bond(hci.Address(peripheral.address))
    assert asked == [peripheral.address]
    assert bond is not None
    assert bond.ltk is not None
    assert bond.ltk.authenticated  # MITM-protected, unlike Just Works


async def test_wrong_passkey_fails_pairing(
    make_peripheral: PeripheralFactory, make_adapter: AdapterFactory
) -> None:
    peripheral = await make_peripheral(
        io_capability=PairingDelegate.IoCapability.DISPLAY_OUTPUT_ONLY, passkey=123456
    )

    async def wrong(_address: str) -> int:
        return 654321

    policy = PairingPolicy(io_capability="keyboard_only", passkey_provider=wrong)
    async with make_adapter(pairing=policy) as adapter:
        async with client_for(peripheral.address, adapter) as client:
            with pytest.raises(BumblePairingError) as caught:
                await client.pair()
        assert await adapter.bond(hci.Address(peripheral.address)) is None
    assert caught.value.smp_reason == 0x04  # Confirm Value Failed
    assert peripheral.pairings == []


@pytest.mark.parametrize("passkey", [None, 1_000_000], ids=["provider-fails", "out-of-range"])
async def test_unusable_passkey_fails_pairing_cleanly(
    make_peripheral: PeripheralFactory, make_adapter: AdapterFactory, passkey: int | None
) -> None:
    peripheral = await make_peripheral(
        io_capability=PairingDelegate.IoCapability.DISPLAY_OUTPUT_ONLY, passkey=123456
    )

    async def provider(_address: str) -> int:
        if passkey is None:
            raise RuntimeError("operator cancelled")
        return passkey

    policy = PairingPolicy(io_capability="keyboard_only", passkey_provider=provider)
    async with make_adapter(pairing=policy) as adapter:
        client = client_for(peripheral.address, adapter)
        async with client:
            with pytest.raises(BumblePairingError) as caught:
                await client.pair()
    assert caught.value.smp_reason == 0x01  # Passkey Entry Failed


def test_keyboard_policy_needs_a_passkey_provider() -> None:
    with pytest.raises(ValueError, match="passkey_provider"):
        PairingPolicy(io_capability="keyboard_only")


# --- several peripherals ----------------------------------------------------------------


async def test_five_peripherals_connected_at_once(
    make_peripheral: PeripheralFactory, adapter: BumbleAdapter
) -> None:
    peripherals = [
        await make_peripheral(address=f"C0:00:00:00:02:{i:02X}", name=f"garment-{i}")
        for i in range(5)
    ]
    clients = [client_for(p.address, adapter) for p in peripherals]
    await asyncio.gather(*(c.connect() for c in clients))
    assert len(adapter.device.connections) == 5
    queues: list[asyncio.Queue[bytearray]] = [asyncio.Queue() for _ in peripherals]
    for client, queue, peripheral in zip(clients, queues, peripherals, strict=True):
        await client.start_notify(peripheral.NOTIFY_UUID, lambda _c, d, q=queue: q.put_nowait(d))
    for round_ in range(20):
        for index, peripheral in enumerate(peripherals):
            await peripheral.notify(bytes([index, round_]))
    for index, queue in enumerate(queues):
        assert [await queue.get() for _ in range(20)] == [bytearray([index, r]) for r in range(20)]
    assert all(c.is_connected for c in clients)
    await asyncio.gather(*(c.disconnect() for c in clients))
    assert adapter.device.connections == {}


async def test_connection_budget_is_enforced(
    make_peripheral: PeripheralFactory, make_adapter: AdapterFactory
) -> None:
    first = await make_peripheral(address="C0:00:00:00:03:01")
    second = await make_peripheral(address="C0:00:00:00:03:02")
    async with make_adapter(max_connections=1) as adapter, client_for(first.address, adapter):
        with pytest.raises(BumbleLinkError) as caught:
            await client_for(second.address, adapter).connect()
        assert caught.value.hci_reason == hci.HCI_CONNECTION_LIMIT_EXCEEDED_ERROR
        with pytest.raises(BumbleLinkError) as again:
            await client_for(first.address, adapter).connect()
        assert again.value.hci_reason == hci.HCI_CONNECTION_ALREADY_EXISTS_ERROR
