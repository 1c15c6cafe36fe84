"""The vitals stage of one ingest path: committed frames → processing → vitals and alerts.

Role: ``VitalsStage`` receives the frames of every committed batch (``offer``, from the
ingester's committer), runs the per-stream processors on them (``tracks.Tracks``, in a
worker thread so the event loop keeps serving MQTT), and stores what they find in one
transaction: vitals into ``{schema}.vitals`` (both paths; ``ON CONFLICT DO NOTHING`` on
the table's key, so a redelivered batch adds nothing), and, on the clinical path, events
into ``clinical.alerts`` keyed by (subject, kind, onset). Alerts stored now (not
already stored) of severity warning or critical go to ``on_alert`` (the MQTT alert
publisher) after the commit, except one of the same subject and kind as one published in
the last ``realert_s`` (5 min) that is not more severe: a stream that restarts (link
loss, ingester restart) finds an ongoing condition again, which is stored, not
re-announced. The research path stores vitals only: the research database
has no alerts, and no one there is to be alerted.

Overflow: ``offer`` waits while ``queue_batches`` batches are queued, which holds the
committer and, through it, the broker (nothing is dropped). A database outage is retried
with backoff (the findings wait in memory); findings the database refuses (SQLSTATE
classes 22, 23, 42) are dropped and counted, never retried for ever. A processor that
fails costs its own stream's state only (``tracks``).

One vitals-computing ingester per path: the processors need each stream's frames in
order, which a shared subscription split among several ingesters does not give (each
would see every stream with holes). Scale out by giving each ingester its own wearers.

Vitals are derived data: frames are committed (and acknowledged) before their vitals. A
crash loses the processors' state and the findings not yet stored; after a restart the
tracks start afresh (a few seconds of warm-up, windows aligned to the new start).

Must not: log values, topics or subject ids; block the event loop with processing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.types.json import Jsonb

from gateway.backoff import BackoffPolicy, BackoffState
from gateway.ingest.dbconn import LazyConnection
from gateway.ingest.tracks import Tracks
from gateway.ingest.validate import DAY_NS, IngestPath
from gateway.ingest.vital_rows import AlertRow, VitalRow
from gateway.router import ClinicalFrame, ResearchFrame
from gateway.store import StoreError, translate_error
from gateway.store.partitions import SignalSchema, ensure_partitions

__all__ = ["ALERT_NAMESPACE", "StoredAlert", "VitalsCounters", "VitalsStage"]

logger = logging.getLogger(__name__)

ALERT_NAMESPACE: Final = uuid.UUID("6f1b9b64-1d0c-4b8e-9a57-0d6c2f1e4a11")
"""An alert's id is uuid5 of this and (subject, kind, onset): the same alert found again
from the same frames (a redelivered batch) is the same row. A condition still present
after a restart of the stream (ingester restart, link loss) is found again with a new
onset: a new alert."""
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_RANK: Final = {"warning": 1, "critical": 2}
"""The severities published, by rank."""
_PERMANENT: Final = frozenset({"22", "23", "42"})
"""SQLSTATE classes that retrying cannot fix: data, integrity, syntax or privilege."""

StoredFrame = ClinicalFrame | ResearchFrame


@dataclass(frozen=True, slots=True)
class StoredAlert:
    """An alert as stored and published."""

    id: uuid.UUID
    subject_id: uuid.UUID
    ts: datetime
    kind: str
    severity: str
    end_ts: datetime | None
    detail: dict[str, float | str]


@dataclass(slots=True)
class VitalsCounters:
    frames: int = 0
    """Frames handed to the processors."""
    vitals: int = 0
    """Vitals stored (not counting ones already stored)."""
    alerts: int = 0
    skipped: int = 0
    """Frames not processed: redelivered, or of a shape no processor takes."""
    rejected: int = 0
    """Chunks a processor refused (bad samples)."""
    failed: int = 0
    """Processor failures (bugs); the stream starts afresh."""
    dropped: int = 0
    """Findings the database refused (not retried)."""
    held: int = 0
    """Alerts stored but not published: the same subject and kind was announced lately."""
    restarts: int = 0
    db_failures: int = 0
    tracks: int = 0
    """Streams being processed (gauge)."""
    queued: int = 0
    """Batches waiting for the processors (gauge)."""


def _ts(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1000)


def alert_id(subject_id: uuid.UUID, kind: str, ts: datetime) -> uuid.UUID:
    return uuid.uuid5(ALERT_NAMESPACE, f"{subject_id}/{kind}/{ts.isoformat()}")


class VitalsStage:
    def __init__(
        self,
        path: IngestPath,
        *,
        dsn: str,
        policy: BackoffPolicy,
        on_alert: Callable[[Sequence[StoredAlert]], None] | None = None,
        queue_batches: int = 16,
        tick_s: float = 1.0,
        realert_s: float = 300.0,
        clock: Callable[[], int] = time.time_ns,
        rng: random.Random | None = None,
    ) -> None:
        self.path = path
        self.counters = VitalsCounters()
        self._policy = policy
        self._on_alert = on_alert
        self._queue: asyncio.Queue[list[StoredFrame]] = asyncio.Queue(maxsize=queue_batches)
        self._tick_s = tick_s
        self._realert = timedelta(seconds=realert_s)
        self._published: dict[tuple[uuid.UUID, str], tuple[datetime, int]] = {}
        """(subject, kind) → onset and severity rank of the last alert published."""
        self._clock = clock
        self._rng = rng or random.Random()  # jitter only
        self._tracks = Tracks()
        self._db = LazyConnection(dsn, name=f"vitals[{self.path}]")
        self._schema: SignalSchema = "clinical" if path is IngestPath.CLINICAL else "pseudo"
        schema = path.schema
        self._insert_vitals = sql.SQL(
            "INSERT INTO {} ({}, ts, kind, value, window_s, quality)"
            " SELECT * FROM unnest(%s::{}[], %s::timestamptz[], %s::text[],"
            " %s::float8[], %s::float8[], %s::int[]) ON CONFLICT DO NOTHING"
        ).format(
            sql.Identifier(schema, "vitals"),
            sql.Identifier("subject_id" if path is IngestPath.CLINICAL else "pseudonym"),
            sql.SQL("uuid" if path is IngestPath.CLINICAL else "text"),
        )

    async def offer(self, items: Sequence[object]) -> None:
        """Queue the frames among ``items`` (a committed batch); waits while full."""
        frames = [i for i in items if isinstance(i, ClinicalFrame | ResearchFrame)]
        if frames:
            await self._queue.put(frames)
            self.counters.queued = self._queue.qsize()

    async def drained(self) -> None:
        """Return once everything offered so far is processed and stored."""
        await self._queue.join()

    async def run(self) -> None:
        """Process and store until cancelled. While no frames come, the streams that went
        quiet are still flushed every ``tick_s`` (a wearer whose garment fell silent right
        after a fall still has that fall's last second processed)."""
        try:
            while True:
                taken = 0
                frames: list[StoredFrame] = []
                with contextlib.suppress(TimeoutError):
                    frames = await asyncio.wait_for(self._queue.get(), self._tick_s)
                    taken = 1
                while not self._queue.empty():  # catch up in one go
                    frames.extend(self._queue.get_nowait())
                    taken += 1
                self.counters.queued = 0
                vitals, alerts = await asyncio.to_thread(self._process, frames)
                new_alerts = await self._store(vitals, alerts)
                if new_alerts and self._on_alert is not None:
                    self._on_alert(new_alerts)
                for _ in range(taken):
                    self._queue.task_done()
        finally:
            await self._db.close()

    def _process(self, frames: list[StoredFrame]) -> tuple[list[VitalRow], list[AlertRow]]:
        tracks = self._tracks
        before = (tracks.skipped, tracks.rejected, tracks.failed, tracks.restarts)
        vitals, alerts = tracks.feed(frames, now_ns=self._clock())
        counters = self.counters
        counters.frames += len(frames)
        counters.skipped += tracks.skipped - before[0]
        counters.rejected += tracks.rejected - before[1]
        counters.failed += tracks.failed - before[2]
        counters.restarts += tracks.restarts - before[3]
        counters.tracks = len(tracks)
        if self.path is not IngestPath.CLINICAL:
            alerts = []
        return vitals, alerts

    async def _store(self, vitals: list[VitalRow], alerts: list[AlertRow]) -> list[StoredAlert]:
        """Store and return the alerts to publish. Retries while the database is away; a
        row it refuses (data, integrity or privilege error) drops these findings, counted:
        derived data must never hold up the frames behind it."""
        if not vitals and not alerts:
            return []
        state = BackoffState()
        while True:
            try:
                conn = await self._db.get()
                stored, new_alerts = await self._transaction(conn, vitals, alerts)
            except StoreError as exc:
                if (exc.sqlstate or "")[:2] in _PERMANENT:
                    self.counters.dropped += len(vitals) + len(alerts)
                    logger.warning("%s vitals: findings refused, dropped (%s)", self.path, exc)
                    return []
                self.counters.db_failures += 1
                logger.warning("%s vitals: database write failed (%s)", self.path, exc)
                await self._db.close()
                state = self._policy.failed(state)
                await asyncio.sleep(self._policy.delay_s(state, self._rng.random()))
                continue
            self.counters.vitals += stored
            self.counters.alerts += len(new_alerts)
            return self._to_publish(new_alerts)

    def _to_publish(self, alerts: list[StoredAlert]) -> list[StoredAlert]:
        """The warning and critical alerts to publish: not one of the same subject and kind
        within ``realert_s`` of the last one published unless it is more severe (a stream
        that restarts finds an ongoing condition again: stored, not re-announced)."""
        out: list[StoredAlert] = []
        for alert in sorted(alerts, key=lambda a: a.ts):
            rank = _RANK.get(alert.severity)
            if rank is None:
                continue
            key = (alert.subject_id, alert.kind)
            last = self._published.get(key)
            if last is not None and alert.ts - last[0] < self._realert and rank <= last[1]:
                self.counters.held += 1
                continue
            self._published[key] = (alert.ts, rank)
            out.append(alert)
        if len(self._published) > 10_000:  # keep it bounded: only recent ones matter
            newest = max(ts for ts, _ in self._published.values())
            self._published = {
                k: v for k, v in self._published.items() if newest - v[0] < self._realert
            }
        return out

    async def _transaction(
        self, conn: psycopg.AsyncConnection[Any], vitals: list[VitalRow], alerts: list[AlertRow]
    ) -> tuple[int, list[StoredAlert]]:
        operation = f"ingest.{self.path.schema}.vitals"
        for attempt in (1, 2):
            try:
                async with conn.transaction():
                    return await self._insert(conn, vitals, alerts)
            except pg_errors.CheckViolation as exc:  # no partition for a day yet
                if attempt == 2:
                    raise translate_error(exc, operation) from exc
                await self._ensure_days(conn, vitals)
            except psycopg.Error as exc:
                raise translate_error(exc, operation) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _insert(
        self, conn: psycopg.AsyncConnection[Any], vitals: list[VitalRow], alerts: list[AlertRow]
    ) -> tuple[int, list[StoredAlert]]:
        """(vitals stored, alerts stored now) in the caller's transaction."""
        stored = 0
        if vitals:
            cur = await conn.execute(
                self._insert_vitals,
                (
                    [v.owner for v in vitals],
                    [_ts(v.ts_ns) for v in vitals],
                    [v.kind for v in vitals],
                    [v.value for v in vitals],
                    [v.window_s for v in vitals],
                    [v.quality for v in vitals],
                ),
            )
            stored = max(cur.rowcount, 0)
        new: list[StoredAlert] = []
        for row in alerts:  # few: one statement each tells which are new
            if not isinstance(row.owner, uuid.UUID):
                continue
            ts = _ts(row.ts_ns)
            alert = StoredAlert(
                alert_id(row.owner, row.kind, ts),
                row.owner,
                ts,
                row.kind,
                row.severity,
                None if row.end_ns is None else _ts(row.end_ns),
                row.detail,
            )
            cur = await conn.execute(
                "INSERT INTO clinical.alerts (id, subject_id, ts, kind, severity, end_ts, detail)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (
                    alert.id,
                    alert.subject_id,
                    alert.ts,
                    alert.kind,
                    alert.severity,
                    alert.end_ts,
                    Jsonb(alert.detail),
                ),
            )
            if cur.rowcount > 0:
                new.append(alert)
        return stored, new

    async def _ensure_days(
        self, conn: psycopg.AsyncConnection[Any], vitals: list[VitalRow]
    ) -> None:
        """The day partitions of the findings' days, one day at a time (research days of
        one batch can lie months apart: each wearer has its own shift)."""
        for day in sorted({v.ts_ns // DAY_NS for v in vitals}):
            start = _EPOCH + timedelta(days=day)
            async with conn.transaction():
                await ensure_partitions(
                    conn, self._schema, ("vitals",), start, start + timedelta(days=1)
                )
