"""Fixtures of the simulator tests: a fresh virtual radio per test and the gateway's
bumble adapter on it (the central the simulated devices talk to)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from devices.sim.radio import VirtualRadio
from gateway.ble.bumble_backend import BumbleAdapter

CENTRAL = "C0:00:00:00:00:01"


@pytest.fixture
async def radio() -> AsyncIterator[VirtualRadio]:
    async with VirtualRadio() as radio:
        yield radio


@pytest.fixture
async def adapter(radio: VirtualRadio) -> AsyncIterator[BumbleAdapter]:
    async with BumbleAdapter(radio, address=CENTRAL) as adapter:
        yield adapter
