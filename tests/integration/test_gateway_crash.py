"""Issue 4 acceptance 4: ``kill -9`` of the gateway process while the broker is down, then
restart: the spooled frames are delivered; nothing acknowledged is lost.

The real ``biogw gateway`` runs as a child process (virtual link with two simulated
garments, care database with the two wearers enrolled, paired and consenting, spool with
``sync=full``), publishing to a Mosquitto this test owns, read by a persistent QoS 1
subscriber. The broker is stopped; once the gateway has spooled frames it is killed with
SIGKILL. What its spool holds then is what the gateway had acknowledged to its edge as
durable. Broker and gateway are started again: every spooled frame arrives, once, and the
frames delivered before the outage plus the spooled ones form, per wearer and stream, one
unbroken run of sequence numbers (nothing lost between them, nothing twice).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest

from devices.garment.profile import GARMENT_PROFILE
from gateway.consent import Scope
from gateway.router import ClinicalFrame
from gateway.store.consents import append_events
from gateway.store.devices import record_paired_device
from gateway.store.identity import add_subject
from gateway.transport.spool import Spool
from gateway.transport.topics import TopicLayout
from gateway.transport.wire import decode
from tests.brokers import MOSQUITTO, MosquittoBroker, Subscriber
from tests.gateway.store.consent_factory import grant
from tests.integration.processes import BiogwProcess

GARMENTS = 2
MASTER_KEY = "5a" * 32
METRICS = (
    "biogw_edge_frames_total",
    "biogw_edge_samples_total",
    "biogw_gaps_total",
    "biogw_notifications_dropped_total",
    "biogw_decode_errors_total",
    "biogw_edge_queue_depth",
    "biogw_spool_bytes",
    "biogw_spool_records",
    "biogw_link_losses_total",
    "biogw_connects_total",
    "biogw_mqtt_reconnects_total",
)
"""The issue's metrics (frames, samples, gaps, drops, queue depths, spool size,
reconnects): every one is served by the running gateway."""
BOUNDARY_NS = 1_000_000_000
"""Frames sampled this long after the broker stopped cannot have been in flight at the stop."""


async def _enroll(admin: psycopg.AsyncConnection[Any]) -> list[UUID]:
    start = time.time_ns() // 1000 * 1000 - 60 * 10**9
    subjects = []
    for index in range(1, GARMENTS + 1):
        subject = await add_subject(admin, name=f"Crash Test {index}", birth_date=None, email=None)
        await record_paired_device(
            admin,
            mac=f"D0:00:00:00:00:{index:02X}",
            serial=None,
            model="biogw sim garment",
            profile=GARMENT_PROFILE.name,
            owner_subject_id=subject,
        )
        scopes = (Scope.CORE_SERVICE, Scope.CLINICAL_CARE, Scope.RESEARCH_INTERNAL)
        await append_events(admin, [grant(subject, s, start) for s in scopes], actor_role="test")
        subjects.append(subject)
    return subjects


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # our own loopback
        return str(response.read().decode())


def _metric(url: str, name: str) -> float:
    text = _scrape(url)
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@contextmanager
def _cleanup(*killers: Any) -> Iterator[None]:
    try:
        yield
    finally:
        for kill in killers:
            kill()


@pytest.mark.skipif(MOSQUITTO is None, reason="needs the mosquitto binary (an owned broker)")
@pytest.mark.timeout(240)
async def test_kill_9_while_the_broker_is_down_loses_nothing_spooled(
    care_db: str, admin: psycopg.AsyncConnection[Any], tmp_path: Path
) -> None:
    subjects = await _enroll(admin)
    broker = MosquittoBroker(tmp_path / "mosquitto")
    broker.start()
    prefix = f"biogwtest/{secrets.token_hex(4)}/v1"
    layout = TopicLayout(prefix)
    spool_dir = tmp_path / "spool"
    env = {
        **os.environ,
        "BIOGW_CONFIG": "",
        "BIOGW_DATABASE__CARE_DSN": care_db,
        "BIOGW_PRIVACY__MASTER_KEY": MASTER_KEY,
        "BIOGW_PRIVACY__KEYSTORE_DIR": str(tmp_path / "keys"),
        "BIOGW_SIM__POLAR": "0",
        "BIOGW_SIM__GARMENT": str(GARMENTS),
        "BIOGW_MQTT__PORT": str(broker.port),
        "BIOGW_MQTT__TOPIC_PREFIX": prefix,
        "BIOGW_MQTT__KEEPALIVE_S": "5",
        "BIOGW_SPOOL__DIR": str(spool_dir),
        "BIOGW_SPOOL__SYNC": "full",
        "BIOGW_METRICS__PORT": "0",
        "BIOGW_GATEWAY__ID": "crashgw",
    }
    env.pop("BIOGW_CONFIG")
    gateway = BiogwProcess(["gateway"], env, tmp_path / "gateway.log")
    subscriber = Subscriber(broker.endpoint, "crash-sub", layout.clinical_filter())
    messages: list[bytes] = []
    with _cleanup(broker.stop, lambda: gateway.kill(signal.SIGKILL)):
        async with asyncio.TaskGroup() as group:
            sub_task = group.create_task(subscriber.run(), name="subscriber")

            async def drain() -> None:
                while True:
                    messages.append((await subscriber.queue.get()).payload)

            drain_task = group.create_task(drain(), name="drain")
            await asyncio.wait_for(subscriber.connected.wait(), 30)

            async def until(predicate: Any, timeout_s: float) -> None:
                async with asyncio.timeout(timeout_s):
                    while not predicate():  # noqa: ASYNC110  # polls a child process
                        await asyncio.sleep(0.2)

            gateway.start()
            url = await gateway.metrics_url()
            await until(lambda: len(messages) >= 40, 60)  # both garments flowing
            exposition = _scrape(url)
            for name in METRICS:
                assert re.search(rf"^{name}(\{{| )", exposition, re.MULTILINE), name
            assert _metric(url, "biogw_edge_frames_total") > 0
            broker.stop()
            stopped_ns = time.time_ns()
            await subscriber_settled(subscriber)
            before = len(messages)
            await until(lambda: _metric(url, "biogw_spool_records") >= 300, 60)
            gateway.kill(signal.SIGKILL)

            with Spool(spool_dir, max_bytes=1 << 30) as spool:
                spooled = [
                    r.payload for r in spool.pending(0, 1_000_000) if "/clinical/" in r.topic
                ]
            assert len(spooled) >= 150
            print(f"delivered before the outage {before}, spooled at the kill {len(spooled)}")

            broker.start()
            gateway.start()
            await gateway.metrics_url()
            wanted = set(spooled)
            await until(lambda: wanted <= set(messages[before:]), 90)
            gateway.kill(signal.SIGTERM)
            sub_task.cancel()
            drain_task.cancel()

    # Frames sampled after the broker stopped can only have gone out through the spool:
    # each arrives exactly once. A frame in flight at the stop (broker had it, its PUBACK
    # was lost with the connection) may arrive twice: QoS 1 is at least once, and the
    # ingester is idempotent on (stream, sequence).
    after = messages[before:]
    late = [p for p in spooled if _first_sample_ns(p) > stopped_ns + BOUNDARY_NS]
    assert len(late) >= 100
    for payload in late:
        assert after.count(payload) == 1, "a frame of the outage arrived twice"
    for payload in spooled:
        assert after.count(payload) >= 1
    runs: dict[tuple[UUID, str], set[int]] = defaultdict(set)
    for payload in messages[:before] + spooled:
        value = decode(payload)
        if isinstance(value, ClinicalFrame):
            assert value.frame.sequence is not None
            runs[(value.subject_id, value.frame.stream.value)].add(value.frame.sequence)
    assert {s for s, _ in runs} == set(subjects)
    for key, sequences in runs.items():  # nothing lost between delivered and spooled
        assert sorted(sequences) == list(range(min(sequences), max(sequences) + 1)), key[1]


def _first_sample_ns(payload: bytes) -> int:
    value = decode(payload)
    assert isinstance(value, ClinicalFrame)
    return value.frame.time_ns


async def subscriber_settled(subscriber: Subscriber) -> None:
    """Wait until the subscriber has noticed the broker is gone (nothing more can come)."""
    async with asyncio.timeout(30):
        while subscriber.connected.is_set():  # noqa: ASYNC110  # set/cleared by its task
            await asyncio.sleep(0.05)
