"""The connect timeout bounds the whole set-up, not just the link: a peer that accepts
the connection and then never answers ATT requests fails the connect in time.

A real bumble peripheral can't be told to go silent mid-protocol, so this test silences
its GATT server (drops every ATT PDU it receives): the one fake in this suite, standing
in for a peer firmware that hangs.
"""

from __future__ import annotations

import pytest
from bleak import BleakClient

from gateway.ble.bumble_backend import BumbleAdapter, BumbleClient, BumbleLinkError
from tests.gateway.ble.conftest import TestPeripheral


@pytest.mark.timeout(15)  # a hang (the bug) fails here rather than at the global limit
async def test_a_peer_silent_after_connecting_times_out_the_connect(
    peripheral: TestPeripheral, adapter: BumbleAdapter
) -> None:
    peripheral.device.gatt_server.on_gatt_pdu = lambda *_: None  # type: ignore[method-assign]
    client = BleakClient(
        peripheral.address, backend=BumbleClient, bumble_adapter=adapter, timeout=1.0
    )
    with pytest.raises(BumbleLinkError, match="timed out"):
        await client.connect()
    assert not client.is_connected
