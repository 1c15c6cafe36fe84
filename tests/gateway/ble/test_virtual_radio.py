"""The simulator's VirtualRadio as the gateway backend relies on it: host creation rules,
RSSI control, range control and link drops (real bumble controllers, no mocks)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from bleak import BleakScanner
from bleak.exc import BleakError

from devices.sim.radio import DEFAULT_RSSI_DBM, VirtualRadio
from gateway.ble.bumble_backend import BumbleAdapter, BumbleScanner

if TYPE_CHECKING:
    from conftest import AdapterFactory, TestPeripheral

pytestmark = [pytest.mark.timeout(15)]


async def test_hosts_need_unique_static_random_addresses(radio: VirtualRadio) -> None:
    await radio.add_host(address="C0:00:00:00:00:10")
    with pytest.raises(ValueError, match="already"):
        await radio.add_host(address="c0:00:00:00:00:10")
    with pytest.raises(ValueError, match="static random"):
        await radio.add_host(address="00:11:22:33:44:55")
    with pytest.raises(ValueError, match="Bluetooth address"):
        await radio.add_host(address="not-an-address")
    assert len(radio.devices) == 1


async def test_a_device_of_another_radio_is_refused(radio: VirtualRadio) -> None:
    async with VirtualRadio() as other:
        stranger = await other.add_host(address="C0:00:00:00:00:11")
        with pytest.raises(ValueError, match="not a host"):
            radio.set_rssi(stranger, -60)
        with pytest.raises(ValueError, match="not a host"):
            await radio.drop_link(stranger)


async def test_rssi_follows_set_rssi(
    radio: VirtualRadio, peripheral: TestPeripheral, adapter: BumbleAdapter
) -> None:
    with pytest.raises(ValueError, match="outside"):
        radio.set_rssi(peripheral.device, -128)
    async with BleakScanner(backend=BumbleScanner, bumble_adapter=adapter) as scanner:
        seen: list[int] = []
        async for device, ad in scanner.advertisement_data():
            if device.address != peripheral.address:
                continue
            seen.append(ad.rssi)
            if len(seen) == 1:
                radio.set_rssi(peripheral.device, -88)
            elif ad.rssi == -88:
                break
    assert seen[0] == DEFAULT_RSSI_DBM
    assert set(seen) <= {DEFAULT_RSSI_DBM, -88}


async def test_drop_link_without_connections_is_a_no_op(
    radio: VirtualRadio, peripheral: TestPeripheral
) -> None:
    assert await radio.drop_link(peripheral.device) == 0
    assert radio.is_in_range(peripheral.device)
    await radio.set_in_range(peripheral.device, False)
    await radio.set_in_range(peripheral.device, False)
    assert not radio.is_in_range(peripheral.device)
    await radio.set_in_range(peripheral.device, True)
    assert radio.is_in_range(peripheral.device)


async def test_remove_host_detaches_it(radio: VirtualRadio, peripheral: TestPeripheral) -> None:
    await radio.remove_host(peripheral.device)
    await radio.remove_host(peripheral.device)  # idempotent
    assert radio.devices == ()
    with pytest.raises(ValueError, match="not a host"):
        radio.is_in_range(peripheral.device)
    again = await radio.add_host(address=peripheral.address)  # the address is free again
    assert radio.devices == (again,)


async def test_adapter_closes_cleanly_with_a_scan_running(
    peripheral: TestPeripheral, make_adapter: AdapterFactory
) -> None:
    found = asyncio.Event()
    async with make_adapter() as adapter:
        scanner = BleakScanner(
            lambda _d, _a: found.set(), backend=BumbleScanner, bumble_adapter=adapter
        )
        await scanner.start()
        await found.wait()
    with pytest.raises(BleakError, match="not open"):
        _ = adapter.device
    await scanner.stop()  # after the adapter closed: nothing left to stop


async def test_active_scan_delivers_the_scan_response(
    radio: VirtualRadio, adapter: BumbleAdapter
) -> None:
    from bumble.core import AdvertisingData

    host = await radio.add_host(address="C0:00:00:00:AA:01")
    advertising = bytes(
        AdvertisingData(
            [(AdvertisingData.FLAGS, b"\x06"), (AdvertisingData.SHORTENED_LOCAL_NAME, b"long")]
        )
    )
    scan_response = bytes(
        AdvertisingData([(AdvertisingData.COMPLETE_LOCAL_NAME, b"long name in the scan response")])
    )
    await host.start_advertising(
        advertising_data=advertising, scan_response_data=scan_response, auto_restart=True
    )
    async with BleakScanner(backend=BumbleScanner, bumble_adapter=adapter) as scanner:
        async for device, ad in scanner.advertisement_data():
            if device.address == "C0:00:00:00:AA:01" and ad.local_name != "long":
                break
    assert ad.local_name == "long name in the scan response"
