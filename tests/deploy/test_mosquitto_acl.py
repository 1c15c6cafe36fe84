"""deploy/mosquitto/biogw.acl on a real Mosquitto: each role reads only its own tree.

The gateway publishes one clinical frame, one research frame and a status, the clinical
ingester an alert, and the gateway tries to forge an alert; each reader subscribes to
every tree (Mosquitto 2 grants the subscription and filters each message by the ACL) and
must receive exactly what its role may see.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import pytest

from tests.brokers import MOSQUITTO, MOSQUITTO_PASSWD, MosquittoBroker

ACL = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "biogw.acl"
USERS = {
    "gateway": "gw-secret",
    "clinical-ingest": "ci-secret",
    "research-ingest": "ri-secret",
    "operator": "op-secret",
    "care-dashboard": "cd-secret",
}
TOPICS = {
    "clinical": "biogw/v1/clinical/0b9f3c1e-5a2d-4e8f-9c7b-1d2e3f4a5b6c/ecg",
    "research": "biogw/v1/research/ecg",
    "status": "biogw/v1/status/gw1",
}
ALERT = "biogw/v1/alerts/0b9f3c1e-5a2d-4e8f-9c7b-1d2e3f4a5b6c/apnoea"
FORGED = "biogw/v1/alerts/0b9f3c1e-5a2d-4e8f-9c7b-1d2e3f4a5b6c/fall"
EXPECTED = {
    "clinical-ingest": {"clinical"},
    "research-ingest": {"research"},
    "operator": {"status"},
    "gateway": set(),
    "care-dashboard": {"alerts"},
}


def _client(broker: MosquittoBroker, user: str, role: str = "read") -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1",
        broker.port,
        identifier=f"acl-{user}-{role}",
        username=user,
        password=USERS[user],
    )


@pytest.mark.skipif(
    MOSQUITTO is None or MOSQUITTO_PASSWD is None, reason="needs mosquitto and mosquitto_passwd"
)
async def test_each_role_reads_only_its_own_tree(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path / "mosquitto", users=USERS, acl_file=ACL)
    broker.start()
    try:
        got: dict[str, set[str]] = {user: set() for user in EXPECTED}
        names = {topic: name for name, topic in TOPICS.items()}
        names[ALERT], names[FORGED] = "alerts", "forged"
        changed = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            readers = []
            subscribed = []
            for user in EXPECTED:
                ready = asyncio.Event()
                subscribed.append(ready)

                async def read(user: str = user, ready: asyncio.Event = ready) -> None:
                    async with _client(broker, user) as client:
                        for tree in ("clinical", "research", "status", "alerts"):
                            await client.subscribe(f"biogw/v1/{tree}/#", qos=1)
                        ready.set()
                        async for message in client.messages:
                            got[user].add(names[str(message.topic)])
                            changed.set()

                readers.append(group.create_task(read(), name=f"acl[{user}]"))
            for ready in subscribed:
                await asyncio.wait_for(ready.wait(), 10)
            async with _client(broker, "gateway", "publish") as gateway:
                for topic in TOPICS.values():
                    await gateway.publish(topic, b"x", qos=1)
                await gateway.publish(FORGED, b"x", qos=1)
            async with _client(broker, "clinical-ingest", "publish") as ingester:
                await ingester.publish(ALERT, b"x", qos=1)
            # Wait until every permitted message arrived; a forbidden one would have been
            # routed by the same publish, so half a second more is ample.
            async with asyncio.timeout(10):
                while any(not EXPECTED[u] <= got[u] for u in EXPECTED):
                    changed.clear()
                    await changed.wait()
            await asyncio.sleep(0.5)
            for task in readers:
                task.cancel()
    finally:
        broker.stop()
    assert got == EXPECTED
