"""How many simulated garments one process streams at full rate over the virtual link.

For each fleet size N, N simulated biogw garments (ECG 250 Hz, respiration 25 Hz,
temperature 1 Hz, accelerometer 50 Hz) run in real time on one bumble virtual radio, and
the gateway side (bleak on the bumble backend, one adapter per 10 connections, as real
adapters hold about 5-10) connects to all of them, subscribes, starts the streams and
decodes every notification into frames. After a warm-up, a measurement window counts
the samples decoded against the nominal rate, the event-loop lag (how late a 10 ms
timer fires) and CPU use. "Full rate" means >= 99 % of nominal samples decoded (a window
edge can cut one 400 ms frame per stream), no notification dropped and no decode error,
and loop-lag p99 under 100 ms: everything runs in one Python
process on one core, simulator and gateway alike, so this is a lower bound for the
gateway alone.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass

import numpy as np
from bleak import BleakClient

from devices.garment.profile import GARMENT_PROFILE
from devices.garment.spec import DEFAULT_RATES_HZ
from devices.sim.fleet import SimulatedFleet
from devices.sim.radio import VirtualRadio
from gateway.ble.bumble_backend import BumbleAdapter, BumbleClient
from gateway.ble.stream import DeviceStream

NOMINAL_SAMPLES_PER_S = sum(DEFAULT_RATES_HZ.values())
CONNECTIONS_PER_ADAPTER = 10


@dataclass(frozen=True, slots=True)
class LinkResult:
    garments: int
    adapters: int
    notifications_per_s: float
    samples_per_s: float
    fraction_of_nominal: float
    dropped: int
    decode_errors: int
    lag_p99_ms: float
    cpu_percent: float

    @property
    def full_rate(self) -> bool:
        return (
            self.fraction_of_nominal >= 0.99
            and self.dropped == 0
            and self.decode_errors == 0
            and self.lag_p99_ms < 100
        )


async def _lag_probe(samples: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        due = loop.time() + 0.01
        await asyncio.sleep(0.01)
        samples.append(loop.time() - due)


async def _consume(stream: DeviceStream) -> None:
    async for _ in stream.frames():
        pass


async def measure(garments: int, *, warmup_s: float, window_s: float) -> LinkResult:
    adapters_needed = math.ceil(garments / CONNECTIONS_PER_ADAPTER)
    async with AsyncExitStack() as stack:
        radio = await stack.enter_async_context(VirtualRadio())
        fleet = await stack.enter_async_context(SimulatedFleet(radio, garment=garments, seed=1))
        adapters = [
            await stack.enter_async_context(
                BumbleAdapter(radio, address=f"F0:F0:F0:F0:F0:{i + 1:02X}")
            )
            for i in range(adapters_needed)
        ]
        streams: list[DeviceStream] = []
        for i, member in enumerate(fleet.devices):
            client = BleakClient(
                member.address,
                backend=BumbleClient,
                bumble_adapter=adapters[i // CONNECTIONS_PER_ADAPTER],
            )
            streams.append(
                await stack.enter_async_context(
                    DeviceStream(client, GARMENT_PROFILE, device_key=f"bench-{i}")
                )
            )
        group = await stack.enter_async_context(asyncio.TaskGroup())
        stop = asyncio.Event()
        lags: list[float] = []
        consumers = [
            group.create_task(_consume(s), name=f"ble[bench-{i}].decode")
            for i, s in enumerate(streams)
        ]
        await asyncio.sleep(warmup_s)
        group.create_task(_lag_probe(lags, stop), name="bench.lag")
        before = [(s.counters.samples, s.counters.notifications) for s in streams]
        wall0, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.sleep(window_s)
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        samples = sum(s.counters.samples - b[0] for s, b in zip(streams, before, strict=True))
        notes = sum(s.counters.notifications - b[1] for s, b in zip(streams, before, strict=True))
        stop.set()
        for task in consumers:
            task.cancel()
        return LinkResult(
            garments=garments,
            adapters=adapters_needed,
            notifications_per_s=notes / wall,
            samples_per_s=samples / wall,
            fraction_of_nominal=samples / (wall * garments * NOMINAL_SAMPLES_PER_S),
            dropped=sum(s.counters.dropped_notifications for s in streams),
            decode_errors=sum(s.counters.decode_errors for s in streams),
            lag_p99_ms=float(np.percentile(lags, 99)) * 1e3 if lags else float("nan"),
            cpu_percent=100 * cpu / wall,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 50, 100, 200])
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--window", type=float, default=10.0)
    args = parser.parse_args(argv)
    print("== virtual link: simulated garments streamed at full rate in one process")
    print(
        f"   nominal per garment: {NOMINAL_SAMPLES_PER_S:.0f} samples/s; window {args.window:.0f} s"
    )
    print(
        f"{'garments':>8}{'adapters':>9}{'notif/s':>10}{'samples/s':>12}{'% nominal':>11}"
        f"{'dropped':>9}{'lag p99 ms':>12}{'CPU %':>8}  full rate"
    )
    best = 0
    for n in args.sizes:
        r = asyncio.run(measure(n, warmup_s=args.warmup, window_s=args.window))
        best = max(best, n) if r.full_rate else best
        print(
            f"{r.garments:>8}{r.adapters:>9}{r.notifications_per_s:>10,.0f}"
            f"{r.samples_per_s:>12,.0f}{100 * r.fraction_of_nominal:>10.1f}%"
            f"{r.dropped:>9}{r.lag_p99_ms:>12.1f}{r.cpu_percent:>8.0f}  "
            f"{'yes' if r.full_rate else 'no'}"
        )
    print(f"largest fleet at full rate: {best} garments")


if __name__ == "__main__":
    main()
