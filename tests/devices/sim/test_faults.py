"""Faults of the simulated devices do what they say, and the sent log says what was lost:
skipped frames show as a sequence gap of exactly that size, corrupted frames are rejected
by the gateway's decoders, a stall loses frames while sequence numbers run on, drift
moves device time by the ppm, and a dropped link (optionally out of range for a while)
is seen by the central. Real bumble stack on a virtual radio; the clock tests use an
injected time source.
"""

from __future__ import annotations

import asyncio
import functools
import itertools

import numpy as np
import pytest
from bleak import BleakClient
from bleak.exc import BleakDeviceNotFoundError

from devices.errors import FrameDecodeError
from devices.garment.codec import decode_data_frame
from devices.garment.control import encode_start_request, encode_stop_request
from devices.garment.spec import GarmentStream
from devices.polar import PMD_CONTROL_POINT_UUID, POLAR_H10_PROFILE
from devices.sim.clock import DeviceClock
from devices.sim.faults import FaultKind, FaultState, FrameAction
from devices.sim.garment import SimulatedGarment
from devices.sim.polar_h10 import SimulatedPolarH10
from devices.sim.radio import LINK_LOSS_REASON, VirtualRadio
from devices.sim.sentlog import Outcome, SentLog
from gateway.ble.bumble_backend import BumbleAdapter, BumbleClient
from tests.devices.sim.centrals import GarmentCentral, client_for

pytestmark = [pytest.mark.timeout(20)]

GARMENT = "C0:00:00:00:30:01"
H10 = "C0:00:00:00:30:02"
SPEED = 20.0
ECG_START = encode_start_request({GarmentStream.ECG: 250.0, GarmentStream.RESP: 25.0})


# --- pure parts --------------------------------------------------------------------------


def test_device_clock_runs_at_speed_and_drifts_by_the_ppm() -> None:
    now = [100.0]
    clock = DeviceClock(speed=2.0, time=lambda: now[0])
    clock.start()
    now[0] += 10.0
    assert clock.now_ns() == 20_000_000_000
    clock.set_drift_ppm(250.0)
    assert clock.now_ns() == 20_000_000_000  # continuous across the change
    now[0] += 1000.0
    assert clock.now_ns() == 20_000_000_000 + 2000 * (1_000_000_000 + 250_000)
    assert clock.time_at(clock.now_ns()) == pytest.approx(now[0], abs=1e-9)
    clock.set_drift_ppm(-1000.0)
    before = clock.now_ns()
    now[0] += 500.0
    assert clock.now_ns() - before == 1000 * (1_000_000_000 - 1_000_000)


def test_fault_state_stall_beats_skip_beats_corrupt() -> None:
    state = FaultState(("ecg", "resp"))
    state.corrupt(("ecg",), 1)
    state.skip(("ecg",), 2)
    state.stall(state.select(None), until_ns=1000)
    assert state.action("ecg", 999) is FrameAction.STALL
    assert state.action("resp", 999) is FrameAction.STALL
    actions = [state.action("ecg", 1000) for _ in range(4)]
    assert actions == [FrameAction.SKIP, FrameAction.SKIP, FrameAction.CORRUPT, FrameAction.SEND]
    assert state.corrupted_so_far("ecg") == 1
    assert state.action("battery", 0) is FrameAction.SEND
    with pytest.raises(ValueError, match="subset"):
        state.select(["ppg"])


async def test_fault_arguments_are_checked(radio: VirtualRadio) -> None:
    garment = SimulatedGarment(radio, address=GARMENT)
    with pytest.raises(ValueError, match="at least 1"):
        garment.faults.skip(0)
    with pytest.raises(ValueError, match="positive"):
        garment.faults.stall(-1.0)
    with pytest.raises(ValueError, match="ppm"):
        garment.faults.drift(float("nan"))
    with pytest.raises(ValueError, match="out_of_range_s"):
        await garment.faults.drop_link(out_of_range_s=0.0)


# --- on the radio ------------------------------------------------------------------------


async def test_skip_makes_a_sequence_gap_of_exactly_k(
    radio: VirtualRadio, adapter: BumbleAdapter
) -> None:
    log = SentLog()
    async with (
        SimulatedGarment(radio, address=GARMENT, seed=1, speed=SPEED, log=log) as garment,
        client_for(garment.address, adapter) as client,
    ):
        session = GarmentCentral(client)
        await session.start(ECG_START)
        await log.wait_for(lambda log: log.count("ecg") >= 2)
        record = garment.faults.skip(3, streams=["ecg"])
        await log.wait_for(lambda log: log.count("ecg") >= 8)
        await session.request(encode_stop_request())
    assert record.kind is FaultKind.SKIP
    assert log.faults() == [record]
    ecg = session.sequences(GarmentStream.ECG)
    gaps = [b - a for a, b in itertools.pairwise(ecg) if b - a != 1]
    assert gaps == [4]  # three numbers skipped
    skipped = [e.sequence for e in log.frames("ecg", outcome=Outcome.SKIPPED)]
    assert skipped == list(range(ecg[0] + 2, ecg[0] + 5))
    resp = session.sequences(GarmentStream.RESP)
    assert resp == list(range(len(resp)))  # other streams untouched


async def test_corrupted_frames_are_rejected_by_the_decoder(
    radio: VirtualRadio, adapter: BumbleAdapter
) -> None:
    log = SentLog()
    async with (
        SimulatedGarment(radio, address=GARMENT, seed=2, speed=SPEED, log=log) as garment,
        client_for(garment.address, adapter) as client,
    ):
        session = GarmentCentral(client)
        await session.start(ECG_START)
        await log.wait_for(lambda log: log.count("ecg") >= 1)
        garment.faults.corrupt(4, streams=["ecg"])  # one of each corruption kind
        await log.wait_for(lambda log: log.count("ecg", outcome=Outcome.SENT) >= 3)
        await session.request(encode_stop_request())
    corrupted = log.frames("ecg", outcome=Outcome.CORRUPTED)
    assert len(corrupted) == 4
    rejected = []
    for data in session.data:
        try:
            decode_data_frame(data)
        except FrameDecodeError as exc:
            rejected.append((data, exc.reason))
    assert [data for data, _ in rejected] == [entry.data for entry in corrupted]
    reasons = {reason for _, reason in rejected}
    assert reasons == {"length_mismatch", "unsupported_version", "bad_flags", "unknown_stream"}
    ecg = session.sequences(GarmentStream.ECG)
    assert [b - a for a, b in itertools.pairwise(ecg) if b != a + 1] == [5]


async def test_corrupted_polar_frames_are_rejected_by_the_h10_decoder(
    radio: VirtualRadio, adapter: BumbleAdapter
) -> None:
    log = SentLog()
    async with (
        SimulatedPolarH10(radio, address=H10, seed=3, speed=SPEED, log=log) as h10,
        client_for(h10.address, adapter) as client,
    ):
        received: list[tuple[str, bytes]] = []

        def keep(uuid: str, _char: object, data: bytearray) -> None:
            received.append((uuid, bytes(data)))

        for sub in POLAR_H10_PROFILE.subscriptions:
            uuid = sub.characteristic
            await client.start_notify(uuid, functools.partial(keep, uuid))
        for command in POLAR_H10_PROFILE.start_commands:
            await client.write_gatt_char(command.characteristic, command.data, response=True)
        await log.wait_for(lambda log: log.count("ecg") >= 1 and log.count("hr") >= 1)
        h10.faults.corrupt(3)
        await log.wait_for(lambda log: log.count(outcome=Outcome.CORRUPTED) == 9)
        await client.write_gatt_char(PMD_CONTROL_POINT_UUID, bytes.fromhex("0300"), response=True)
    decoder = POLAR_H10_PROFILE.new_decoder("h10")
    rejected = []
    for uuid, data in received:
        if uuid == PMD_CONTROL_POINT_UUID:
            continue
        try:
            decoder.decode(uuid, data, 0)
        except FrameDecodeError:
            rejected.append(data)
    corrupted = {e.data for e in log.frames(outcome=Outcome.CORRUPTED)}
    assert set(rejected) == corrupted
    assert len(rejected) == 9  # three per stream: ECG, ACC and heart rate


async def test_stall_loses_frames_while_sequences_run_on(
    radio: VirtualRadio, adapter: BumbleAdapter
) -> None:
    log = SentLog()
    async with (
        SimulatedGarment(radio, address=GARMENT, seed=4, speed=SPEED, log=log) as garment,
        client_for(garment.address, adapter) as client,
    ):
        session = GarmentCentral(client)
        await session.start(ECG_START)
        await log.wait_for(lambda log: log.count("ecg") >= 2)
        garment.faults.stall(2.0)  # device seconds: five ECG and resp frames

        def resumed(log: SentLog) -> bool:
            return all(
                log.count(s, outcome=Outcome.STALLED) >= 1
                and log.frames(s)[-1].outcome is Outcome.SENT
                for s in ("ecg", "resp")
            )

        await log.wait_for(resumed)
        await session.request(encode_stop_request())
    for stream, name in ((GarmentStream.ECG, "ecg"), (GarmentStream.RESP, "resp")):
        stalled = [
            e.sequence for e in log.frames(name, outcome=Outcome.STALLED) if e.sequence is not None
        ]
        assert len(stalled) >= 4
        received = session.sequences(stream)
        assert sorted(received + stalled) == list(range(len(received) + len(stalled)))
        gaps = [b - a - 1 for a, b in itertools.pairwise(received) if b != a + 1]
        assert gaps == [len(stalled)]


async def test_drift_moves_device_time_by_the_ppm(
    radio: VirtualRadio, adapter: BumbleAdapter
) -> None:
    log = SentLog()
    ppm = 50_000.0  # 5 %: large, so loop jitter cannot hide it
    async with (
        SimulatedGarment(radio, address=GARMENT, seed=5, speed=SPEED, log=log) as garment,
        client_for(garment.address, adapter) as client,
    ):
        session = GarmentCentral(client)
        await session.start(ECG_START)
        await log.wait_for(lambda log: log.count("ecg") >= 1)
        record = garment.faults.drift(ppm)
        await log.wait_for(lambda log: log.count("ecg") >= 25)
        await session.request(encode_stop_request())
    assert record.ppm == ppm
    assert garment.clock.drift_ppm == ppm
    after = [
        e
        for e in log.frames("ecg")
        if e.device_time_ns is not None and e.device_time_ns > record.device_time_ns
    ]
    device_s = np.array([e.device_time_ns for e in after], dtype=np.float64) / 1e9
    loop_s = np.array([e.loop_time_s for e in after])
    slope = np.polyfit(loop_s, device_s, 1)[0] / SPEED
    assert slope == pytest.approx(1 + ppm * 1e-6, abs=0.01)


async def test_link_drop_is_seen_by_the_central_and_streams_stop(
    radio: VirtualRadio, adapter: BumbleAdapter
) -> None:
    log = SentLog()
    disconnected = asyncio.Event()
    async with SimulatedGarment(radio, address=GARMENT, seed=6, speed=SPEED, log=log) as garment:
        client = BleakClient(
            garment.address,
            lambda _c: disconnected.set(),
            backend=BumbleClient,
            bumble_adapter=adapter,
        )
        await client.connect()
        session = GarmentCentral(client)
        await session.start(ECG_START)
        await log.wait_for(lambda log: log.count("ecg") >= 2)
        record = await garment.faults.drop_link()
        await disconnected.wait()
        assert record.kind is FaultKind.LINK_DROP
        assert record.count == 1
        assert client._backend.last_disconnect_reason == LINK_LOSS_REASON  # type: ignore[attr-defined]
        assert garment.running_streams == ()
        sent_before = log.count("ecg")
        async with client_for(garment.address, adapter) as again:  # still advertising
            session = GarmentCentral(again)
            await session.start(ECG_START)
            await log.wait_for(lambda log: log.count("ecg") >= sent_before + 2)
            await session.request(encode_stop_request())
    assert session.sequences(GarmentStream.ECG)[0] == sent_before  # numbers run on


async def test_out_of_range_fails_reconnects_until_back(
    radio: VirtualRadio, adapter: BumbleAdapter
) -> None:
    log = SentLog()
    async with SimulatedGarment(radio, address=GARMENT, seed=7, speed=SPEED, log=log) as garment:
        client = client_for(garment.address, adapter, timeout=0.2)
        await client.connect()
        record = await garment.faults.drop_link(out_of_range_s=40.0)  # 2 s at 20x
        assert record.kind is FaultKind.OUT_OF_RANGE
        assert record.count == 1
        assert not radio.is_in_range(garment.device)
        with pytest.raises(BleakDeviceNotFoundError):
            await client.connect()
        await log.wait_for(lambda log: log.faults()[-1].kind is FaultKind.BACK_IN_RANGE)
        back = log.faults()[-1]
        assert back.device_time_ns - record.device_time_ns >= 40_000_000_000
        await client.connect()
        assert client.is_connected
        await client.disconnect()
