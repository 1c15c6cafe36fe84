"""End to end over the virtual link: simulated garments -> bumble radio -> bleak (bumble
backend) -> DeviceStream -> profile decoders -> Frames, compared sample for sample with
what every simulated device logged as sent.

Two Polar H10 straps and three biogw garments stream at once for 60 s of signal, in real
time, through one gateway adapter. Every stream of both models is checked: nothing lost,
nothing altered, nothing extra.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from contextlib import AsyncExitStack

import numpy as np
import pytest

from devices.frame import Frame, StreamKind, Timebase
from devices.sim.fleet import SimulatedFleet
from devices.sim.radio import VirtualRadio
from devices.sim.sentlog import Outcome, SentFrame, SentLog
from gateway.ble.bumble_backend import BumbleAdapter
from gateway.ble.link import BleLink
from gateway.ble.scan import scan
from gateway.ble.stream import DeviceStream

SIGNAL_S = float(__import__("os").environ.get("E2E_SIGNAL_S", "60"))
GARMENT_STREAMS = {"ecg", "resp", "temp", "accel"}
POLAR_STREAMS = {"ecg", "accel", "hr"}


async def _collect(stream: DeviceStream, sink: list[Frame]) -> None:
    async for frame in stream.frames():
        sink.append(frame)


async def _stream_fleet(
    polar: int, garment: int, *, seconds: float
) -> tuple[dict[str, SentLog], dict[str, list[Frame]], dict[str, str], dict[str, DeviceStream]]:
    logs: dict[str, SentLog] = {}

    def log_for(address: str) -> SentLog:
        logs[address] = SentLog(max_frames=None)
        return logs[address]

    received: dict[str, list[Frame]] = defaultdict(list)
    models: dict[str, str] = {}
    streams: dict[str, DeviceStream] = {}
    async with AsyncExitStack() as stack:
        radio = await stack.enter_async_context(VirtualRadio())
        fleet = await stack.enter_async_context(
            SimulatedFleet(radio, polar=polar, garment=garment, seed=11, log_for=log_for)
        )
        adapter = await stack.enter_async_context(BumbleAdapter(radio, address="F0:F0:F0:F0:F0:01"))
        link = BleLink(kind="virtual", adapter=adapter, fleet=fleet)
        sightings = [s for s in await scan(link, timeout_s=30) if s.profile is not None]
        assert {s.address for s in sightings} == {m.address for m in fleet.devices}
        for s in sightings:
            models[s.address] = s.model
            streams[s.address] = await stack.enter_async_context(
                DeviceStream(link.client(s.device), s.profile, device_key=s.address)  # type: ignore[arg-type]
            )
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(_collect(st, received[a]), name=f"ble[{a}].collect")
                for a, st in streams.items()
            ]
            # Wait on the simulators' own logs, not the wall clock: every device has sent
            # ``seconds`` of ECG signal.
            for address, log in logs.items():
                fs = 130.0 if models[address] == "polar-h10" else 250.0
                await log.wait_for(
                    lambda lg, fs=fs: (
                        sum(f.samples.shape[0] for f in lg.frames("ecg", outcome=Outcome.SENT))
                        >= seconds * fs
                    )
                )
            for task in tasks:
                task.cancel()
        for address, st in streams.items():
            await st.stop()
            for sub in st.profile.subscriptions:
                await st.client.stop_notify(sub.characteristic)
            received[address].extend(st.drain())
    return logs, received, models, streams


def _check_regular(sent: list[SentFrame], got: list[Frame], *, polar: bool) -> None:
    assert len(got) == len(sent), (len(got), len(sent))
    for s, f in zip(sent, got, strict=True):
        assert f.timebase is Timebase.DEVICE
        assert f.fs_hz == s.fs_hz
        np.testing.assert_array_equal(f.samples, s.samples)
        if polar:
            # PMD frames carry the time of their last sample; a Frame keeps its first
            # sample's time and the nominal rate, so the last is rebuilt to within 1 µs.
            assert s.device_time_ns is not None
            assert abs(int(f.sample_times_ns()[-1]) - s.device_time_ns) <= 1_000
        else:
            assert f.time_ns == s.device_time_ns
            assert f.sequence == s.sequence


def _check_heart_rate(sent: list[SentFrame], got: list[Frame]) -> None:
    hr = [f for f in got if f.stream is StreamKind.HR]
    rr = [f for f in got if f.stream is StreamKind.RR]
    assert [float(f.samples[0]) for f in hr] == [float(s.samples[0]) for s in sent]
    sent_rr = [r for s in sent for r in s.rr_intervals_ms]
    assert [float(x) for f in rr for x in f.samples] == sent_rr
    assert len(sent_rr) >= (SIGNAL_S - 3) * 0.6  # at least 36 beats a minute came through


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_five_devices_sixty_seconds_every_sample_arrives_unaltered() -> None:
    logs, received, models, streams = await _stream_fleet(2, 3, seconds=SIGNAL_S)
    assert sorted(models.values()) == ["biogw-garment"] * 3 + ["polar-h10"] * 2
    for address, log in logs.items():
        polar = models[address] == "polar-h10"
        counters = streams[address].counters
        assert counters.decode_errors == 0
        assert counters.dropped_notifications == 0
        assert log.count(outcome=Outcome.SENT) == log.count() - log.count(
            outcome=Outcome.UNSUBSCRIBED
        )
        by_stream: dict[str, list[Frame]] = defaultdict(list)
        for frame in received[address]:
            by_stream[frame.stream.value].append(frame)
        expected = POLAR_STREAMS if polar else GARMENT_STREAMS
        sent_streams = {f.stream for f in log.frames(outcome=Outcome.SENT)}
        assert sent_streams == expected
        for name in expected - {"hr"}:
            sent = log.frames(name, outcome=Outcome.SENT)
            fs = sent[0].fs_hz
            assert fs is not None
            # At least SIGNAL_S of every stream (less the frame still being filled).
            per_frame = sent[0].samples.shape[0]
            assert sum(s.samples.shape[0] for s in sent) >= SIGNAL_S * fs - 2 * per_frame
            _check_regular(sent, by_stream[name], polar=polar)
        if polar:
            _check_heart_rate(log.frames("hr", outcome=Outcome.SENT), received[address])
