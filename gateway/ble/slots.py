"""Connection slots: how many links one adapter holds at once.

Role: ``SlotBudget`` is a FIFO budget of connection slots per adapter (real adapters hold
about 5-10 connections). A session takes a slot before it connects and gives it back
when its link ends, so devices beyond the budget queue in arrival order instead of
thrashing the adapter with connection attempts it must refuse. ``waiting`` and
``in_use`` are read by status displays and metrics.

Must not: connect, time out on its own (callers bound their waits), or know devices.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["SlotBudget"]


class SlotBudget:
    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("an adapter needs at least one connection slot")
        self.slots = slots
        self._free = asyncio.Semaphore(slots)  # FIFO among waiters (asyncio guarantees it)
        self.waiting = 0
        self.in_use = 0
        self.grants = 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the body; waits (FIFO) while all slots are taken."""
        self.waiting += 1
        try:
            await self._free.acquire()
        finally:
            self.waiting -= 1
        self.in_use += 1
        self.grants += 1
        try:
            yield
        finally:
            self.in_use -= 1
            self._free.release()
