"""Consent events in PostgreSQL: exact round trips, refusals that write nothing, NOTIFY in
the appending transaction, and the watcher's cache seeing another connection's change
within 1 s (waiting on an event its reload sets, never polling)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from gateway.consent import (
    CollectionMethod,
    ConsentError,
    ConsentEvent,
    ConsentHistory,
    ConsentRecord,
    Grant,
    Period,
    Scope,
    Withdrawal,
    decide,
)
from gateway.store import StoreUnavailableError
from gateway.store.consents import (
    ConsentWatcher,
    append_events,
    load_all_histories,
    load_history,
)
from gateway.store.identity import add_subject

Conn = psycopg.AsyncConnection[Any]

T0 = 1_750_000_000_000_000_000  # UTC ns, whole microseconds
S = 1_000_000_000
POLICY_SHA = "ab" * 32


def grant(
    subject_id: UUID,
    scope: Scope,
    *,
    start_ns: int,
    recorded_ns: int,
    end_ns: int | None = None,
    actor: str | None = None,
) -> Grant:
    record = ConsentRecord(
        record_id=uuid4(),
        subject_id=subject_id,
        scope=scope,
        period=Period(start_ns, end_ns),
        actor=actor,
        purpose="HRESCH",
        policy_version="2026-01",
        policy_text_sha256=POLICY_SHA,
        collection_method=CollectionMethod.APP,
        recorded_at_ns=recorded_ns,
    )
    return Grant(uuid4(), record)


def withdraw(event: Grant, *, effective_ns: int, recorded_ns: int) -> Withdrawal:
    return Withdrawal(uuid4(), event.record, effective_ns, recorded_ns, CollectionMethod.PAPER)


@pytest.fixture
async def subject(admin: Conn) -> UUID:
    return await add_subject(admin, name="Canary", birth_date=None, email="c@example.org")


async def count(conn: Conn, table: str) -> int:
    cur = await conn.execute(f"SELECT count(*) FROM consent.{table}")  # fixed names
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


def same_decisions(a: ConsentHistory, b: ConsentHistory) -> None:
    times = [T0 + k * S // 2 for k in range(-2, 40)]
    for scope, actor, at_ns in itertools.product(Scope, ("org:a", "org:b"), times):
        assert decide(a, scope=scope, at_ns=at_ns, actor=actor) == decide(
            b, scope=scope, at_ns=at_ns, actor=actor
        )


async def test_events_round_trip_exactly(admin: Conn, subject: UUID) -> None:
    core = grant(subject, Scope.CORE_SERVICE, start_ns=T0, recorded_ns=T0)
    research = grant(subject, Scope.RESEARCH_INTERNAL, start_ns=T0 + S, recorded_ns=T0 + S)
    clinical = grant(
        subject,
        Scope.CLINICAL_CARE,
        start_ns=T0 + 2 * S,
        end_ns=T0 + 15 * S,
        recorded_ns=T0 + 2 * S,
        actor="org:a",
    )
    future = grant(subject, Scope.LOCATION, start_ns=T0 + 30 * S, recorded_ns=T0 + 3 * S)
    events: list[ConsentEvent] = [
        core,
        research,
        clinical,
        future,
        withdraw(research, effective_ns=T0 + 5 * S, recorded_ns=T0 + 5 * S),
        # withdrawn before it starts, and after the clinical grant has expired
        withdraw(future, effective_ns=T0 + 6 * S, recorded_ns=T0 + 6 * S),
        grant(subject, Scope.RESEARCH_INTERNAL, start_ns=T0 + 8 * S, recorded_ns=T0 + 8 * S),
        withdraw(clinical, effective_ns=T0 + 16 * S, recorded_ns=T0 + 16 * S),
    ]
    in_memory = ConsentHistory(subject, tuple(events))
    returned = await append_events(admin, events[:3], actor_role="test")
    assert returned == ConsentHistory(subject, tuple(events[:3]))
    for event in events[3:]:
        await append_events(admin, [event], actor_role="test")

    loaded = await load_history(admin, subject)
    assert loaded == in_memory
    same_decisions(loaded, in_memory)
    assert await load_all_histories(admin) == {subject: in_memory}
    assert (await count(admin, "records"), await count(admin, "events")) == (8, 8)


async def test_one_transaction_batch_gives_the_same_decisions(admin: Conn, subject: UUID) -> None:
    batch = [
        grant(subject, scope, start_ns=T0, recorded_ns=T0)
        for scope in (Scope.CORE_SERVICE, Scope.CLINICAL_CARE, Scope.RESEARCH_INTERNAL)
    ]
    withdrawals = [withdraw(g, effective_ns=T0 + 3 * S, recorded_ns=T0 + 3 * S) for g in batch[1:]]
    await append_events(admin, batch, actor_role="test")
    await append_events(admin, withdrawals, actor_role="test")
    loaded = await load_history(admin, subject)
    in_memory = ConsentHistory(subject, (*batch, *withdrawals))
    assert set(loaded.events) == set(in_memory.events)
    same_decisions(loaded, in_memory)


async def test_refused_appends_write_nothing(admin: Conn, subject: UUID) -> None:
    core = grant(subject, Scope.CORE_SERVICE, start_ns=T0, recorded_ns=T0 + S)
    await append_events(admin, [core], actor_role="test")
    never_granted = grant(subject, Scope.RESEARCH_INTERNAL, start_ns=T0, recorded_ns=T0 + 2 * S)
    other = await add_subject(admin, name="Other", birth_date=None, email=None)
    cases: list[tuple[str, list[ConsentEvent]]] = [
        ("unknown_record", [withdraw(never_granted, effective_ns=T0, recorded_ns=T0 + 2 * S)]),
        ("out_of_order", [grant(subject, Scope.LOCATION, start_ns=T0, recorded_ns=T0)]),
        ("bad_precision", [grant(subject, Scope.LOCATION, start_ns=T0 + 1, recorded_ns=T0 + S)]),
        ("wrong_subject", [core, grant(other, Scope.LOCATION, start_ns=T0, recorded_ns=T0 + S)]),
        ("duplicate_event", [core]),
        ("no_events", []),
    ]
    for reason, events in cases:
        with pytest.raises(ConsentError) as info:
            await append_events(admin, events, actor_role="test")
        assert info.value.reason == reason
    assert (await count(admin, "records"), await count(admin, "events")) == (1, 1)


@pytest.fixture
async def watched(care_db: str) -> AsyncIterator[tuple[ConsentWatcher, asyncio.Queue[UUID]]]:
    reloads: asyncio.Queue[UUID] = asyncio.Queue()
    async with ConsentWatcher(care_db, on_reload=reloads.put_nowait) as watcher:
        yield watcher, reloads


async def test_watcher_sees_another_connections_changes_within_1s(
    care_db: str,
    admin: Conn,
    subject: UUID,
) -> None:
    changed = asyncio.Event()
    async with ConsentWatcher(care_db, on_reload=lambda _: changed.set()) as watcher:
        assert watcher.history_for(subject) is None
        core = grant(subject, Scope.CORE_SERVICE, start_ns=T0, recorded_ns=T0)
        research = grant(subject, Scope.RESEARCH_INTERNAL, start_ns=T0, recorded_ns=T0 + S)
        await append_events(admin, [core, research], actor_role="test")
        async with asyncio.timeout(1.0):
            await changed.wait()
        seen = watcher.history_for(subject)
        assert seen is not None
        assert decide(seen, scope=Scope.RESEARCH_INTERNAL, at_ns=T0 + 9 * S, actor="x").permitted

        changed.clear()
        stop = withdraw(research, effective_ns=T0 + 5 * S, recorded_ns=T0 + 5 * S)
        await append_events(admin, [stop], actor_role="test")
        async with asyncio.timeout(1.0):
            await changed.wait()
        seen = watcher.history_for(subject)
        assert seen == ConsentHistory(subject, (core, research, stop))
        after = decide(seen, scope=Scope.RESEARCH_INTERNAL, at_ns=T0 + 5 * S, actor="x")
        before = decide(seen, scope=Scope.RESEARCH_INTERNAL, at_ns=T0 + 5 * S - 1, actor="x")
        assert (before.permitted, after.permitted) == (True, False)


async def test_watcher_loads_existing_histories_on_entry(
    care_db: str, admin: Conn, subject: UUID
) -> None:
    events = [grant(subject, Scope.CORE_SERVICE, start_ns=T0, recorded_ns=T0)]
    await append_events(admin, events, actor_role="test")
    async with ConsentWatcher(care_db) as watcher:
        assert watcher.history_for(subject) == ConsentHistory(subject, tuple(events))


async def test_notify_is_sent_only_when_the_append_commits(
    watched: tuple[ConsentWatcher, asyncio.Queue[UUID]], admin: Conn, subject: UUID
) -> None:
    _, reloads = watched
    other = await add_subject(admin, name="Other", birth_date=None, email=None)

    core = grant(subject, Scope.CORE_SERVICE, start_ns=T0, recorded_ns=T0)
    async with admin.transaction(force_rollback=True):
        await append_events(admin, [core], actor_role="test")
    await append_events(
        admin, [grant(other, Scope.CORE_SERVICE, start_ns=T0, recorded_ns=T0)], actor_role="test"
    )
    async with asyncio.timeout(1.0):
        assert await reloads.get() == other  # the rolled-back append notified nobody
    assert reloads.empty()
    assert await load_history(admin, subject) == ConsentHistory(subject)


async def test_a_broken_listener_fails_loudly(care_db: str, admin: Conn) -> None:
    async def watch_until_cancelled() -> None:
        never = asyncio.Event()
        async with ConsentWatcher(care_db):
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
            )
            async with asyncio.timeout(5.0):
                await never.wait()  # cancelled by the watcher's task group

    with pytest.raises(ExceptionGroup) as info:
        await watch_until_cancelled()
    assert info.group_contains(StoreUnavailableError)
