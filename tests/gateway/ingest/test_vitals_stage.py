"""gateway.ingest.vitals and .alerts on a real PostgreSQL (as the ingest roles) and Mosquitto.

Frames of a simulated wearer go through ``VitalsStage``: vitals land in the path's
database once (a restarted stage fed the same frames adds nothing); an ECG that goes flat
raises an alert that is stored once and published once on the alert topic.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from devices.frame import Frame, Quality, StreamKind, Timebase, Unit
from devices.sim.signals.scenario import WearerScenario, build_wearer
from gateway.backoff import BackoffPolicy
from gateway.ingest import IngestPath
from gateway.ingest.alerts import AlertPublisher
from gateway.ingest.vital_rows import VitalRow
from gateway.ingest.vitals import StoredAlert, VitalsStage, alert_id
from gateway.router import ClinicalFrame, ResearchFrame
from gateway.store.migrate import load_migrations, migrate
from tests.brokers import MosquittoBroker, subscribed
from tests.gateway.ingest.conftest import (
    DAY_NS,
    DEVICE,
    NOW_NS,
    RECORD,
    SUBJECT,
    IngestDb,
    pseudonym,
)

POLICY = BackoffPolicy(initial_s=0.05, max_s=0.2)
T0_NS = NOW_NS - DAY_NS
PREFIX = "biogwtest/v1"


def _ecg_frames(path: IngestPath, ecg: np.ndarray) -> list[ClinicalFrame | ResearchFrame]:
    out: list[ClinicalFrame | ResearchFrame] = []
    for seq, first in enumerate(range(0, len(ecg), 50)):
        time_ns = T0_NS + first * 4_000_000
        chunk = np.ascontiguousarray(ecg[first : first + 50])
        if path is IngestPath.CLINICAL:
            frame = Frame(
                DEVICE, StreamKind.ECG, time_ns, Timebase.UTC, chunk, Unit.MICROVOLT,
                fs_hz=250.0, sequence=seq,
            )  # fmt: skip
            out.append(ClinicalFrame(SUBJECT, frame, RECORD))
        else:
            out.append(
                ResearchFrame(
                    pseudonym(),
                    StreamKind.ECG,
                    time_ns,
                    chunk,
                    Unit.MICROVOLT,
                    250.0,
                    None,
                    seq,
                    Quality.NONE,
                    (),
                )
            )
    return out


def _ecg(seconds: int, *, flat_from_s: int | None = None) -> np.ndarray:
    ecg = build_wearer(WearerScenario(seed=4)).ecg.read(seconds * 250)
    if flat_from_s is not None:
        ecg[flat_from_s * 250 :] = ecg[flat_from_s * 250]
    return np.asarray(ecg)


async def _run_stage(stage: VitalsStage, frames: list[ClinicalFrame | ResearchFrame]) -> None:
    task = asyncio.create_task(stage.run())
    try:
        for i in range(0, len(frames), 100):
            await stage.offer(frames[i : i + 100])
        await asyncio.wait_for(stage.drained(), 60)
        assert stage.counters.frames == len(frames)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def _fetch(dsn: str, query: str) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(query)
        return list(await cur.fetchall())


async def test_vitals_are_stored_once_in_the_paths_database(ingest_db: IngestDb) -> None:
    db = ingest_db
    frames = _ecg_frames(db.path, _ecg(70))
    first = VitalsStage(db.path, dsn=db.ingest_dsn, policy=POLICY)
    await _run_stage(first, frames)
    rows = await _fetch(db.admin_dsn, f"SELECT kind, count(*) FROM {db.schema}.vitals GROUP BY 1")
    counts = {str(k): int(n) for k, n in rows}
    assert counts.get("hr_bpm", 0) >= 6
    assert counts.get("hr_beat_bpm", 0) >= 60
    assert counts.get("sdnn_ms", 0) == 1
    assert first.counters.vitals == sum(counts.values())
    restarted = VitalsStage(db.path, dsn=db.ingest_dsn, policy=POLICY)
    await _run_stage(restarted, frames)
    assert restarted.counters.vitals == 0, "the same findings again are not stored twice"
    rows = await _fetch(db.admin_dsn, f"SELECT count(*) FROM {db.schema}.vitals")
    assert rows[0][0] == sum(counts.values())


async def test_an_alert_is_stored_once_and_published_once(
    new_database: Callable[[], Awaitable[str]], owned_broker: MosquittoBroker
) -> None:
    dsn = await new_database()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await migrate(conn, load_migrations("care"))
    ingest_dsn = make_conninfo(dsn, user="clinical_ingest_login")
    frames = _ecg_frames(IngestPath.CLINICAL, _ecg(40, flat_from_s=25))
    mqtt = owned_broker.endpoint.settings(topic_prefix=PREFIX)
    publisher = AlertPublisher(mqtt, client_id="biogw-test-alerts", policy=POLICY)
    async with subscribed(owned_broker.endpoint, "dashboard", f"{PREFIX}/alerts/#") as dashboard:
        publishing = asyncio.create_task(publisher.run())
        try:
            for attempt in range(2):  # the second time: a redelivery after a restart
                stage = VitalsStage(
                    IngestPath.CLINICAL, dsn=ingest_dsn, policy=POLICY, on_alert=publisher.offer
                )
                await _run_stage(stage, frames)
                if attempt == 0:
                    assert stage.counters.alerts >= 1
                    message = await dashboard.get()
                else:
                    assert stage.counters.alerts == 0
            await asyncio.wait_for(publisher.drained(), 30)
        finally:
            publishing.cancel()
            with pytest.raises(asyncio.CancelledError):
                await publishing
        await dashboard.sync()
        assert dashboard.queue.empty(), "published once"
    body = json.loads(message.payload)
    stored = await _fetch(dsn, "SELECT id, subject_id, kind, severity, ts FROM clinical.alerts")
    by_id = {str(row[0]): row for row in stored}
    assert body["id"] in by_id
    _, subject, kind, severity, ts = by_id[body["id"]]
    assert subject == SUBJECT
    assert body["subject_id"] == str(SUBJECT)
    assert kind in ("lead_off", "flat_line", "asystole")
    assert body["kind"] == kind
    assert body["severity"] == severity in ("warning", "critical")
    assert message.topic == f"{PREFIX}/alerts/{SUBJECT}/{kind}"
    assert abs((ts.timestamp() * 1e9 - T0_NS) / 1e9 - 25.0) <= 5.0, "onset near the flat line"
    assert uuid.UUID(body["id"]).version == 5


async def test_findings_the_database_refuses_are_dropped_not_retried(
    ingest_db: IngestDb,
) -> None:
    db = ingest_db
    owner = SUBJECT if db.path is IngestPath.CLINICAL else pseudonym()
    stage = VitalsStage(db.path, dsn=db.ingest_dsn, policy=POLICY)
    bad = [VitalRow(owner, T0_NS, "hr_bpm", 60.0, 0.0, 100)]  # window_s must be > 0
    far = [  # days months apart in one batch (research shifts differ per wearer)
        VitalRow(owner, T0_NS + days * DAY_NS, "hr_bpm", 61.0, 10.0, 100) for days in (0, 90, 180)
    ]
    try:
        assert await asyncio.wait_for(stage._store(bad, []), 30) == []
        assert stage.counters.dropped == 1
        await asyncio.wait_for(stage._store(far, []), 30)
    finally:
        await stage._db.close()
    assert stage.counters.vitals == 3
    rows = await _fetch(db.admin_dsn, f"SELECT count(*) FROM {db.schema}.vitals")
    assert rows[0][0] == 3


def test_an_ongoing_condition_found_again_is_stored_but_not_announced_again() -> None:
    stage = VitalsStage(IngestPath.CLINICAL, dsn="", policy=POLICY, realert_s=300)
    t0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)

    def alert(minutes: float, kind: str, severity: str) -> StoredAlert:
        ts = t0 + timedelta(minutes=minutes)
        return StoredAlert(alert_id(SUBJECT, kind, ts), SUBJECT, ts, kind, severity, None, {})

    first = stage._to_publish([alert(0, "tachycardia", "warning"), alert(0, "fever", "info")])
    assert [a.kind for a in first] == ["tachycardia"]  # info is never published
    again = stage._to_publish([alert(2, "tachycardia", "warning"), alert(3, "apnoea", "critical")])
    assert [a.kind for a in again] == ["apnoea"]  # the restart's tachycardia is held
    worse = stage._to_publish([alert(4, "tachycardia", "critical")])
    assert [a.severity for a in worse] == ["critical"]  # more severe: announced
    later = stage._to_publish([alert(10, "tachycardia", "critical")])
    assert len(later) == 1  # past the hold-off
    assert stage.counters.held == 1
