"""The gateway's edge pipeline, per frame and end to end (issue 4, acceptance 6).

1. Throughput on one core: N real garment notifications (20 device keys; ECG 250 Hz,
   respiration 25 Hz, accelerometer 50 Hz in 400 ms frames, temperature 1 Hz, in the
   simulator's proportions) go through the whole path in one process: profile decoder ->
   ``Received`` -> ``EdgePipeline`` (gap tracker, clock fit, router with every scope
   granted, so each frame yields a clinical and a research message) -> ``SpoolOutbox``
   (wire encode, spool append; the edge flushes after every burst) -> ``MqttPublisher``
   -> the broker, until every message is acked. Then each stage alone on the same input
   (decode, edge handle with a null outbox, encode, spool append + commit, publish + ack).
   Both spool sync modes. ``cpu`` is this process's CPU time (the broker runs elsewhere).
2. Latency with 20 simulated garments on the virtual link, in real time: sessions ->
   edge -> outbox -> spool -> publisher -> broker -> an aiomqtt subscriber in this
   process. Latency = subscriber receive time - the notification's BLE receive stamp
   (``Received.received_ns``), taken for clinical messages (they carry the device key);
   it includes the spool's group commit (an fsync with sync "full").

Targets: >= 10,000 frames/s per core through the whole pipeline; p99 <= 100 ms.
Needs the broker at ``--host``/``--port``; uses a unique topic prefix and clears what it
leaves (retained gateway status, the persistent session). Must not touch other topics.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import aiomqtt
import numpy as np

from benchmarks.edge_inputs import Notification, make_router, notifications
from devices.garment.profile import GARMENT_PROFILE
from devices.garment.spec import DATA_CHARACTERISTIC_UUID
from devices.sim.fleet import SimulatedFleet
from devices.sim.radio import VirtualRadio
from gateway.backoff import BackoffPolicy
from gateway.ble.bumble_backend import BumbleAdapter
from gateway.ble.link import BleLink
from gateway.ble.presence import AdvertisementWatcher
from gateway.ble.session import DeviceSession, Received, SessionOutput
from gateway.ble.slots import SlotBudget
from gateway.config import MqttSettings
from gateway.edge import EdgePipeline
from gateway.router import ClinicalFrame, Routed, RoutedGap, Router
from gateway.transport.mqtt import MqttPublisher
from gateway.transport.outbox import SpoolOutbox
from gateway.transport.spool import Spool, SpoolClass
from gateway.transport.topics import TopicLayout
from gateway.transport.wire import decode, encode_clinical, encode_research

Sync = Literal["normal", "full"]
SPOOL_BYTES = 1 << 31
GARMENTS = 20
S = 1_000_000_000


# -- stages ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timing:
    wall_s: float
    cpu_s: float


def _timed(fn: Callable[[], object]) -> tuple[Timing, object]:
    w, c = time.perf_counter(), time.process_time()
    result = fn()
    return Timing(time.perf_counter() - w, time.process_time() - c), result


def decode_all(notes: Sequence[Notification]) -> list[Received]:
    decoders = {n.device_key: GARMENT_PROFILE.new_decoder(n.device_key) for n in notes}
    return [
        Received(
            n.device_key,
            d.decode(DATA_CHARACTERISTIC_UUID, n.data, n.received_ns),
            n.received_ns,
            0,
        )
        for n in notes
        if (d := decoders[n.device_key])
    ]


class _ListOutbox:
    def __init__(self) -> None:
        self.routed: list[Routed] = []

    def frame(self, routed: Routed) -> None:
        self.routed.append(routed)

    def gap(self, routed: RoutedGap) -> None:
        pass

    def flush(self) -> None:
        pass


def edge_all(items: Sequence[Received], router: Router) -> list[Routed]:
    outbox = _ListOutbox()
    edge = EdgePipeline(router, outbox)
    for item in items:
        edge.handle(item)
    return outbox.routed


def encode_all(
    routed: Sequence[Routed], layout: TopicLayout
) -> list[tuple[str, bytes, SpoolClass]]:
    out = []
    for r in routed:
        if r.clinical is not None:
            c = r.clinical
            topic = layout.clinical(c.subject_id, c.frame.stream)
            out.append((topic, encode_clinical(c), SpoolClass.CLINICAL))
        if r.research is not None:
            out.append(
                (
                    layout.research(r.research.stream),
                    encode_research(r.research),
                    SpoolClass.RESEARCH,
                )
            )
    return out


def spool_all(spool: Spool, messages: Sequence[tuple[str, bytes, SpoolClass]], burst: int) -> None:
    for i, (topic, payload, klass) in enumerate(messages, 1):
        spool.append(topic, payload, klass)
        if i % burst == 0:
            spool.commit()
    spool.commit()


@dataclass(frozen=True, slots=True)
class Broker:
    host: str
    port: int
    prefix: str
    gateway_id: str

    def settings(self) -> MqttSettings:
        return MqttSettings(host=self.host, port=self.port, topic_prefix=self.prefix)

    async def clean(self) -> None:
        """Drop the publisher's persistent sessions (control and data) and its retained
        status."""
        topic = TopicLayout(self.prefix).gateway_status(self.gateway_id)
        identifier = f"biogw-{self.gateway_id}"
        async with aiomqtt.Client(
            self.host, self.port, identifier=identifier, clean_session=True
        ) as client:
            await client.publish(topic, b"", qos=1, retain=True)
        async with aiomqtt.Client(
            self.host, self.port, identifier=f"{identifier}-data", clean_session=True
        ):
            pass


async def publish_all(spool: Spool, broker: Broker) -> Timing:
    """Publish everything committed in ``spool`` and wait for every PUBACK (connect
    included, a few ms)."""
    w, c = time.perf_counter(), time.process_time()
    async with MqttPublisher(
        spool, settings=broker.settings(), gateway_id=broker.gateway_id
    ) as pub:
        pub.notify()
        await pub.wait_idle()
    return Timing(time.perf_counter() - w, time.process_time() - c)


async def pipeline(
    notes: Sequence[Notification], router: Router, spool: Spool, broker: Broker, burst: int
) -> tuple[Timing, int]:
    """The whole path; returns the timing and the number of messages acked."""
    async with MqttPublisher(
        spool, settings=broker.settings(), gateway_id=broker.gateway_id
    ) as pub:
        await pub.wait_connected()
        outbox = SpoolOutbox(spool, TopicLayout(broker.prefix), wake=pub.notify)
        edge = EdgePipeline(router, outbox, burst=burst)
        decoders = {n.device_key: GARMENT_PROFILE.new_decoder(n.device_key) for n in notes}
        async with asyncio.TaskGroup() as group:
            task = group.create_task(edge.run(), name="edge")
            w, c = time.perf_counter(), time.process_time()
            for i, n in enumerate(notes, 1):
                frames = decoders[n.device_key].decode(
                    DATA_CHARACTERISTIC_UUID, n.data, n.received_ns
                )
                await edge.put(Received(n.device_key, frames, n.received_ns, 0))
                if i % burst == 0:
                    await asyncio.sleep(0)
            while edge.counters.items < len(notes):  # noqa: ASYNC110 (edge has no event)
                await asyncio.sleep(0.001)
            outbox.flush()
            await pub.wait_idle()
            timing = Timing(time.perf_counter() - w, time.process_time() - c)
            task.cancel()
        acked = pub.stats().acked
    return timing, acked


# -- 1. throughput ----------------------------------------------------------------------------


def _row(name: str, t: Timing, frames: int, note: str = "") -> None:
    us = t.wall_s / frames * 1e6
    print(
        f"  {name:<26}{us:>10.1f}{frames / t.wall_s:>13,.0f}"
        f"{t.cpu_s / frames * 1e6:>12.1f}{frames / t.cpu_s if t.cpu_s else 0:>14,.0f}  {note}"
    )


def throughput(
    notes: Sequence[Notification], sync: Sync, broker: Broker, scratch: Path, burst: int
) -> float:
    keys = sorted({n.device_key for n in notes})
    bindings = {key: uuid.uuid4() for key in keys}
    n = len(notes)
    print(f"== sync={sync}: {n:,} notifications (frames), {len(keys)} garments, burst {burst}")
    print(f"  {'stage':<26}{'µs/frame':>10}{'frames/s':>13}{'cpu µs/fr':>12}{'cpu frames/s':>14}")
    router = make_router(scratch / f"keys-{sync}-all", bindings)
    with Spool(scratch / f"all-{sync}", max_bytes=SPOOL_BYTES, sync=sync) as spool:
        whole, acked = asyncio.run(pipeline(notes, router, spool, broker, burst))
    _row("whole pipeline", whole, n, f"{acked:,} messages acked")
    t_dec, items = _timed(lambda: decode_all(notes))
    _row("decode (profile)", t_dec, n)
    router = make_router(scratch / f"keys-{sync}-stages", bindings)
    t_edge, routed = _timed(lambda: edge_all(items, router))  # type: ignore[arg-type]
    _row("edge handle (null outbox)", t_edge, n, "gaps, clock map, consent routing")
    layout = TopicLayout(broker.prefix)
    t_enc, messages = _timed(lambda: encode_all(routed, layout))  # type: ignore[arg-type]
    _row("encode (wire + topic)", t_enc, n, f"{len(messages):,} messages")  # type: ignore[arg-type]
    with Spool(scratch / f"stages-{sync}", max_bytes=SPOOL_BYTES, sync=sync) as spool:
        t_sp, _ = _timed(lambda: spool_all(spool, messages, 2 * burst))  # type: ignore[arg-type]
        _row("spool append + commit", t_sp, n, f"commit per {2 * burst} messages")
        t_pub = asyncio.run(publish_all(spool, broker))
        _row("publish + ack", t_pub, n)
    parts = (t_dec, t_edge, t_enc, t_sp, t_pub)
    total = Timing(sum(t.wall_s for t in parts), sum(t.cpu_s for t in parts))
    _row("sum of stages", total, n)
    return n / whole.wall_s


# -- 2. latency -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LatencyResult:
    messages: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_percent: float


class _Tap:
    """The sessions' sink: stamps each frame's BLE receive time, then hands it on."""

    def __init__(self, edge: EdgePipeline) -> None:
        self.edge = edge
        self.stamps: dict[tuple[str, str, int | None], int] = {}

    async def put(self, item: SessionOutput) -> None:
        if isinstance(item, Received):
            for frame in item.frames:
                self.stamps[(item.device_key, frame.stream.value, frame.sequence)] = (
                    item.received_ns
                )
        await self.edge.put(item)


async def _subscribe(client: aiomqtt.Client, arrivals: list[tuple[int, bytes]]) -> None:
    async for message in client.messages:
        arrivals.append((time.time_ns(), bytes(message.payload)))


async def latency(
    broker: Broker, scratch: Path, sync: Sync, *, warmup_s: float, window_s: float
) -> LatencyResult:
    keys = [str(uuid.uuid4()) for _ in range(GARMENTS)]
    router = make_router(scratch / "keys-latency", {key: uuid.uuid4() for key in keys})
    arrivals: list[tuple[int, bytes]] = []
    async with AsyncExitStack() as stack:
        spool = stack.enter_context(Spool(scratch / "latency", max_bytes=SPOOL_BYTES, sync=sync))
        sub = await stack.enter_async_context(
            aiomqtt.Client(broker.host, broker.port, identifier=f"bench-sub-{broker.gateway_id}")
        )
        await sub.subscribe(TopicLayout(broker.prefix).clinical_filter(), qos=1)
        pub = await stack.enter_async_context(
            MqttPublisher(spool, settings=broker.settings(), gateway_id=broker.gateway_id)
        )
        edge = EdgePipeline(router, SpoolOutbox(spool, TopicLayout(broker.prefix), wake=pub.notify))
        tap = _Tap(edge)
        radio = await stack.enter_async_context(VirtualRadio())
        fleet = await stack.enter_async_context(
            SimulatedFleet(radio, polar=0, garment=GARMENTS, seed=6)
        )
        sessions = []
        for a in range(0, GARMENTS, 10):  # one adapter per 10 connections
            adapter = await stack.enter_async_context(
                BumbleAdapter(radio, address=f"F0:F0:F0:F0:F1:{a + 1:02X}")
            )
            link = BleLink(kind="virtual", adapter=adapter, fleet=fleet)
            watcher = await stack.enter_async_context(AdvertisementWatcher(link))
            slots = SlotBudget(10)
            for i in range(a, min(a + 10, GARMENTS)):
                sessions.append(DeviceSession(
                    device_key=keys[i], address=fleet.devices[i].address, profile=GARMENT_PROFILE,
                    link=link, watcher=watcher, slots=slots, sink=tap,
                    policy=BackoffPolicy(initial_s=0.25, max_s=5.0), rng=random.Random(i),
                ))  # fmt: skip
        group = await stack.enter_async_context(asyncio.TaskGroup())
        tasks = [
            group.create_task(edge.run(), name="edge"),
            group.create_task(_subscribe(sub, arrivals), name="sub"),
        ]
        tasks += [
            group.create_task(s.run(), name=f"ble[{k}].session")
            for s, k in zip(sessions, keys, strict=True)
        ]
        async with asyncio.timeout(60):
            while len({k for k, _, _ in tap.stamps}) < GARMENTS:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        await asyncio.sleep(warmup_s)
        t0, c0 = time.time_ns(), time.process_time()
        await asyncio.sleep(window_s)
        t1, cpu = time.time_ns(), time.process_time() - c0
        await asyncio.sleep(1.0)  # let the window's last messages arrive
        for task in tasks:
            task.cancel()
    lat = []
    for arrived, payload in arrivals:
        msg = decode(payload)
        assert isinstance(msg, ClinicalFrame)
        f = msg.frame
        stamp = tap.stamps.get((f.device_key, f.stream.value, f.sequence))
        if stamp is not None and t0 <= stamp < t1:
            lat.append((arrived - stamp) / 1e6)
    arr = np.asarray(lat)
    return LatencyResult(
        len(arr), float(np.percentile(arr, 50)), float(np.percentile(arr, 99)), float(arr.max()),
        100 * cpu / ((t1 - t0) / 1e9),
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_edge")
    parser.add_argument("--frames", type=int, default=50_000, help="notifications, throughput run")
    parser.add_argument("--burst", type=int, default=64, help="edge burst (items per flush)")
    parser.add_argument("--window", type=float, default=20.0, help="latency window, s")
    parser.add_argument("--warmup", type=float, default=2.0, help="latency warm-up, s")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--dir", type=Path, default=None, help="parent of the scratch spools")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args(argv)
    tag = uuid.uuid4().hex[:10]
    broker = Broker(args.host, args.port, f"bench-edge/{tag}", f"bench-{tag}")
    print("== edge pipeline: decode -> edge -> outbox -> spool -> MQTT (QoS 1, loopback)")
    notes = notifications(args.frames, [str(uuid.uuid4()) for _ in range(GARMENTS)])
    rates = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-edge-", dir=args.dir) as scratch:
            syncs: tuple[Sync, ...] = ("full", "normal")
            for sync in syncs:
                rates[sync] = throughput(notes, sync, broker, Path(scratch), args.burst)
            print("target >= 10,000 frames/s/core: " + ", ".join(
                f"sync={s} {r:,.0f} {'met' if r >= 10_000 else 'MISSED'}" for s, r in rates.items()
            ))  # fmt: skip
            if not args.skip_latency:
                print(f"== latency: {GARMENTS} simulated garments on the virtual link, "
                      f"notification -> subscriber, {args.window:.0f} s window")  # fmt: skip
                for sync in syncs:
                    where = Path(scratch) / f"lat-{sync}"
                    run = latency(broker, where, sync, warmup_s=args.warmup, window_s=args.window)
                    r = asyncio.run(run)
                    ok = "met" if r.p99_ms <= 100 else "MISSED"
                    print(
                        f"  sync={sync:<7}{r.messages:>7,} clinical msgs  p50 {r.p50_ms:6.1f} ms"
                        f"  p99 {r.p99_ms:6.1f} ms  max {r.max_ms:6.1f} ms"
                        f"  CPU {r.cpu_percent:3.0f} %"
                        f"  (target p99 <= 100 ms: {ok})"
                    )
    finally:
        asyncio.run(broker.clean())


if __name__ == "__main__":
    main()
