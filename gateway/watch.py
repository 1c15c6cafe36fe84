"""Stream several devices at once and keep per-device tallies (``biogw sim``, ``stream``).

One task per device under one TaskGroup (tasks named ``ble[<key>].stream``), each
running a ``DeviceStream`` and handing frames to a sink. A device that fails is logged
and counted; the others go on. No rendering here: the CLI draws the tallies.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bleak.exc import BleakError

from devices.errors import BiogwError, ProfileError
from devices.frame import Frame
from gateway.ble.link import BleLink
from gateway.ble.scan import Sighting, provisional_device_key
from gateway.ble.stream import DeviceStream, StreamCounters

logger = logging.getLogger(__name__)

FrameSink = Callable[[Frame], None]


@dataclass(slots=True)
class DeviceTally:
    """Live figures for one device."""

    key: str
    name: str
    model: str
    state: str = "connecting"
    counters: StreamCounters = field(default_factory=StreamCounters)
    samples_by_stream: dict[str, int] = field(default_factory=dict)
    started_s: float = field(default_factory=time.monotonic)

    def record(self, frame: Frame) -> None:
        stream = frame.stream.value
        self.samples_by_stream[stream] = self.samples_by_stream.get(stream, 0) + frame.n_samples


async def _stream_one(
    link: BleLink, sighting: Sighting, tally: DeviceTally, sink: FrameSink | None
) -> None:
    assert sighting.profile is not None
    try:
        client = link.client(sighting.device)
        async with DeviceStream(client, sighting.profile, device_key=tally.key) as stream:
            tally.counters = stream.counters
            tally.state = "streaming"
            tally.started_s = time.monotonic()
            async for frame in stream.frames():
                tally.record(frame)
                if sink is not None:
                    sink(frame)
    except ProfileError as exc:
        tally.state = f"failed: {exc.reason}"
        logger.warning("device %s stopped: %s", tally.key, exc.reason)
    except (BleakError, BiogwError, TimeoutError) as exc:
        tally.state = f"failed: {type(exc).__name__}"
        logger.warning("device %s stopped: %s", tally.key, type(exc).__name__)


async def watch(
    link: BleLink,
    sightings: Sequence[Sighting],
    *,
    duration_s: float | None,
    tallies: list[DeviceTally],
    sink: FrameSink | None = None,
) -> None:
    """Stream every recognised device in ``sightings`` until ``duration_s`` elapses (or
    forever); ``tallies`` is filled in as devices start, for a display to read."""

    async def run_all() -> None:
        async with asyncio.TaskGroup() as group:
            for sighting in sightings:
                if sighting.profile is None:
                    continue
                key = provisional_device_key(sighting.address, salt=link.key_salt)
                tally = DeviceTally(key=key, name=sighting.name or "?", model=sighting.model)
                tallies.append(tally)
                group.create_task(
                    _stream_one(link, sighting, tally, sink), name=f"ble[{key}].stream"
                )

    if duration_s is None:
        await run_all()
        return
    deadline = asyncio.timeout(duration_s)
    try:
        async with deadline:
            await run_all()
    except TimeoutError:
        if not deadline.expired():
            raise
