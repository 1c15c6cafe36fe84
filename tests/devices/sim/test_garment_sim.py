"""The simulated garment over the real bumble stack: advertising, discovery, the garment
control point, streaming (what the gateway decodes equals what the device logged, sample
for sample), pairing requirements, pacing and the battery. The central is the gateway's
bleak backend on bumble; no mocks. Waits are on the sent log and notification queues.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time

import numpy as np
import pytest
from bleak import BleakScanner
from bleak.exc import BleakGATTProtocolErrorCode
from bumble import core, hci
from bumble.device import Peer

from devices.garment.codec import decode_data_frame, samples_per_frame
from devices.garment.control import (
    StreamSettings,
    decode_control_response,
    decode_features,
    decode_status,
    encode_get_config_request,
    encode_get_time_request,
    encode_set_config_request,
    encode_start_request,
    encode_stop_request,
)
from devices.garment.profile import GARMENT_PROFILE
from devices.garment.spec import (
    CONTROL_POINT_UUID,
    DATA_CHARACTERISTIC_UUID,
    DEFAULT_RATES_HZ,
    FEATURES_UUID,
    GARMENT_SERVICE_UUID,
    STATUS_UUID,
    STREAM_SPECS,
    FrameFlags,
    GarmentStream,
    SampleEncoding,
    StatusFlags,
)
from devices.info import (
    BATTERY_LEVEL_UUID,
    MANUFACTURER_NAME_UUID,
    SERIAL_NUMBER_UUID,
    decode_battery_level,
    decode_utf8_string,
)
from devices.registry import Advertisement
from devices.sim.garment import SimulatedGarment
from devices.sim.radio import VirtualRadio
from devices.sim.sentlog import Outcome, SentLog
from gateway.ble.bumble_backend import BumbleAdapter, BumbleGATTError, BumbleScanner
from tests.devices.sim.centrals import GarmentCentral, client_for

pytestmark = [pytest.mark.timeout(20)]

GARMENT = "C0:00:00:00:10:2B"
SPEED = 20.0


def _sent_at_least(stream: str, count: int, log: SentLog) -> bool:
    return log.count(stream) >= count


async def test_streams_all_four_streams_exactly_as_logged(
    radio: VirtualRadio, adapter: BumbleAdapter
) -> None:
    log = SentLog()
    async with (
        SimulatedGarment(radio, address=GARMENT, seed=7, speed=SPEED, log=log) as garment,
        client_for(garment.address, adapter) as client,
    ):
        central = GarmentCentral(client)
        await central.subscribe()
        (start,) = GARMENT_PROFILE.start_commands
        assert await central.request(start.data) == bytes.fromhex("800101")
        await log.wait_for(lambda log: log.count("temp") >= 4)
        assert await central.request(encode_stop_request()) == bytes.fromhex("800201")
        assert garment.running_streams == ()

    received = central.frames()
    for stream, fs_hz in DEFAULT_RATES_HZ.items():
        name = STREAM_SPECS[stream].kind.value
        got = [f for f in received if f.stream is stream]
        sent = log.frames(name)
        assert sent
        assert all(entry.outcome is Outcome.SENT for entry in sent)
        assert [f.sequence for f in got] == [entry.sequence for entry in sent]
        assert [f.sequence for f in got] == list(range(len(got)))
        n = samples_per_frame(stream, fs_hz)
        period_us = round(1e6 / fs_hz)
        for frame, entry in zip(got, sent, strict=True):
            assert np.array_equal(frame.samples, entry.samples)
            assert frame.device_time_ns == entry.device_time_ns
            assert frame.fs_hz == entry.fs_hz == fs_hz
            assert frame.n_samples == n
            assert len(entry.data) == 18 + n * 2 * STREAM_SPECS[stream].n_channels
        starts = [f.device_time_us for f in got]
        assert all(b - a == n * period_us for a, b in itertools.pairwise(starts))
    ecg = [f for f in received if f.stream is GarmentStream.ECG]
    assert all(f.flags == FrameFlags.CONTACT_SUPPORTED | FrameFlags.SKIN_CONTACT for f in ecg)
    statuses = [decode_status(s) for s in central.statuses]
    assert statuses[0].streaming == tuple(DEFAULT_RATES_HZ)
    assert statuses[-1].streaming == ()


async def test_ground_truth_is_on_the_device_timeline(
    radio: VirtualRadio, adapter: BumbleAdapter
) -> None:
    log = SentLog()
    async with (
        SimulatedGarment(radio, address=GARMENT, seed=3, speed=SPEED, log=log) as garment,
        client_for(garment.address, adapter) as client,
    ):
        central = GarmentCentral(client)
        await central.subscribe()
        await central.request(encode_start_request({GarmentStream.ECG: 250.0}))
        await log.wait_for(lambda log: log.count("ecg") >= 12)
        await central.request(encode_stop_request())
        peaks_s = garment.sources.ecg.truth().r_peak_times_s
    frames = central.frames()
    times_s = np.concatenate(
        [f.device_time_us / 1e6 + np.arange(f.n_samples) / 250.0 for f in frames]
    )
    ecg_uv = np.concatenate([f.samples for f in frames])
    inside = peaks_s[(peaks_s > times_s[0] + 0.1) & (peaks_s < times_s[-1] - 0.1)]
    assert len(inside) >= 3
    for peak in inside:
        window = np.abs(times_s - peak) <= 0.012
        assert ecg_uv[window].max() > 600.0  # the R wave (1 mV) is where the truth says


async def test_advertises_the_garment_service_and_serves_discovery(
    radio: VirtualRadio, adapter: BumbleAdapter
) -> None:
    async with SimulatedGarment(radio, address=GARMENT, seed=1, battery_percent=77) as garment:
        assert garment.name == "biogw garment 102B"
        names: list[str | None] = []
        async with BleakScanner(
            backend=BumbleScanner, bumble_adapter=adapter, service_uuids=[GARMENT_SERVICE_UUID]
        ) as scanner:
            async for device, advertisement in scanner.advertisement_data():
                names.append(advertisement.local_name)
                if device.address == GARMENT and advertisement.local_name == garment.name:
                    break
        # Flags + the 128-bit UUID leave room for a shortened name ("biogw ga"); the
        # complete name comes in the scan response (and the GAP Device Name).
        assert set(names) <= {"biogw ga", garment.name}
        assert GARMENT_PROFILE.matches(
            Advertisement(advertisement.local_name, tuple(advertisement.service_uuids))
        )
        async with client_for(garment.address, adapter) as client:
            assert client.name == garment.name
            assert client.mtu_size == 247
            features = decode_features(bytes(await client.read_gatt_char(FEATURES_UUID)))
            assert features.boot_id == garment.boot_id
            assert features.for_stream(GarmentStream.GYRO) is None
            ecg = features.for_stream(GarmentStream.ECG)
            assert ecg is not None
            assert ecg.rates_hz == (125.0, 250.0, 500.0)
            battery = await client.read_gatt_char(BATTERY_LEVEL_UUID)
            assert decode_battery_level(bytes(battery)) == 77
            maker = await client.read_gatt_char(MANUFACTURER_NAME_UUID)
            assert decode_utf8_string(bytes(maker), "dis") == "biogw"
            serial = await client.read_gatt_char(SERIAL_NUMBER_UUID)
            assert decode_utf8_string(bytes(serial), "dis") == "SIM-C0000000102B"


async def test_control_point_answers_every_write_per_the_spec(
    radio: VirtualRadio, adapter: BumbleAdapter
) -> None:
    log = SentLog()
    async with (
        SimulatedGarment(radio, address=GARMENT, seed=2, speed=SPEED, log=log) as garment,
        client_for(garment.address, adapter) as client,
    ):
        with pytest.raises(BumbleGATTError) as caught:  # indications not enabled yet
            await client.write_gatt_char(CONTROL_POINT_UUID, b"\x04", response=True)
        assert caught.value.att_error == 0xFD
        central = GarmentCentral(client)
        await central.subscribe()
        assert await central.request(b"") == bytes.fromhex("80000300")
        assert await central.request(b"\x7f") == bytes.fromhex("807f0200")
        assert await central.request(bytes.fromhex("010506")) == bytes.fromhex("80010405")
        assert await central.request(bytes.fromhex("01010b")) == bytes.fromhex("80010501")
        first = decode_control_response(await central.request(encode_get_time_request()))
        assert first.boot_id == garment.boot_id
        assert await central.request(encode_start_request({GarmentStream.ECG: 250.0})) == (
            bytes.fromhex("800101")
        )
        int24 = encode_set_config_request({GarmentStream.ECG: StreamSettings(SampleEncoding.INT24)})
        assert await central.request(int24) == bytes.fromhex("80030901")
        config = decode_control_response(await central.request(encode_get_config_request()))
        ecg_config = config.config[0]
        assert (ecg_config.stream, ecg_config.running, ecg_config.fs_hz) == (
            GarmentStream.ECG,
            True,
            250.0,
        )
        await central.request(encode_stop_request([GarmentStream.ECG]))
        assert await central.request(int24) == bytes.fromhex("800301")
        assert await central.request(encode_start_request({GarmentStream.ECG: 500.0})) == (
            bytes.fromhex("800101")
        )
        await log.wait_for(lambda log: log.count("ecg") >= 3)
        await central.request(encode_stop_request())
        second = decode_control_response(await central.request(encode_get_time_request()))
        assert second.device_time_us is not None
        assert first.device_time_us is not None
        assert second.device_time_us > first.device_time_us
    int24_frames = [f for f in central.frames() if f.encoding is SampleEncoding.INT24]
    assert int24_frames
    assert all(f.n_samples == 75 and f.fs_hz == 500.0 for f in int24_frames)
    sequences = [f.sequence for f in central.frames()]
    assert sequences == list(range(len(sequences)))  # counting on across STOP/START


async def test_sequences_continue_across_reconnects(
    radio: VirtualRadio, adapter: BumbleAdapter
) -> None:
    log = SentLog()
    start = encode_start_request({GarmentStream.RESP: 25.0})
    async with SimulatedGarment(radio, address=GARMENT, seed=4, speed=SPEED, log=log) as garment:
        sequences: list[int] = []
        for session in range(2):
            async with client_for(garment.address, adapter) as client:
                central = GarmentCentral(client)
                await central.subscribe()
                await central.request(start)
                await log.wait_for(functools.partial(_sent_at_least, "resp", 3 * (session + 1)))
            await garment.wait_connected(False)
            assert garment.running_streams == ()  # the link dropped: every stream stopped
            sequences += [f.sequence for f in central.frames()]
    assert sequences == list(range(len(sequences)))
    assert len(sequences) == log.count("resp", outcome=Outcome.SENT)


async def test_require_bonding_refuses_sensor_access_until_paired(
    radio: VirtualRadio, adapter: BumbleAdapter
) -> None:
    log = SentLog()
    async with (
        SimulatedGarment(
            radio, address=GARMENT, seed=5, speed=SPEED, log=log, require_bonding=True
        ) as garment,
        client_for(garment.address, adapter) as client,
    ):
        with pytest.raises(BumbleGATTError) as read_refused:
            await client.read_gatt_char(FEATURES_UUID)
        assert read_refused.value.code == BleakGATTProtocolErrorCode.INSUFFICIENT_ENCRYPTION
        with pytest.raises(BumbleGATTError) as subscribe_refused:
            await client.start_notify(DATA_CHARACTERISTIC_UUID, lambda _c, _d: None)
        assert subscribe_refused.value.att_error == 0x0F
        with pytest.raises(BumbleGATTError) as write_refused:
            await client.write_gatt_char(CONTROL_POINT_UUID, b"\x05", response=True)
        assert write_refused.value.att_error == 0x0F
        await client.read_gatt_char(SERIAL_NUMBER_UUID)  # Device Information stays open
        await client.pair()
        assert decode_features(bytes(await client.read_gatt_char(FEATURES_UUID))).boot_id == (
            garment.boot_id
        )
        central = GarmentCentral(client)
        await central.subscribe()
        await central.request(encode_start_request({GarmentStream.TEMP: 1.0}))
        await log.wait_for(lambda log: log.count("temp") >= 2)
        await central.request(encode_stop_request())
    assert [f.sequence for f in central.frames()] == [0, 1]


async def test_frames_are_paced_on_the_grid_and_late_frames_catch_up(
    radio: VirtualRadio, adapter: BumbleAdapter
) -> None:
    log = SentLog()
    speed = 10.0
    async with (
        SimulatedGarment(radio, address=GARMENT, seed=6, speed=speed, log=log) as garment,
        client_for(garment.address, adapter) as client,
    ):
        central = GarmentCentral(client)
        await central.subscribe()
        await central.request(encode_start_request({GarmentStream.ECG: 250.0}))
        await log.wait_for(lambda log: log.count("ecg") >= 8)
        # Block the loop, as an overloaded host would: lateness, not synchronisation.
        time.sleep(0.35)  # noqa: ASYNC251
        await log.wait_for(lambda log: log.count("ecg") >= 24)
        await central.request(encode_stop_request())
        sent = log.frames("ecg")
        due = [
            garment.clock.time_at(e.device_time_ns + 100 * 4_000_000)  # end of 100 samples
            for e in sent
            if e.device_time_ns is not None
        ]
    lateness = [entry.loop_time_s - at for entry, at in zip(sent, due, strict=True)]
    assert min(lateness) >= -0.001  # never early (asyncio may fire a timer 0.5 ms early)
    assert max(lateness) >= 0.25  # the frames due while the loop was blocked...
    assert [f.sequence for f in central.frames()] == list(range(len(sent)))  # ...all sent
    assert max(lateness[-3:]) < 0.1  # and the schedule recovered: no accumulated delay
    assert garment.pacing.max_lateness_s >= 0.25
    assert np.allclose(np.diff(due), 0.4 / speed, rtol=0, atol=1e-9)  # 100 samples, 250 Hz


async def test_battery_drains_and_notifies_low_battery(
    radio: VirtualRadio, adapter: BumbleAdapter
) -> None:
    async with (
        SimulatedGarment(
            radio,
            address=GARMENT,
            speed=SPEED,
            battery_percent=20,
            drain_percent_per_hour=1800.0,  # one percent per two device seconds
        ) as garment,
        client_for(garment.address, adapter) as client,
    ):
        levels: asyncio.Queue[int] = asyncio.Queue()
        central = GarmentCentral(client)
        await central.subscribe()
        await client.start_notify(
            BATTERY_LEVEL_UUID, lambda _c, d: levels.put_nowait(decode_battery_level(bytes(d)))
        )
        seen = [await levels.get()]
        while seen[-1] > 14:
            seen.append(await levels.get())
        assert np.all(np.diff(seen) == -1)
        status = decode_status(bytes(await client.read_gatt_char(STATUS_UUID)))
        assert status.flags & StatusFlags.BATTERY_LOW
        assert garment.battery_percent <= 14
    notified = [decode_status(s) for s in central.statuses]
    assert [bool(s.flags & StatusFlags.BATTERY_LOW) for s in notified] == [True]


async def test_start_is_refused_for_a_stream_this_garment_lacks_unless_it_has_one(
    radio: VirtualRadio, adapter: BumbleAdapter
) -> None:
    log = SentLog()
    async with (
        SimulatedGarment(radio, address=GARMENT, speed=SPEED, gyro=True, log=log) as garment,
        client_for(garment.address, adapter) as client,
    ):
        central = GarmentCentral(client)
        await central.subscribe()
        assert await central.request(encode_start_request({GarmentStream.GYRO: 100.0})) == (
            bytes.fromhex("800101")
        )
        await log.wait_for(lambda log: log.count("gyro") >= 2)
        await central.request(encode_stop_request())
        assert garment.features.for_stream(GarmentStream.GYRO) is not None
    gyro = central.frames()
    assert [f.stream for f in gyro] == [GarmentStream.GYRO] * len(gyro)
    assert all(f.samples.shape == (37, 3) for f in gyro)
    assert np.array_equal(gyro[0].samples, log.frames("gyro")[0].samples)


async def test_at_the_default_mtu_frames_shrink_and_motion_does_not_fit(
    radio: VirtualRadio,
) -> None:
    # A raw bumble central that never exchanges the MTU: 23, so 20-byte notifications.
    log = SentLog()
    async with SimulatedGarment(radio, address=GARMENT, seed=8, log=log) as garment:
        central = await radio.add_host(address="C0:00:00:00:00:07")
        connection = await central.connect(
            hci.Address(garment.address, hci.Address.RANDOM_DEVICE_ADDRESS)
        )
        peer = Peer(connection)
        await peer.discover_all()  # type: ignore[no-untyped-call]  # bumble leaves it unannotated
        (control,) = peer.get_characteristics_by_uuid(core.UUID(CONTROL_POINT_UUID))
        (data,) = peer.get_characteristics_by_uuid(core.UUID(DATA_CHARACTERISTIC_UUID))
        responses: asyncio.Queue[bytes] = asyncio.Queue()
        frames: list[bytes] = []
        await peer.subscribe(control, responses.put_nowait, prefer_notify=False)
        await peer.subscribe(data, frames.append)
        accel = encode_start_request({GarmentStream.ACCEL: 50.0})
        await peer.write_value(control, accel, with_response=True)
        assert await responses.get() == bytes.fromhex("80010a04")  # MTU_TOO_SMALL, accel
        ecg = encode_start_request({GarmentStream.ECG: 250.0})
        await peer.write_value(control, ecg, with_response=True)
        assert await responses.get() == bytes.fromhex("800101")
        await log.wait_for(lambda log: log.count("ecg") >= 5)
        await peer.write_value(control, encode_stop_request(), with_response=True)
        await responses.get()
        await connection.disconnect()
    assert {len(f) for f in frames} == {20}  # one int16 sample per frame
    assert [decode_data_frame(f).sequence for f in frames] == list(range(len(frames)))
