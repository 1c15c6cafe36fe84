"""Supervised device sessions on the virtual link: stream, lose the link, reconnect."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import pytest

from devices.profiles import match_profile
from devices.sim.fleet import SimulatedFleet
from devices.sim.radio import VirtualRadio
from gateway.backoff import BackoffPolicy
from gateway.ble.bumble_backend import BumbleAdapter
from gateway.ble.link import BleLink
from gateway.ble.presence import AdvertisementWatcher
from gateway.ble.scan import to_advertisement
from gateway.ble.session import (
    DeviceSession,
    LinkDown,
    LinkEvent,
    Received,
    SessionOptions,
    SessionOutput,
)
from gateway.ble.slots import SlotBudget


class Collect:
    """A SessionSink that keeps everything and wakes waiters."""

    def __init__(self) -> None:
        self.items: list[SessionOutput] = []
        self.changed = asyncio.Event()

    async def put(self, item: SessionOutput) -> None:
        self.items.append(item)
        self.changed.set()

    async def wait(self, predicate: object) -> None:
        assert callable(predicate)
        while not predicate(self.items):
            self.changed.clear()
            await self.changed.wait()

    def links(self, key: str) -> list[LinkEvent]:
        return [i for i in self.items if isinstance(i, LinkEvent) and i.device_key == key]

    def frames(self, key: str) -> int:
        return sum(
            len(i.frames) for i in self.items if isinstance(i, Received) and i.device_key == key
        )


@dataclass
class Rig:
    fleet: SimulatedFleet
    link: BleLink
    watcher: AdvertisementWatcher


@asynccontextmanager
async def rig(garments: int, *, max_connections: int | None = None) -> AsyncIterator[Rig]:
    async with AsyncExitStack() as stack:
        radio = await stack.enter_async_context(VirtualRadio())
        fleet = await stack.enter_async_context(
            SimulatedFleet(radio, polar=0, garment=garments, seed=5)
        )
        kwargs = {} if max_connections is None else {"max_connections": max_connections}
        adapter = await stack.enter_async_context(
            BumbleAdapter(radio, address="F0:F0:F0:F0:F0:02", **kwargs)
        )
        link = BleLink(kind="virtual", adapter=adapter, fleet=fleet)
        watcher = await stack.enter_async_context(AdvertisementWatcher(link))
        yield Rig(fleet, link, watcher)


async def _session(
    r: Rig, address: str, sink: Collect, slots: SlotBudget, **opts: float
) -> DeviceSession:
    heard = await r.watcher.wait_for(address, after_s=float("-inf"))
    profile = match_profile(to_advertisement(heard.data))
    assert profile is not None
    return DeviceSession(
        device_key=f"key-{address[-2:]}",
        address=address,
        profile=profile,
        link=r.link,
        watcher=r.watcher,
        slots=slots,
        sink=sink,
        policy=BackoffPolicy(initial_s=0.1, max_s=1.0, stable_s=1.0),
        options=SessionOptions(**opts),  # type: ignore[arg-type]
        rng=random.Random(1),
    )


async def test_reconnects_after_out_of_range_and_restarts_streams() -> None:
    async with rig(1) as r:
        member = r.fleet.devices[0]
        sink = Collect()
        session = await _session(r, member.address, sink, SlotBudget(4))
        key = session.device_key
        async with asyncio.TaskGroup() as group:
            task = group.create_task(session.run(), name="ble[test].session")
            await sink.wait(lambda _: sink.frames(key) >= 20)
            await member.device.faults.drop_link(out_of_range_s=2.0)
            back = time.monotonic() + 2.0
            await sink.wait(lambda _: [e.up for e in sink.links(key)] == [True, False, True])
            reconnect_s = time.monotonic() - back
            before = sink.frames(key)
            await sink.wait(lambda _: sink.frames(key) >= before + 20)
            task.cancel()
        downs = [e for e in sink.links(key) if not e.up]
        assert downs[0].reason is LinkDown.LINK_LOSS
        assert session.counters.link_losses == 1
        assert session.counters.connects == 2
        assert reconnect_s < 2.0, reconnect_s


async def test_watchdog_reconnects_a_silent_device() -> None:
    async with rig(1) as r:
        member = r.fleet.devices[0]
        sink = Collect()
        session = await _session(r, member.address, sink, SlotBudget(4), watchdog_s=0.5)
        key = session.device_key
        async with asyncio.TaskGroup() as group:
            task = group.create_task(session.run(), name="ble[test].session")
            await sink.wait(lambda _: sink.frames(key) >= 10)
            member.device.faults.stall(2.0)
            await sink.wait(lambda _: len(sink.links(key)) >= 3)
            task.cancel()
        assert sink.links(key)[1].reason is LinkDown.WATCHDOG
        assert session.counters.watchdog_resets >= 1


async def test_devices_beyond_the_slot_budget_queue() -> None:
    async with rig(3) as r:
        sink = Collect()
        slots = SlotBudget(2)
        sessions = [await _session(r, m.address, sink, slots) for m in r.fleet.devices]
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(s.run(), name=f"ble[{s.device_key}].session") for s in sessions
            ]
            await sink.wait(
                lambda items: sum(isinstance(i, LinkEvent) and i.up for i in items) >= 2
            )
            await asyncio.sleep(0.5)  # give a third connection every chance to (wrongly) happen
            assert slots.in_use == 2
            assert slots.waiting == 1
            assert sum(s.counters.connects for s in sessions) == 2
            assert sum(s.counters.connect_failures for s in sessions) == 0
            for task in tasks:
                task.cancel()


async def test_a_swallowed_cancellation_is_raised_again() -> None:
    from gateway.ble.session import _raise_if_cancelled

    async def body() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        # What Python 3.11's asyncio.wait_for does when the response wins the race:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)
        _raise_if_cancelled()

    task = asyncio.ensure_future(body())
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.timeout(90)
async def test_cancelling_sessions_mid_handshake_always_finishes_promptly() -> None:
    rng = random.Random(7)
    for _ in range(12):
        async with rig(2) as r:
            sink, slots = Collect(), SlotBudget(4)
            sessions = [await _session(r, m.address, sink, slots) for m in r.fleet.devices]
            tasks = [asyncio.ensure_future(s.run()) for s in sessions]
            await asyncio.sleep(rng.uniform(0.06, 0.18))  # inside connect/subscribe/start
            for task in tasks:
                task.cancel()
            _, pending = await asyncio.wait(tasks, timeout=4.0)
            assert not pending, [s.state for s in sessions]
