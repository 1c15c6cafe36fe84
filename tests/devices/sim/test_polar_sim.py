"""The simulated Polar H10 over the real bumble stack: advertising like a real strap, the
PMD control point byte for byte against a real H10 capture, ECG + ACC + heart rate
streams decoded by the gateway's decoders equal to what the device logged, RR intervals
from the ECG ground truth, pairing, and the mixed fleet. No mocks; waits are on the sent
log and notification queues.
"""

from __future__ import annotations

import asyncio
import functools

import numpy as np
import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakGATTProtocolErrorCode
from bumble import core, hci
from bumble.device import Peer

from devices.hrs import (
    BODY_SENSOR_LOCATION_UUID,
    HEART_RATE_MEASUREMENT_UUID,
    HEART_RATE_SERVICE_UUID,
    decode_heart_rate_measurement,
    rr_ms_from_units,
    rr_units_from_ms,
)
from devices.polar import (
    PMD_CONTROL_POINT_UUID,
    PMD_DATA_UUID,
    PMD_SERVICE_UUID,
    POLAR_H10_PROFILE,
    PmdSettings,
    PmdSettingType,
    encode_get_settings_request,
    encode_start_request,
    encode_stop_request,
    parse_pmd_frame,
    read_pmd_header,
)
from devices.registry import Advertisement
from devices.sim.fleet import SimulatedFleet
from devices.sim.polar_h10 import SimulatedPolarH10
from devices.sim.radio import VirtualRadio
from devices.sim.sentlog import Outcome, SentLog
from gateway.ble.bumble_backend import (
    BumbleAdapter,
    BumbleGATTError,
    BumbleScanner,
    PairingPolicy,
)
from tests.devices.sim.centrals import client_for

pytestmark = [pytest.mark.timeout(20)]

H10 = "C0:00:00:00:20:01"
EPOCH_NS = 800_000_000_000_000_000  # ns since 2000-01-01: mid 2025
SPEED = 20.0


class PmdCentral:
    """PMD control-point responses in a queue, everything else in arrival order."""

    def __init__(self, client: BleakClient) -> None:
        self.client = client
        self.responses: asyncio.Queue[bytes] = asyncio.Queue()
        self.notifications: list[tuple[str, bytes]] = []

    async def subscribe(self) -> None:
        for sub in POLAR_H10_PROFILE.subscriptions:
            uuid = sub.characteristic
            await self.client.start_notify(uuid, functools.partial(self._on, uuid))

    def _on(self, uuid: str, _char: object, value: bytearray) -> None:
        data = bytes(value)
        if uuid == PMD_CONTROL_POINT_UUID:
            self.responses.put_nowait(data)
        else:
            self.notifications.append((uuid, data))

    async def request(self, payload: bytes) -> bytes:
        await self.client.write_gatt_char(PMD_CONTROL_POINT_UUID, payload, response=True)
        return await self.responses.get()

    def data(self, uuid: str) -> list[bytes]:
        return [d for u, d in self.notifications if u == uuid]


async def test_advertises_like_a_real_h10(radio: VirtualRadio, adapter: BumbleAdapter) -> None:
    async with SimulatedPolarH10(radio, address=H10, device_id="1a2b3c4d") as h10:
        assert h10.name == "Polar H10 1A2B3C4D"
        async with BleakScanner(backend=BumbleScanner, bumble_adapter=adapter) as scanner:
            async for device, advertisement in scanner.advertisement_data():
                if device.address == H10 and PMD_SERVICE_UUID in advertisement.service_uuids:
                    break  # the scan response (PMD) merged with the advertisement
        assert advertisement.local_name == "Polar H10 1A2B3C4D"
        assert HEART_RATE_SERVICE_UUID in advertisement.service_uuids
        found = Advertisement(advertisement.local_name, tuple(advertisement.service_uuids))
        assert POLAR_H10_PROFILE.matches(found)
        async with client_for(h10.address, adapter) as client:
            assert client.mtu_size == 232  # the H10's MTU: 229-byte notifications
            assert client.name == h10.name
            assert await client.read_gatt_char(BODY_SENSOR_LOCATION_UUID) == b"\x01"  # chest


async def test_pmd_control_point_matches_a_real_h10(
    radio: VirtualRadio, adapter: BumbleAdapter
) -> None:
    # Golden bytes captured from a real H10 with gatttool (github.com/phdiethelm/h10_ecg,
    # exploration/gatttool.md): the feature read, the ECG settings, a start without
    # settings and a good ECG start.
    async with (
        SimulatedPolarH10(radio, address=H10, speed=SPEED) as h10,
        client_for(h10.address, adapter) as client,
    ):
        features = await client.read_gatt_char(PMD_CONTROL_POINT_UUID)
        assert bytes(features) == bytes.fromhex("0f05") + bytes(15)
        central = PmdCentral(client)
        await central.subscribe()
        ecg_settings = await central.request(encode_get_settings_request("ecg"))
        assert ecg_settings == bytes.fromhex("f0 01 00 00 00 00 01 82 00 01 01 0e 00")
        acc_settings = await central.request(encode_get_settings_request("acc"))
        assert acc_settings == bytes.fromhex(
            "f0 01 02 00 00 00 04 19 00 32 00 64 00 c8 00 01 01 10 00 02 03 02 00 04 00 08 00"
        )
        assert await central.request(bytes.fromhex("0200")) == bytes.fromhex("f0 02 00 05 00")
        start_ecg, _ = POLAR_H10_PROFILE.start_commands
        assert start_ecg.data == bytes.fromhex("02 00 00 01 82 00 01 01 0e 00")
        assert await central.request(start_ecg.data) == bytes.fromhex("f0 02 00 00 00 00")
        assert await central.request(start_ecg.data) == bytes.fromhex("f0 02 00 06 00")  # running
        wrong_rate = PmdSettings.of(
            {
                PmdSettingType.SAMPLE_RATE: (52,),
                PmdSettingType.RESOLUTION: (16,),
                PmdSettingType.RANGE: (8,),
            }
        )
        assert await central.request(encode_start_request("acc", wrong_rate)) == (
            bytes.fromhex("f0 02 02 08 00")
        )
        assert await central.request(encode_get_settings_request("ppg")) == (
            bytes.fromhex("f0 01 01 02 00")
        )
        assert await central.request(bytes.fromhex("0402")) == bytes.fromhex("f0 04 02 01 00")
        assert await central.request(bytes.fromhex("ff")) == bytes.fromhex("f0 ff 00 01 00")
        assert await central.request(encode_stop_request("ecg")) == bytes.fromhex("f0 03 00 00 00")
        assert h10.running_streams == ()


async def test_streams_ecg_acc_and_heart_rate_exactly_as_logged(
    radio: VirtualRadio, adapter: BumbleAdapter
) -> None:
    log = SentLog()
    async with (
        SimulatedPolarH10(
            radio, address=H10, seed=11, speed=SPEED, log=log, epoch_ns=EPOCH_NS
        ) as h10,
        client_for(h10.address, adapter) as client,
    ):
        central = PmdCentral(client)
        await central.subscribe()
        for (
            command
        ) in POLAR_H10_PROFILE.start_commands:  # back to back, as DeviceStream writes them
            await client.write_gatt_char(command.characteristic, command.data, response=True)
        assert [await central.responses.get() for _ in range(2)] == [
            bytes.fromhex("f0 02 00 00 00 00"),
            bytes.fromhex("f0 02 02 00 00 00"),
        ]
        await log.wait_for(
            lambda log: log.count("hr", outcome=Outcome.SENT) >= 4 and log.count("ecg") >= 6
        )
        for command in POLAR_H10_PROFILE.stop_commands:
            assert (await central.request(command.data))[3] == 0
        # HR has no stop command: unsubscribe, so nothing is sent into the disconnect (the
        # CCCD write's response follows every notification sent before it).
        await client.stop_notify(HEART_RATE_MEASUREMENT_UUID)
        beats_s = h10.sources.beats()

    for stream, rate, n, size in (("ecg", 130, 73, 229), ("accel", 200, 36, 226)):
        frames = central.data(PMD_DATA_UUID)
        ours = [d for d in frames if read_pmd_header(d).measurement.label == stream[:3]]
        sent = log.frames(stream)
        assert len(ours) == len(sent) >= 6
        previous = 0
        for data, entry in zip(ours, sent, strict=True):
            assert entry.outcome is Outcome.SENT
            assert data == entry.data
            assert len(data) == size
            frame = parse_pmd_frame(data, sample_rate_hz=rate, previous_timestamp_ns=previous)
            assert np.array_equal(frame.samples, entry.samples)
            assert frame.samples.shape[0] == n
            assert frame.timestamp_ns == entry.device_time_ns
            assert frame.timestamp_ns > EPOCH_NS
            if previous:
                step = np.diff(frame.sample_timestamps_ns)
                assert np.all(np.abs(step - 1e9 / rate) <= 1)
            previous = frame.timestamp_ns

    measurements = [
        decode_heart_rate_measurement(d) for d in central.data(HEART_RATE_MEASUREMENT_UUID)
    ]
    sent_hr = log.frames("hr", outcome=Outcome.SENT)
    assert len(measurements) == len(sent_hr) >= 4
    for measurement, entry in zip(measurements, sent_hr, strict=True):
        assert measurement.heart_rate_bpm == entry.samples[0]
        assert measurement.rr_intervals_ms == entry.rr_intervals_ms
        assert measurement.sensor_contact is True
    reported = [rr for m in measurements for rr in m.rr_intervals_ms]
    truth_rr = [rr_ms_from_units(rr_units_from_ms(rr)) for rr in 1000.0 * np.diff(beats_s)]
    assert len(reported) >= 3
    start = truth_rr.index(reported[0])
    assert reported == truth_rr[start : start + len(reported)]  # every beat, once, in order


async def test_require_bonding_and_passkey_pairing(
    radio: VirtualRadio, adapter: BumbleAdapter
) -> None:
    async def passkey_for(_address: str) -> int:
        return 246_810

    policy = PairingPolicy(io_capability="keyboard_only", passkey_provider=passkey_for)
    async with (
        SimulatedPolarH10(radio, address=H10, require_bonding=True, passkey=246_810) as h10,
        BumbleAdapter(radio, address="C0:00:00:00:00:09", pairing=policy) as keyboard,
        client_for(h10.address, keyboard) as client,
    ):
        with pytest.raises(BumbleGATTError) as refused:
            await client.read_gatt_char(PMD_CONTROL_POINT_UUID)
        assert refused.value.code == BleakGATTProtocolErrorCode.INSUFFICIENT_ENCRYPTION
        with pytest.raises(BumbleGATTError):
            await client.start_notify(HEART_RATE_MEASUREMENT_UUID, lambda _c, _d: None)
        await client.pair()
        assert (await client.read_gatt_char(PMD_CONTROL_POINT_UUID))[:2] == b"\x0f\x05"
        await client.start_notify(HEART_RATE_MEASUREMENT_UUID, lambda _c, _d: None)
        bond = await keyboard.bond(hci.Address(h10.address))
    assert bond is not None
    assert bond.ltk is not None
    assert bond.ltk.authenticated


async def test_fleet_starts_distinct_devices(radio: VirtualRadio, adapter: BumbleAdapter) -> None:
    async with SimulatedFleet(radio, polar=2, garment=3, seed=5, speed=SPEED) as fleet:
        members = fleet.devices
        assert [m.model for m in members].count("polar_h10") == 2
        assert [m.model for m in members].count("garment") == 3
        assert len({m.address for m in members}) == len({m.name for m in members}) == 5
        seen: set[str] = set()
        async with BleakScanner(backend=BumbleScanner, bumble_adapter=adapter) as scanner:
            async for device, _advertisement in scanner.advertisement_data():
                seen.add(device.address)
                if seen >= {m.address for m in members}:
                    break
        polar = next(m for m in members if m.model == "polar_h10")
        async with client_for(polar.address, adapter) as client:
            assert client.name == polar.name


async def test_pmd_needs_the_h10_mtu(radio: VirtualRadio) -> None:
    # A raw bumble central that never exchanges the MTU (23): frames cannot fit.
    async with SimulatedPolarH10(radio, address=H10) as h10:
        central = await radio.add_host(address="C0:00:00:00:00:07")
        connection = await central.connect(
            hci.Address(h10.address, hci.Address.RANDOM_DEVICE_ADDRESS)
        )
        peer = Peer(connection)
        await peer.discover_all()  # type: ignore[no-untyped-call]  # bumble leaves it unannotated
        (control,) = peer.get_characteristics_by_uuid(core.UUID(PMD_CONTROL_POINT_UUID))
        responses: asyncio.Queue[bytes] = asyncio.Queue()
        await peer.subscribe(control, responses.put_nowait, prefer_notify=False)
        start_ecg, _ = POLAR_H10_PROFILE.start_commands
        await peer.write_value(control, start_ecg.data, with_response=True)
        assert await responses.get() == bytes.fromhex("f0 02 00 0a 00")  # INVALID_MTU
        await connection.disconnect()
        assert h10.running_streams == ()
