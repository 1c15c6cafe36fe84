"""Who is advertising right now: one continuous scan per link, shared by every session.

Role: ``AdvertisementWatcher`` keeps a scanner running for as long as it is entered and
remembers, per address, the latest ``BLEDevice`` and when (monotonic seconds, from the
injected clock) it was last heard. A device session that lost its link waits here for
the device's next advertisement instead of holding the adapter's connection initiator
(one connect at a time per adapter) while the device is out of range.

Must not: connect, decide which devices matter (callers ask for addresses), log
addresses above DEBUG, or keep anything after it is exited.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from gateway.ble.link import BleLink

__all__ = ["AdvertisementWatcher", "Heard"]


@dataclass(frozen=True, slots=True)
class Heard:
    """The latest advertisement of one address."""

    device: BLEDevice
    data: AdvertisementData
    at_s: float


class AdvertisementWatcher:
    """Async context manager: a scan that runs until exit; ``wait_for`` an address."""

    def __init__(self, link: BleLink, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._link = link
        self._monotonic = monotonic
        self._heard: dict[str, Heard] = {}
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._stack = contextlib.AsyncExitStack()
        self.advertisements = 0
        """Advertisements seen (all addresses)."""

    def _on_advertisement(self, device: BLEDevice, data: AdvertisementData) -> None:
        self.advertisements += 1
        key = device.address.upper()
        self._heard[key] = Heard(device, data, self._monotonic())
        for event in self._waiters.get(key, ()):
            event.set()

    def last_heard(self, address: str) -> Heard | None:
        return self._heard.get(address.upper())

    async def wait_for(self, address: str, *, after_s: float) -> Heard:
        """The device once it has been heard at a monotonic time later than ``after_s``."""
        key = address.upper()
        while True:
            heard = self._heard.get(key)
            if heard is not None and heard.at_s > after_s:
                return heard
            event = asyncio.Event()
            waiting = self._waiters.setdefault(key, set())
            waiting.add(event)
            try:
                await event.wait()
            finally:
                waiting.discard(event)
                if not waiting:
                    del self._waiters[key]

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            scanner = self._link.scanner(detection_callback=self._on_advertisement)
            await stack.enter_async_context(scanner)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()
        self._heard.clear()
