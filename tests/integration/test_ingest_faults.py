"""Issue 5 acceptance 3 and 4: the ingester under faults.

3. ``kill -9`` of the real ``biogw ingest`` process mid-stream, then a restart: every
   frame published is stored exactly once (byte for byte), in both databases. Then the
   database server (an embedded PostgreSQL this test owns) is stopped mid-stream and
   started again: same.
4. 1,000 malformed payloads mixed into a stream land in the dead-letter tables with their
   reasons (50 of them sent twice, as a broker redelivers, are stored once); every valid
   frame is stored.

Publisher: a persistent QoS 1 aiomqtt client; broker: a Mosquitto this test owns
(``tests.brokers.MosquittoBroker``); messages: ``ingest_messages.Fleet`` (real router,
real wire format and topics).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway.config import IngestSettings, MqttSettings
from gateway.ingest.ingester import PathIngester
from gateway.ingest.validate import IngestPath
from gateway.store.embedded import EmbeddedServer
from gateway.store.migrate import load_migrations, migrate
from tests.brokers import MOSQUITTO, BrokerEndpoint, MosquittoBroker
from tests.integration.ingest_messages import (
    Fleet,
    Message,
    count,
    stored_clinical,
    stored_research,
)
from tests.integration.processes import BiogwProcess

pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="needs the mosquitto binary")


@pytest.fixture
async def databases(new_database: Callable[[], Awaitable[str]]) -> tuple[str, str]:
    """(care, research) DSNs of fresh databases, each with its migrations applied."""
    care, research = await new_database(), await new_database()
    for dsn, package in ((care, "care"), (research, "research")):
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await migrate(conn, load_migrations(package))
    return care, research


def _as(dsn: str, user: str) -> str:
    return psycopg.conninfo.make_conninfo(dsn, user=user)


async def publish(endpoint: BrokerEndpoint, messages: list[Message], *, per_s: float) -> None:
    """QoS 1, in order, paced at ``per_s`` messages per second."""
    batch = max(1, int(per_s / 20))
    async with endpoint.client(f"pub-{os.getpid()}-{random.randrange(1 << 30)}") as client:
        for start in range(0, len(messages), batch):
            for topic, payload in messages[start : start + batch]:
                await client.publish(topic, payload, qos=1)
            await asyncio.sleep(batch / per_s)


async def until(predicate: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while True:  # polling a database or a metrics page: there is no event
                if await predicate():
                    return
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def subscribed(ingest: BiogwProcess) -> None:
    """Until both paths report their subscription up (read from the process's metrics)."""
    url = await ingest.metrics_url()

    async def check() -> bool:
        text = await asyncio.to_thread(_scrape, url)
        return len(re.findall(r"^biogw_ingest_subscribed\{.*\} 1\.0$", text, re.M)) == 2

    await until(check, 60, "the ingester's subscriptions")


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # our own loopback
        return str(response.read().decode())


@pytest.mark.timeout(300)
async def test_kill_9_of_the_ingester_loses_and_duplicates_nothing(
    tmp_path: Path, owned_broker: MosquittoBroker, databases: tuple[str, str]
) -> None:
    care, research = databases
    fleet = Fleet(tmp_path / "keys", wearers=20)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BIOGW_")},
        "BIOGW_DATABASE__CARE_DSN": _as(care, "clinical_ingest_login"),
        "BIOGW_DATABASE__RESEARCH_DSN": _as(research, "research_ingest_login"),
        "BIOGW_MQTT__HOST": owned_broker.endpoint.host,
        "BIOGW_MQTT__PORT": str(owned_broker.port),
        "BIOGW_MQTT__TOPIC_PREFIX": fleet.prefix,
        "BIOGW_INGEST__ID": "crashtest",
    }
    ingest = BiogwProcess(["ingest", "--metrics-port", "0"], env, tmp_path / "ingest.log")
    try:
        ingest.start()
        await subscribed(ingest)
        messages = fleet.messages(300)  # 20 wearers x 300 frames x 2 paths = 12,000
        publishing = asyncio.create_task(publish(owned_broker.endpoint, messages, per_s=1000))

        async def some_stored() -> bool:
            return await count(care, "clinical.frames") >= 1000

        await until(some_stored, 60, "the first thousand frames")
        ingest.kill()  # SIGKILL: no clean-up of any kind
        killed_at = await count(care, "clinical.frames")
        assert killed_at < len(fleet.clinical), "the kill came too late to mean anything"
        ingest.start()
        await publishing

        async def all_stored() -> bool:
            return await count(care, "clinical.frames") >= len(fleet.clinical) and await count(
                research, "pseudo.frames"
            ) >= len(fleet.research)

        await until(all_stored, 120, "every frame stored")
        await asyncio.sleep(1.0)  # anything arriving twice would be stored by now
        assert await stored_clinical(care) == fleet.clinical
        assert await stored_research(research) == fleet.research
    finally:
        ingest.kill()


@pytest.mark.timeout(300)
async def test_database_restart_mid_stream_loses_and_duplicates_nothing(
    tmp_path: Path, owned_broker: MosquittoBroker
) -> None:
    """The care and research databases live on an embedded server this test owns; it is
    stopped for a few seconds while frames keep coming, then started on the same data."""
    data_dir = tmp_path / "pgdata"
    server = EmbeddedServer(data_dir=data_dir)
    dsn = await asyncio.to_thread(server.start)
    care = psycopg.conninfo.make_conninfo(dsn, dbname="postgres")
    async with await psycopg.AsyncConnection.connect(care, autocommit=True) as conn:
        await conn.execute("CREATE DATABASE research")
        await migrate(conn, load_migrations("care"))
    research = psycopg.conninfo.make_conninfo(dsn, dbname="research")
    async with await psycopg.AsyncConnection.connect(research, autocommit=True) as conn:
        await migrate(conn, load_migrations("research"))
    fleet = Fleet(tmp_path / "keys", wearers=20)
    mqtt = MqttSettings(
        host=owned_broker.endpoint.host, port=owned_broker.port, topic_prefix=fleet.prefix
    )
    settings = IngestSettings(id="dbrestart", retry_initial_s=0.2, retry_max_s=1.0)
    ingesters = [
        PathIngester(IngestPath.CLINICAL, dsn=care, mqtt=mqtt, ingest=settings),
        PathIngester(IngestPath.RESEARCH, dsn=research, mqtt=mqtt, ingest=settings),
    ]
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(i.run()) for i in ingesters]

            async def subscribed() -> bool:
                return all(i.counters.subscribed for i in ingesters)

            await until(subscribed, 30, "both subscriptions")
            messages = fleet.messages(300)
            publishing = group.create_task(publish(owned_broker.endpoint, messages, per_s=1000))

            async def some_stored() -> bool:
                return ingesters[0].counters.frames >= 1000

            await until(some_stored, 60, "the first thousand frames")
            await asyncio.to_thread(server.stop)
            await asyncio.sleep(3.0)  # frames keep arriving at the broker meanwhile
            down_failures = ingesters[0].counters.db_failures
            server = EmbeddedServer(data_dir=data_dir)
            assert await asyncio.to_thread(server.start) == dsn
            await publishing

            async def all_stored() -> bool:
                return ingesters[0].counters.frames >= len(fleet.clinical) and (
                    ingesters[1].counters.frames >= len(fleet.research)
                )

            await until(all_stored, 120, "every frame stored")
            await asyncio.sleep(1.0)
            for task in tasks:
                task.cancel()
        assert down_failures >= 1, "the outage was not seen by the ingester"
        assert await stored_clinical(care) == fleet.clinical
        assert await stored_research(research) == fleet.research
    finally:
        await asyncio.to_thread(server.stop)


MALFORMED = 1000


def _malformed(fleet: Fleet, good: list[Message], rng: random.Random) -> list[Message]:
    """MALFORMED distinct bad messages of several kinds, on both paths' topics (the
    same message twice would be one dead letter: redeliveries are stored once)."""
    clinical_topics = [t for t, _ in good if "/clinical/" in t]
    research_topics = [t for t, _ in good if "/research/" in t]
    clinical_payloads = [p for t, p in good if "/clinical/" in t]
    bad: dict[Message, None] = {}
    i = 0
    while len(bad) < MALFORMED:
        kind, i = i % 5, i + 1
        if kind == 0:  # random bytes
            message = (rng.choice(clinical_topics), rng.randbytes(rng.randrange(1, 200)))
        elif kind == 1:  # a truncated frame
            payload = rng.choice(clinical_payloads)
            message = (rng.choice(clinical_topics), payload[: rng.randrange(1, len(payload))])
        elif kind == 2:  # a clinical frame on a research topic (an identifier there!)
            message = (rng.choice(research_topics), rng.choice(clinical_payloads))
        elif kind == 3:  # another wearer's frame under this wearer's topic
            topic, payload = rng.choice(clinical_topics), rng.choice(clinical_payloads)
            while topic.rsplit("/", 2)[1] in _subject_of(fleet, payload):
                topic = rng.choice(clinical_topics)
            message = (topic, payload)
        else:  # garbage on the research path
            message = (rng.choice(research_topics), rng.randbytes(rng.randrange(1, 200)))
        bad[message] = None
    return list(bad)


def _subject_of(fleet: Fleet, payload: bytes) -> str:
    from gateway.router import ClinicalFrame
    from gateway.transport.wire import decode

    message = decode(payload)
    assert isinstance(message, ClinicalFrame)
    return str(message.subject_id)


@pytest.mark.timeout(300)
async def test_a_thousand_malformed_payloads_become_dead_letters_and_nothing_else_is_lost(
    tmp_path: Path, owned_broker: MosquittoBroker, databases: tuple[str, str]
) -> None:
    care, research = databases
    fleet = Fleet(tmp_path / "keys", wearers=10)
    good = fleet.messages(200)
    rng = random.Random(5)
    bad = _malformed(fleet, good, rng)
    mixed = good + bad + bad[:50]  # 50 sent twice, as a broker redelivers: stored once
    rng.shuffle(mixed)
    mqtt = MqttSettings(
        host=owned_broker.endpoint.host, port=owned_broker.port, topic_prefix=fleet.prefix
    )
    settings = IngestSettings(id="deadletters")
    ingesters = [
        PathIngester(
            IngestPath.CLINICAL,
            dsn=_as(care, "clinical_ingest_login"),
            mqtt=mqtt,
            ingest=settings,
        ),
        PathIngester(
            IngestPath.RESEARCH,
            dsn=_as(research, "research_ingest_login"),
            mqtt=mqtt,
            ingest=settings,
        ),
    ]
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(i.run()) for i in ingesters]

        async def subscribed() -> bool:
            return all(i.counters.subscribed for i in ingesters)

        await until(subscribed, 30, "both subscriptions")
        await publish(owned_broker.endpoint, mixed, per_s=4000)

        async def all_in() -> bool:
            return sum(i.counters.messages for i in ingesters) >= len(mixed) and not any(
                i.counters.pending for i in ingesters
            )

        await until(all_in, 120, "every message")
        for task in tasks:
            task.cancel()
    assert await stored_clinical(care) == fleet.clinical
    assert await stored_research(research) == fleet.research
    letters = await _dead_letters(care, "clinical") + await _dead_letters(research, "pseudo")
    assert len(letters) == MALFORMED
    reasons = Counter(reason for reason, _ in letters)
    assert len(reasons) >= 4, reasons
    counted = sum(i.counters.dead_letters for i in ingesters)
    assert counted == MALFORMED
    # Research dead letters never keep bytes that might identify someone: here every
    # one of them was garbage or an identified frame.
    research_letters = await _dead_letters(research, "pseudo")
    assert research_letters
    assert all(payload is None for _, payload in research_letters)


async def _dead_letters(dsn: str, schema: str) -> list[tuple[str, Any]]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(f"SELECT reason, payload FROM {schema}.dead_letters")
        return [(str(r), p) for r, p in await cur.fetchall()]
