"""Fixtures for the transport tests: brokers (tests/brokers.py), a spool, and a unique
MQTT namespace per test that is cleaned off the broker afterwards.

``broker``: any broker (the configured one, else one owned for the session).
``owned_broker`` (a Mosquitto the test owns) is in tests/conftest.py.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.transport.spool import Spool
from tests.brokers import (
    MOSQUITTO,
    BrokerEndpoint,
    MosquittoBroker,
    clear_retained,
    configured_endpoint,
    forget_session,
)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerEndpoint]:
    configured = configured_endpoint()
    if configured is not None:
        yield configured
        return
    if MOSQUITTO is None:
        pytest.skip("no MQTT broker: set BIOGW_TEST_MQTT=host:port or install mosquitto")
    owned = MosquittoBroker(tmp_path_factory.mktemp("mosquitto"))
    owned.start()
    try:
        yield owned.endpoint
    finally:
        owned.stop()


@dataclass
class Namespace:
    """One test's MQTT names: topic prefix, gateway id, client ids to forget and
    retained topics to clear at the end."""

    prefix: str
    gateway_id: str
    sessions: list[str] = field(default_factory=list)
    retained: list[str] = field(default_factory=list)

    def client_id(self, role: str) -> str:
        identifier = f"{self.gateway_id}-{role}"
        self.sessions.append(identifier)
        return identifier


@pytest.fixture
async def namespace(broker: BrokerEndpoint) -> AsyncIterator[Namespace]:
    token = secrets.token_hex(5)
    ns = Namespace(prefix=f"biogwtest/{token}/v1", gateway_id=f"t{token}")
    ns.sessions.append(f"biogw-{ns.gateway_id}")
    yield ns
    if broker.kind == "configured":  # leave the shared broker as we found it
        for identifier in ns.sessions:
            await forget_session(broker, identifier)
        await clear_retained(broker, ns.retained)


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    with Spool(tmp_path / "spool", max_bytes=256 << 20, sync="normal") as s:
        yield s
