"""Consent events in the care database, and a watcher that keeps a running gateway's view
of them fresh within a second (PostgreSQL LISTEN/NOTIFY).

Storage (schema ``consent``, migration 0002): a ``Grant`` writes its record as version 1
(status ``active``) and a ``grant`` event; a ``Withdrawal`` writes a new version of the
record (status ``inactive``, the withdrawal's collection method and recorded time) and a
``withdraw`` event whose ``at`` is the withdrawal's effective time. Grant events' ``at`` is
the record's recorded time. Every append sends ``NOTIFY biogw_consent, '<subject uuid>'``
in the same transaction, so listeners hear of it exactly when it commits.

Order: a subject's log is kept in recorded-time order. ``append_events`` refuses an event
recorded before the subject's latest one, and loading sorts by recorded time, grants before
withdrawals, then event id; only events recorded at the same instant (one transaction)
can come back in another order than appended, which no decision depends on.

Precision: PostgreSQL keeps microseconds, so every time must be a whole number of
microseconds (``ConsentError("bad_precision")`` otherwise): nothing is silently rounded.

Must not: open connections other than the watcher's own, read configuration, or log
subject ids above DEBUG.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final, Self
from uuid import UUID

import psycopg

from gateway.consent import (
    CollectionMethod,
    ConsentError,
    ConsentEvent,
    ConsentHistory,
    ConsentRecord,
    ConsentStatus,
    Grant,
    Period,
    Scope,
    Withdrawal,
)
from gateway.store import StoreError, translate_error

__all__ = [
    "CHANNEL",
    "ConsentWatcher",
    "append_events",
    "datetime_from_ns",
    "load_all_histories",
    "load_history",
    "ns_from_datetime",
]

_log = logging.getLogger(__name__)

#: The NOTIFY channel; the payload is the subject's UUID.
CHANNEL: Final = "biogw_consent"

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_NS_PER_US: Final = 1000

_SELECT = """
SELECT e.subject_id, e.id, e.kind, e.at, r.id, r.scope, r.status, r.period_start,
       r.period_end, r.actor, r.purpose, r.policy_version, r.policy_text_sha256,
       r.collection_method, r.recorded_at
FROM consent.events e
JOIN consent.records r ON r.id = e.record_id AND r.version = e.record_version
"""
_ORDER = " ORDER BY e.subject_id, r.recorded_at, e.kind = 'withdraw', e.id"

_INSERT_RECORD = """
INSERT INTO consent.records
    (id, version, subject_id, scope, status, period_start, period_end, actor, purpose,
     policy_version, policy_text_sha256, collection_method, recorded_at)
VALUES (%s, (SELECT coalesce(max(version), 0) + 1 FROM consent.records WHERE id = %s),
        %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
RETURNING version
"""
_INSERT_EVENT = """
INSERT INTO consent.events (id, at, subject_id, record_id, record_version, kind, actor_role)
VALUES (%s, %s, %s, %s, %s, %s, %s)
"""


def datetime_from_ns(at_ns: int) -> datetime:
    """UTC ns → aware datetime; ``ConsentError("bad_precision")`` below a microsecond."""
    if at_ns % _NS_PER_US:
        raise ConsentError("bad_precision", "consent times must be whole microseconds")
    return _EPOCH + timedelta(microseconds=at_ns // _NS_PER_US)


def ns_from_datetime(at: datetime) -> int:
    """Aware datetime → UTC ns (exact: timestamptz has microsecond resolution)."""
    return (at - _EPOCH) // timedelta(microseconds=1) * _NS_PER_US


@dataclass(frozen=True, slots=True)
class _Row:
    subject_id: UUID
    event_id: UUID
    kind: str
    at: datetime
    record: ConsentRecord


def _row(values: Sequence[Any]) -> _Row:
    end = values[8]
    record = ConsentRecord(
        record_id=values[4],
        subject_id=values[0],
        scope=Scope(values[5]),
        period=Period(ns_from_datetime(values[7]), None if end is None else ns_from_datetime(end)),
        actor=values[9],
        purpose=values[10],
        policy_version=values[11],
        policy_text_sha256=bytes(values[12]).hex(),
        collection_method=CollectionMethod(values[13]),
        recorded_at_ns=ns_from_datetime(values[14]),
        status=ConsentStatus(values[6]),
    )
    return _Row(values[0], values[1], values[2], values[3], record)


def _events(rows: Iterable[_Row]) -> list[ConsentEvent]:
    """Rebuild one subject's events from rows in load order."""
    granted: dict[UUID, ConsentRecord] = {}
    events: list[ConsentEvent] = []
    for row in rows:
        if row.kind == "grant":
            granted[row.record.record_id] = row.record
            events.append(Grant(row.event_id, row.record))
        elif row.kind == "withdraw":
            original = granted.get(row.record.record_id)
            if original is None:
                raise ConsentError("unknown_record", "stored withdrawal precedes its grant")
            events.append(
                Withdrawal(
                    event_id=row.event_id,
                    record=original,
                    effective_ns=ns_from_datetime(row.at),
                    recorded_at_ns=row.record.recorded_at_ns,
                    collection_method=row.record.collection_method,
                )
            )
        else:
            raise ConsentError("unsupported_event", f"stored event kind {row.kind!r}")
    return events


async def _fetch(
    conn: psycopg.AsyncConnection[Any], where: str, params: tuple[Any, ...], operation: str
) -> list[_Row]:
    try:
        cur = await conn.execute(_SELECT + where + _ORDER, params)
        return [_row(values) for values in await cur.fetchall()]
    except psycopg.Error as exc:
        raise translate_error(exc, operation) from exc


async def load_history(conn: psycopg.AsyncConnection[Any], subject_id: UUID) -> ConsentHistory:
    """The subject's consent history (empty if it has no events)."""
    rows = await _fetch(conn, " WHERE e.subject_id = %s", (subject_id,), "consent.load")
    return ConsentHistory(subject_id, tuple(_events(rows)))


async def load_all_histories(conn: psycopg.AsyncConnection[Any]) -> dict[UUID, ConsentHistory]:
    """Every subject that has consent events, with its history."""
    by_subject: dict[UUID, list[_Row]] = {}
    for row in await _fetch(conn, "", (), "consent.load_all"):
        by_subject.setdefault(row.subject_id, []).append(row)
    return {s: ConsentHistory(s, tuple(_events(rows))) for s, rows in by_subject.items()}


def _check_append(current: ConsentHistory, events: Sequence[ConsentEvent]) -> ConsentHistory:
    latest = max((e.recorded_at_ns for e in current.events), default=None)
    for event in events:
        if latest is not None and event.recorded_at_ns < latest:
            raise ConsentError("out_of_order", "event recorded before the subject's latest")
        latest = event.recorded_at_ns
        datetime_from_ns(event.recorded_at_ns)  # precision checks, before any write
        datetime_from_ns(event.record.period.start_ns)
        if event.record.period.end_ns is not None:
            datetime_from_ns(event.record.period.end_ns)
        if isinstance(event, Withdrawal):
            datetime_from_ns(event.effective_ns)
    return current.append(*events)  # validates grants/withdrawals against the log


async def _insert(conn: psycopg.AsyncConnection[Any], event: ConsentEvent, actor_role: str) -> None:
    record = event.record
    if isinstance(event, Grant):
        status, method, kind = ConsentStatus.ACTIVE, record.collection_method, "grant"
        recorded_ns, at_ns = record.recorded_at_ns, record.recorded_at_ns
    else:
        status, method, kind = ConsentStatus.INACTIVE, event.collection_method, "withdraw"
        recorded_ns, at_ns = event.recorded_at_ns, event.effective_ns
    end = record.period.end_ns
    cur = await conn.execute(
        _INSERT_RECORD,
        (
            record.record_id,
            record.record_id,
            record.subject_id,
            record.scope.value,
            status.value,
            datetime_from_ns(record.period.start_ns),
            None if end is None else datetime_from_ns(end),
            record.actor,
            record.purpose,
            record.policy_version,
            bytes.fromhex(record.policy_text_sha256),
            method.value,
            datetime_from_ns(recorded_ns),
        ),
    )
    version = await cur.fetchone()
    if version is None:  # RETURNING always yields the row; guard the type
        raise StoreError("consent.append", None, "no record version returned")
    await conn.execute(
        _INSERT_EVENT,
        (
            event.event_id,
            datetime_from_ns(at_ns),
            record.subject_id,
            record.record_id,
            version[0],
            kind,
            actor_role,
        ),
    )


async def append_events(
    conn: psycopg.AsyncConnection[Any], events: Sequence[ConsentEvent], *, actor_role: str
) -> ConsentHistory:
    """Persist one subject's ``events`` atomically and notify listeners; return the
    subject's history including them.

    Runs in one transaction (a savepoint if the caller has one open) holding a per-subject
    advisory lock, so concurrent appends for a subject are checked against each other.
    Raises ``ConsentError`` (nothing written) if the events are empty, mix subjects, are
    out of order, not whole microseconds, or invalid against the stored history (e.g. a
    withdrawal of a record never granted); ``StoreError`` subclasses for database failures.
    """
    if not events:
        raise ConsentError("no_events", "nothing to append")
    subject_id = events[0].subject_id
    if any(e.subject_id != subject_id for e in events):
        raise ConsentError("wrong_subject", "one append covers one subject")
    try:
        async with conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"biogw.consent:{subject_id}",),
            )
            updated = _check_append(await load_history(conn, subject_id), events)
            for event in events:
                await _insert(conn, event, actor_role)
            await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(subject_id)))
    except psycopg.Error as exc:
        raise translate_error(exc, "consent.append") from exc
    return updated


ReloadCallback = Callable[[UUID], None]


class ConsentWatcher:
    """Keeps every subject's ``ConsentHistory`` in memory, fresh within a notification.

    An async context manager: on entry it opens two autocommit connections to
    ``conninfo`` (one LISTENs on ``biogw_consent``, one loads), LISTENs *before* loading
    every history (so no change falls between the load and the first notification), and
    starts its listener task. Each notification reloads that subject and then calls
    ``on_reload(subject_id)``. ``history_for`` is the router's ``ConsentSource``.

    If the listener fails (the connection broke), the error propagates: the task group
    it runs in cancels the task that entered the watcher, so a stale cache never serves
    silently. Exit stops the listener and closes both connections.
    """

    def __init__(self, conninfo: str, *, on_reload: ReloadCallback | None = None) -> None:
        self._conninfo = conninfo
        self._on_reload = on_reload
        self._cache: dict[UUID, ConsentHistory] = {}
        self._stack: AsyncExitStack | None = None
        self._task: asyncio.Task[None] | None = None

    def history_for(self, subject_id: UUID) -> ConsentHistory | None:
        """The subject's cached history, ``None`` if it has no consent events."""
        return self._cache.get(subject_id)

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            try:
                listen = await stack.enter_async_context(
                    await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
                )
                load = await stack.enter_async_context(
                    await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
                )
                await listen.execute(f"LISTEN {CHANNEL}")
            except psycopg.Error as exc:
                raise translate_error(exc, "consent.watch") from exc
            self._cache = await load_all_histories(load)
            group = await stack.enter_async_context(asyncio.TaskGroup())
            self._task = group.create_task(self._listen(listen, load), name="consent.watch")
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if stack is not None:
            # The task group sees the body's exception (e.g. the cancellation it caused).
            await stack.__aexit__(exc_type, exc, tb)

    async def _listen(
        self, listen: psycopg.AsyncConnection[Any], load: psycopg.AsyncConnection[Any]
    ) -> None:
        try:
            async for notify in listen.notifies():
                await self._reload(load, notify.payload)
        except psycopg.Error as exc:
            raise translate_error(exc, "consent.watch") from exc

    async def _reload(self, load: psycopg.AsyncConnection[Any], payload: str) -> None:
        try:
            subject_id = UUID(payload)
        except ValueError:
            _log.warning("ignoring a %s notification that is not a subject id", CHANNEL)
            return
        history = await load_history(load, subject_id)
        if history.events:
            self._cache[subject_id] = history
        else:
            self._cache.pop(subject_id, None)
        _log.debug("consent of subject %s reloaded (%d events)", subject_id, len(history.events))
        if self._on_reload is not None:
            self._on_reload(subject_id)
