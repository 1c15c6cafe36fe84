"""Which Bluetooth the gateway talks to: the platform's (real hardware) or the virtual link.

``open_link`` is the one place that chooses. For ``platform`` it hands out bleak's default
backend unchanged. For ``virtual`` it builds a ``VirtualRadio``, starts the configured
simulated garments on it (in this process, for now) and a ``BumbleAdapter`` for the
gateway, and hands out bleak objects bound to that adapter. Everything above this module
uses ``BleakScanner``/``BleakClient`` the same way for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from devices.sim.fleet import SimulatedFleet
from devices.sim.radio import VirtualRadio
from devices.sim.sentlog import SentLogSink
from gateway.ble.bumble_backend import (
    BumbleAdapter,
    BumbleClient,
    BumbleScanner,
    PairingPolicy,
)
from gateway.config import BleSettings, SimSettings

GATEWAY_VIRTUAL_ADDRESS = "F0:F0:F0:F0:F0:F0"
"""The gateway adapter's (static random) address on the virtual link."""


@dataclass(frozen=True, slots=True)
class BleLink:
    """Factory for bleak scanners and clients on one Bluetooth link."""

    kind: Literal["virtual", "platform"]
    backend_kwargs: dict[str, Any] = field(default_factory=dict)
    adapter: BumbleAdapter | None = None
    fleet: SimulatedFleet | None = None
    key_salt: bytes = field(default_factory=lambda: os.urandom(16))
    """Per-run secret for provisional device keys (``scan.provisional_device_key``)."""

    def scanner(self, **kwargs: Any) -> BleakScanner:
        if self.adapter is not None:
            return BleakScanner(backend=BumbleScanner, bumble_adapter=self.adapter, **kwargs)
        return BleakScanner(**self.backend_kwargs, **kwargs)

    def client(self, device: BLEDevice | str, **kwargs: Any) -> BleakClient:
        return BleakClient(device, **self.client_kwargs, **kwargs)

    @property
    def client_kwargs(self) -> dict[str, Any]:
        """What ``BleakClient`` needs to use this link (for helpers that build the client
        themselves, such as bleak-retry-connector's ``establish_connection``)."""
        if self.adapter is not None:
            return {"backend": BumbleClient, "bumble_adapter": self.adapter}
        return dict(self.backend_kwargs)

    @property
    def expected_addresses(self) -> frozenset[str]:
        """Addresses known to be in range (the simulated fleet); empty for real radios."""
        if self.fleet is None:
            return frozenset()
        return frozenset(m.address.upper() for m in self.fleet.devices)

    async def discover(
        self, *, timeout_s: float, expect: frozenset[str] = frozenset()
    ) -> Sequence[tuple[BLEDevice, AdvertisementData]]:
        """Scan and return the latest (device, advertisement data) of every peripheral
        heard. Stops after ``timeout_s``, or earlier once every address in ``expect`` has
        been heard twice (an advertisement and its scan response)."""
        heard: dict[str, tuple[BLEDevice, AdvertisementData]] = {}
        times: Counter[str] = Counter()
        deadline = asyncio.timeout(timeout_s)
        try:
            async with deadline, self.scanner() as scanner:
                async for device, data in scanner.advertisement_data():
                    address = device.address.upper()
                    heard[address] = (device, data)
                    times[address] += 1
                    if expect and all(times[a] >= 2 for a in expect):
                        break
        except TimeoutError:
            if not deadline.expired():
                raise
        return list(heard.values())


@contextlib.asynccontextmanager
async def open_link(
    ble: BleSettings,
    sim: SimSettings,
    *,
    pairing: PairingPolicy | None = None,
    log_for: Callable[[str], SentLogSink | None] | None = None,
) -> AsyncIterator[BleLink]:
    """The configured link, ready to scan and connect; closed on exit. ``pairing`` sets
    how the virtual link's adapter pairs (e.g. passkey entry); on the platform link
    pairing is BlueZ's, with its own agent. ``log_for`` (virtual link only) gives each
    simulated device, by address, a sink recording what it sent (the simulator's truth,
    for end-to-end checks)."""
    if ble.link == "platform":
        kwargs: dict[str, Any] = {}
        if ble.adapter is not None:
            kwargs["bluez"] = {"adapter": ble.adapter}
        yield BleLink(kind="platform", backend_kwargs=kwargs)
        return
    async with contextlib.AsyncExitStack() as stack:
        radio = await stack.enter_async_context(VirtualRadio())
        fleet = await stack.enter_async_context(
            SimulatedFleet(
                radio,
                polar=sim.polar,
                garment=sim.garment,
                seed=sim.seed,
                require_bonding=sim.require_bonding,
                passkey=sim.passkey,
                speed=sim.speed,
                replay_ecg=sim.replay_ecg,
                log_for=log_for,
            )
        )
        adapter = await stack.enter_async_context(
            BumbleAdapter(
                radio, address=GATEWAY_VIRTUAL_ADDRESS, key_dir=ble.keystore_dir, pairing=pairing
            )
        )
        yield BleLink(kind="virtual", adapter=adapter, fleet=fleet)
