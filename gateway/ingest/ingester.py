"""One ingest path: MQTT (shared subscription, manual acks) into one database, in batches.

Role: ``PathIngester`` subscribes to one topic tree (the clinical or the research one),
collects deliveries into a batch (closed by ``batch_max_messages`` or ``batch_max_s``
after its first message, so a quiet stream is still committed within a second),
classifies each message (``validate.classify``: a decoded frame or gap, or a dead
letter with its reason), writes the batch in one transaction (``SignalWriter``) and only
then acknowledges its messages to the broker, in arrival order; the committed frames go
on to the vitals stage (``vitals.VitalsStage``), if any. Classifying the next
batch overlaps the commit of the previous one (a committer task; one batch waits at
most). A crash anywhere before
the acknowledgement makes the broker deliver the batch again; the writer stores each
frame once and counts the rest as duplicates.

Failures:

* the broker goes away: the connection is rebuilt with backoff; un-acknowledged messages
  come back on the persistent session (a batch already committed is then deduplicated);
* the database goes away: the batch is retried with backoff until it commits; meanwhile
  nothing is acknowledged, so the broker holds every later message (the subscriber keeps
  its connection alive, and the Receive Maximum bounds what it buffers);
* the database refuses a row (a data or integrity error no validation foresaw): the batch
  is split in halves until the offending message is alone, which becomes a dead letter
  with reason ``db_<sqlstate>``; every other message is stored;
* the broker refuses the subscription (its ACL): ``run`` ends with that error, a
  configuration problem that retrying cannot fix.

Must not: acknowledge a message before the transaction holding it has committed, log a
topic, payload or subject id above DEBUG, or stop on bad input.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from gateway.backoff import BackoffPolicy, BackoffState
from gateway.config import IngestSettings, MqttSettings
from gateway.ingest.dbconn import LazyConnection
from gateway.ingest.validate import DeadLetter, IngestPath, Item, classify, message_digest
from gateway.ingest.vitals import VitalsStage
from gateway.ingest.writer import SignalWriter, WriteResult
from gateway.router import ClinicalGap, ResearchGap
from gateway.store import StoreError
from gateway.transport.mqtt_client import TransportError, client_options
from gateway.transport.mqtt_sub import Delivery, SubscriberConnection, SubscriberOptions
from gateway.transport.topics import TopicLayout

__all__ = ["IngestCounters", "PathIngester"]

_GAPS: Final = (ClinicalGap, ResearchGap)

logger = logging.getLogger(__name__)

_SPLIT_CLASSES: Final = frozenset({"22", "23"})
"""SQLSTATE classes that blame a row (data exception, integrity violation), not the
database: the batch is split to find it."""


@dataclass(slots=True)
class IngestCounters:
    """What one path did; read by the metrics endpoint and the demo's table."""

    messages: int = 0
    batches: int = 0
    frames: int = 0
    samples: int = 0
    frame_duplicates: int = 0
    gaps: int = 0
    gap_duplicates: int = 0
    dead_letters: int = 0
    db_failures: int = 0
    mqtt_connects: int = 0
    mqtt_failures: int = 0
    pending: int = 0
    """Messages received and not yet acknowledged (gauge)."""
    subscribed: int = 0
    """1 while the subscription is up (gauge)."""
    last_commit_s: float = 0.0
    """Wall-clock time of the last commit (gauge; 0 before the first)."""
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)

    def add(self, result: WriteResult) -> None:
        self.frames += result.frames
        self.samples += result.samples
        self.frame_duplicates += result.frame_duplicates
        self.gaps += result.gaps
        self.gap_duplicates += result.gap_duplicates
        self.dead_letters += result.dead_letters


class PathIngester:
    """Runs one path until cancelled (``run``); never returns on its own."""

    def __init__(
        self,
        path: IngestPath,
        *,
        dsn: str,
        mqtt: MqttSettings,
        ingest: IngestSettings,
        clock: Callable[[], int] = time.time_ns,
        rng: random.Random | None = None,
        vitals: VitalsStage | None = None,
    ) -> None:
        self.path = path
        self._vitals = vitals
        self.counters = IngestCounters()
        self._mqtt = mqtt
        self._settings = ingest
        self._layout = TopicLayout(mqtt.topic_prefix)
        self._writer = SignalWriter(path, partitions_ahead_days=ingest.partitions_ahead_days)
        self._clock = clock
        self._rng = rng or random.Random()  # jitter only
        self._policy = BackoffPolicy(initial_s=ingest.retry_initial_s, max_s=ingest.retry_max_s)
        self._db = LazyConnection(dsn, name=f"ingest[{self.path}]")
        self._refused: set[bytes] = set()
        """Digests of the batch's messages the database refused (now dead letters)."""

    @property
    def client_id(self) -> str:
        return f"biogw-{self._settings.id}-{self.path.value}"

    def _topic_filter(self) -> str:
        group = self._settings.share_group
        if self.path is IngestPath.CLINICAL:
            return self._layout.clinical_filter(share_group=group)
        return self._layout.research_filter(share_group=group)

    def _subscriber_options(self) -> SubscriberOptions:
        base = client_options(self._mqtt, gateway_id=self._settings.id)
        return SubscriberOptions.from_client_options(
            base,
            client_id=self.client_id,
            session_expiry_s=self._settings.session_expiry_s,
            receive_maximum=self._settings.receive_maximum,
        )

    async def run(self) -> None:
        """Connect, subscribe, ingest; reconnect with backoff whenever the broker goes."""
        state = BackoffState()
        try:
            while True:
                delay = self._policy.delay_s(state, self._rng.random())
                if delay:
                    await asyncio.sleep(delay)
                try:
                    conn = await SubscriberConnection.open(self._subscriber_options())
                except TransportError as exc:
                    self.counters.mqtt_failures += 1
                    logger.warning("%s ingest: broker unreachable (%s)", self.path, exc.kind)
                    state = self._policy.failed(state)
                    continue
                self.counters.mqtt_connects += 1
                state = self._policy.connected(state, time.monotonic())
                try:
                    await self._session(conn)
                except TransportError as exc:
                    self.counters.mqtt_failures += 1
                    logger.warning("%s ingest: broker connection lost (%s)", self.path, exc.kind)
                finally:
                    await conn.close()
                state = self._policy.disconnected(state, time.monotonic())
        finally:
            await self._db.close()

    async def _session(self, conn: SubscriberConnection) -> None:
        """One broker connection: a collector (this task) classifies batches while a
        committer task writes the previous one, so decoding overlaps the database's work.
        At most one batch waits for the committer; when the database is slow or down the
        collector stops taking deliveries and the broker holds the rest."""
        await conn.subscribe([self._topic_filter()])  # reads the stream itself until SUBACK
        reader = asyncio.create_task(conn.run(), name=f"ingest[{self.path}].mqtt")
        ready: asyncio.Queue[_Batch | None] = asyncio.Queue(maxsize=1)
        committer = asyncio.create_task(
            self._commit_loop(conn, ready), name=f"ingest[{self.path}].commit"
        )
        self.counters.subscribed = 1
        try:
            while True:
                batch, ended = await self._collect(conn)
                if batch:
                    await _hand_over(ready, self._classify(batch, ack=ended is None), committer)
                    self.counters.pending += len(batch)
                if ended is not None:
                    await _hand_over(ready, None, committer)
                    await committer  # whatever was collected is still committed
                    raise ended
        finally:
            self.counters.subscribed = 0
            for task in (reader, committer):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, TransportError):
                    await task
            self.counters.pending = 0

    async def _commit_loop(
        self, conn: SubscriberConnection, ready: asyncio.Queue[_Batch | None]
    ) -> None:
        """Commit batches in arrival order, acknowledging each after its commit (so the
        PUBACKs go out in the order the PUBLISHes came)."""
        while (batch := await ready.get()) is not None:
            await self._write(batch.entries)
            self.counters.batches += 1
            self.counters.last_commit_s = time.time()
            self.counters.pending -= len(batch.entries)
            if batch.acks:
                with contextlib.suppress(TransportError):  # gone: redelivered, deduplicated
                    conn.ack(batch.acks)
            if self._vitals is not None:  # waits while the vitals stage is behind
                refused, self._refused = self._refused, set()
                stored = [e.item for e in batch.entries if e.digest not in refused]
                await self._vitals.offer(stored)

    def _classify(self, batch: Sequence[Delivery], *, ack: bool) -> _Batch:
        now_ns = self._clock()
        path, layout = self.path, self._layout
        entries = [
            _Entry(
                classify(path, layout, d.topic, d.payload, now_ns=now_ns),
                d.payload,
                message_digest(d.topic, d.payload),
            )
            for d in batch
        ]
        self.counters.messages += len(batch)
        acks = [d.packet_id for d in batch if d.packet_id] if ack else []
        return _Batch(entries, acks)

    async def _collect(
        self, conn: SubscriberConnection
    ) -> tuple[list[Delivery], TransportError | None]:
        """The next batch, and the error that ended the connection meanwhile (if any):
        what arrived before it is still stored (its redelivery is then a duplicate)."""
        limit = self._settings.batch_max_messages
        batch: list[Delivery] = []
        try:
            batch.extend(await conn.receive(None))
            deadline = time.monotonic() + self._settings.batch_max_s
            while len(batch) < limit:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                batch.extend(await conn.receive(left))
        except TransportError as exc:
            return batch, exc
        return batch, None

    async def _write(self, entries: list[_Entry], *, last_resort: bool = False) -> None:
        """Commit ``entries``, retrying with backoff while the database is unavailable.
        A refused row (data or integrity error) is isolated by ``_split``; when
        ``last_resort`` (a dead letter replacing a refused one) is refused too, that is a
        bug and it is raised."""
        state = BackoffState()
        items = [entry.item for entry in entries]
        while True:
            try:
                conn = await self._db.get()
                result = await self._writer.write(conn, items)
            except StoreError as exc:
                if (exc.sqlstate or "")[:2] in _SPLIT_CLASSES:
                    if last_resort:
                        raise
                    await self._split(entries, exc)
                    return
                self.counters.db_failures += 1
                logger.warning("%s ingest: database write failed (%s)", self.path, exc)
                await self._db.close()
                state = self._policy.failed(state)
                await asyncio.sleep(self._policy.delay_s(state, self._rng.random()))
                continue
            self._count(items, result)
            return

    async def _split(self, entries: list[_Entry], exc: StoreError) -> None:
        """A row was refused: find it by halving; it becomes a dead letter."""
        if len(entries) > 1:
            middle = len(entries) // 2
            await self._write(entries[:middle])
            await self._write(entries[middle:])
            return
        item, raw, digest = entries[0].item, entries[0].payload, entries[0].digest
        self._refused.add(digest)  # not stored: no vitals from it either
        reason = f"db_{exc.sqlstate}"
        if isinstance(item, DeadLetter):  # even the dead letter was refused: keep less
            dead = DeadLetter(item.topic_class, reason, None, item.digest)
        else:
            # A decoded research message carries no identifier, so its bytes may stay.
            topic_class = "gaps" if isinstance(item, _GAPS) else "frames"
            dead = DeadLetter(topic_class, reason, raw, digest)
        logger.warning("%s ingest: a message refused by the database (%s)", self.path, reason)
        await self._write([_Entry(dead, raw, digest)], last_resort=True)

    def _count(self, items: Sequence[Item], result: WriteResult) -> None:
        self.counters.add(result)
        for item in items:
            if isinstance(item, DeadLetter):
                self.counters.dead_letter_reasons[item.reason] += 1


async def _hand_over(
    ready: asyncio.Queue[_Batch | None], batch: _Batch | None, committer: asyncio.Task[None]
) -> None:
    """Queue ``batch`` for the committer; if the committer ends first (only a bug ends
    it), raise its error instead of waiting for ever."""
    put = asyncio.ensure_future(ready.put(batch))
    done, _ = await asyncio.wait({put, committer}, return_when=asyncio.FIRST_COMPLETED)
    if put in done:
        return
    put.cancel()
    committer.result()  # raises what ended it
    raise RuntimeError("the committer ended without an error")


@dataclass(frozen=True, slots=True)
class _Entry:
    item: Item
    payload: bytes
    digest: bytes


@dataclass(frozen=True, slots=True)
class _Batch:
    entries: list[_Entry]
    acks: list[int]
    """Packet ids to acknowledge once committed (empty when the connection has ended)."""
