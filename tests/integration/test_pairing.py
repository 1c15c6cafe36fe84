"""Pairing end to end on the virtual link: a simulated garment that requires bonding
refuses its sensor characteristics before pairing, serves them after, and the bond
survives reconnection (the link is encrypted with the stored keys, no second pairing),
across a restart of the gateway's adapter too when bonds are kept on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
from bleak import BleakClient
from bumble.device import Connection

from devices.garment.control import decode_features
from devices.garment.profile import GARMENT_PROFILE
from devices.garment.spec import FEATURES_UUID
from devices.sim.garment import SimulatedGarment
from devices.sim.radio import VirtualRadio
from gateway.ble.bumble_backend import BumbleAdapter, BumbleClient, BumbleGATTError
from gateway.ble.stream import DeviceStream

GARMENT = "D0:00:00:00:00:42"
GATEWAY = "F0:F0:F0:F0:F0:42"
INSUFFICIENT = {0x05, 0x0F}  # ATT insufficient authentication / encryption


def _count_pairings(garment: SimulatedGarment) -> list[object]:
    pairings: list[object] = []

    def on_connection(connection: Connection) -> None:
        connection.on(Connection.EVENT_PAIRING, pairings.append)

    garment.device.on("connection", on_connection)
    return pairings


def _client(adapter: BumbleAdapter) -> BleakClient:
    return BleakClient(GARMENT, backend=BumbleClient, bumble_adapter=adapter)


@pytest.mark.timeout(60)
async def test_bonding_required_then_bond_survives_reconnection(tmp_path: Path) -> None:
    async with (
        VirtualRadio() as radio,
        SimulatedGarment(radio, address=GARMENT, seed=3, require_bonding=True) as garment,
    ):
        pairings = _count_pairings(garment)
        async with BumbleAdapter(radio, address=GATEWAY, key_dir=tmp_path) as adapter:
            async with _client(adapter) as client:
                with pytest.raises(BumbleGATTError) as refused:
                    await client.read_gatt_char(FEATURES_UUID)
                assert refused.value.att_error in INSUFFICIENT
                await client.pair()
                features = decode_features(bytes(await client.read_gatt_char(FEATURES_UUID)))
                assert features.boot_id == garment.boot_id
            # Reconnect: no pair() call, the stored bond encrypts the link.
            async with _client(adapter) as client:
                assert decode_features(bytes(await client.read_gatt_char(FEATURES_UUID)))
            # And it streams: subscriptions and start commands need the encrypted link.
            async with DeviceStream(_client(adapter), GARMENT_PROFILE, device_key="k") as stream:
                async for frame in stream.frames():
                    if frame.n_samples:
                        break
        # A restarted adapter with the same key directory still holds the bond.
        async with (
            BumbleAdapter(radio, address=GATEWAY, key_dir=tmp_path) as adapter,
            _client(adapter) as client,
        ):
            assert decode_features(bytes(await client.read_gatt_char(FEATURES_UUID)))
        assert len(pairings) == 1


@pytest.mark.timeout(60)
async def test_without_the_bond_access_is_refused_again(tmp_path: Path) -> None:
    async with (
        VirtualRadio() as radio,
        SimulatedGarment(radio, address=GARMENT, seed=4, require_bonding=True),
        BumbleAdapter(radio, address=GATEWAY, key_dir=tmp_path) as adapter,
    ):
        async with _client(adapter) as client:
            await client.pair()
            await client.unpair()
        async with _client(adapter) as client:
            with pytest.raises(BumbleGATTError) as refused:
                await client.read_gatt_char(FEATURES_UUID)
            assert refused.value.att_error in INSUFFICIENT
