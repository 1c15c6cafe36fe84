"""Replay mode end to end: a simulated garment streams a real MIT-BIH recording as its
ECG over the virtual link, and the gateway decodes exactly the recording's samples (as
resampled to the garment's source rate, decimated to 250 Hz and quantised to 1 µV)."""

from __future__ import annotations

from contextlib import AsyncExitStack

import numpy as np
import pytest
from bleak import BleakClient

from devices.frame import StreamKind
from devices.garment.codec import quantize
from devices.garment.profile import GARMENT_PROFILE
from devices.garment.spec import GarmentStream
from devices.sim.garment import SimulatedGarment
from devices.sim.garment_sources import GarmentSources
from devices.sim.radio import VirtualRadio
from devices.sim.sentlog import Outcome, SentLog
from devices.sim.signals.replay import WfdbReplay
from gateway.ble.bumble_backend import BumbleAdapter, BumbleClient
from gateway.ble.stream import DeviceStream
from tests.shared_data import MITDB, requires_mitdb

SECONDS = 8.0


@requires_mitdb
@pytest.mark.timeout(60)
async def test_garment_replays_record_100_sample_for_sample() -> None:
    record = MITDB / "100"
    log = SentLog(max_frames=None)
    sources = GarmentSources.synthetic(1).with_ecg_replay(record)
    async with AsyncExitStack() as stack:
        radio = await stack.enter_async_context(VirtualRadio())
        await stack.enter_async_context(
            SimulatedGarment(radio, address="D0:00:00:00:01:00", sources=sources, log=log, speed=4)
        )
        adapter = await stack.enter_async_context(BumbleAdapter(radio, address="F0:F0:F0:F0:F0:01"))
        client = BleakClient("D0:00:00:00:01:00", backend=BumbleClient, bumble_adapter=adapter)
        stream = await stack.enter_async_context(
            DeviceStream(client, GARMENT_PROFILE, device_key="replay")
        )
        await log.wait_for(
            lambda lg: (
                sum(f.samples.size for f in lg.frames("ecg", outcome=Outcome.SENT)) >= SECONDS * 250
            )
        )
        await stream.stop()
        frames = [f for f in stream.drain() if f.stream is StreamKind.ECG]
    assert frames
    received = np.concatenate([f.samples for f in frames])
    first = round(frames[0].time_ns * 250 / 1e9)  # the stream's first sample index
    at_500 = WfdbReplay(record, fs_hz=500.0).read(2 * (first + received.size))
    expected = quantize(GarmentStream.ECG, at_500[::2][first:])
    np.testing.assert_array_equal(received, expected)
    assert np.ptp(received) > 500  # a real ECG (≈1 mV QRS), not a flat line
