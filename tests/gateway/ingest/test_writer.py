"""Tests of the ingest writer (gateway.ingest.writer.SignalWriter) on real PostgreSQL.

Every test runs for both paths (a fresh migrated care or research database) and writes
as the path's INSERT-only ingest login role (a DSN with its user name, not a superuser),
then reads back as the superuser: rows equal the encoded frames exactly, duplicates across
and within batches are counted and not stored, gaps and dead letters land, partitions are
created ahead and re-created after retention dropped one, and a connection killed in the
middle of a batch leaves nothing committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg import sql

from devices.frame import Frame, Quality, StreamKind, Unit
from gateway.ingest import DeadLetter, IngestPath, Item, SignalWriter, WriteResult, classify
from gateway.router import ClinicalFrame, ClinicalGap, ResearchFrame, ResearchGap
from gateway.store import StoreError, StoreUnavailableError
from gateway.store.partitions import partition_name, ts_of_ns
from tests.gateway.ingest.conftest import (
    DAY_NS,
    LAYOUT,
    NOW_NS,
    IngestDb,
    clinical_frame,
    clinical_gap,
    new_subject,
    pseudonym,
    research_frame,
    research_gap,
)

Conn = psycopg.AsyncConnection[Any]
AnyFrame = ClinicalFrame | ResearchFrame
DAY0 = (NOW_NS - DAY_NS) // DAY_NS


def frame(
    db: IngestDb, i: int = 0, *, seq: int | None = 1, time_ns: int | None = None, **kw: Any
) -> AnyFrame:
    """Frame number ``i`` (its own subject or pseudonym) for the database's path."""
    at = NOW_NS - DAY_NS + i * 1_000_000 if time_ns is None else time_ns
    if db.path is IngestPath.CLINICAL:
        subject, device = new_subject(i)
        return clinical_frame(subject=subject, device=device, sequence=seq, time_ns=at, **kw)[0]
    return research_frame(name=pseudonym(i), sequence=seq, time_ns=at, **kw)[0]


def gap(db: IngestDb, i: int = 0, start_ns: int = NOW_NS - DAY_NS) -> ClinicalGap | ResearchGap:
    if db.path is IngestPath.CLINICAL:
        subject, device = new_subject(i)
        return clinical_gap(subject=subject, device=device, start_ns=start_ns)[0]
    return research_gap(name=pseudonym(i), start_ns=start_ns)[0]


def core(value: AnyFrame) -> Frame | ResearchFrame:
    return value.frame if isinstance(value, ClinicalFrame) else value


async def write(db: IngestDb, writer: SignalWriter, items: Sequence[Item]) -> WriteResult:
    async with await Conn.connect(db.ingest_dsn) as conn:
        return await writer.write(conn, items)


async def fetch(db: IngestDb, query: str, *params: Any) -> list[tuple[Any, ...]]:
    async with await Conn.connect(db.admin_dsn) as conn:
        cur = await conn.execute(query.replace("{s}", db.schema).encode(), params)
        return await cur.fetchall()


async def count(db: IngestDb, table: str) -> int:
    rows = await fetch(db, f"SELECT count(*) FROM {{s}}.{table}")
    return int(rows[0][0])


def expected_row(value: AnyFrame) -> tuple[Any, ...]:
    f = core(value)
    offsets = None if f.offsets_ns is None else [int(x) for x in f.offsets_ns]
    return (
        f.stream.value,
        f.time_ns,
        ts_of_ns(f.time_ns),
        f.fs_hz,
        offsets,
        f.sequence,
        len(f.samples),
        list(f.channels),
        f.unit.value,
        int(f.quality),
        np.ascontiguousarray(f.samples, dtype="<f8").tobytes(),
    )


FRAME_COLS = (
    "stream, time_ns, ts, fs_hz, offsets_ns, sequence, n_samples, channels, unit, quality, samples"
)


async def test_rows_equal_the_frames_exactly(ingest_db: IngestDb) -> None:
    db = ingest_db
    values = [
        frame(db, 0),
        frame(db, 1, seq=None, n=0),
        frame(
            db, 2, stream=StreamKind.RR, unit=Unit.MILLISECOND, n=3,
            samples=np.array([812.0, -0.0, np.nan]),
            offsets_ns=np.array([0, 812_000_000, 1_602_000_999], dtype=np.int64),
        ),
        frame(
            db, 3, stream=StreamKind.ACCEL, unit=Unit.MILLI_G, n=2,
            samples=np.array([[1.0, -2.0, 1000.0], [0.5, 0.25, -1e300]]),
            channels=("x", "y", "z"), quality=Quality.SATURATED | Quality.LEAD_OFF,
        ),
        frame(db, 4, seq=2**63 - 1, time_ns=NOW_NS - DAY_NS + 999),  # ns below a µs
    ]  # fmt: skip
    result = await write(db, SignalWriter(db.path), values)
    assert result == WriteResult(5, 0, 0, 0, 0, 100 + 0 + 3 + 6 + 100)
    stored = await fetch(db, f"SELECT {FRAME_COLS} FROM {{s}}.frames ORDER BY time_ns")
    assert len(stored) == 5
    for row, value in zip(stored, sorted(values, key=lambda v: core(v).time_ns), strict=True):
        assert tuple(row) == expected_row(value)
    if db.path is IngestPath.CLINICAL:
        ids = await fetch(db, "SELECT subject_id, device_key::text FROM {s}.frames")
        assert sorted(ids) == sorted(
            (v.subject_id, v.frame.device_key) for v in values if isinstance(v, ClinicalFrame)
        )
    else:
        names = await fetch(db, "SELECT pseudonym FROM {s}.frames ORDER BY 1")
        assert [n for (n,) in names] == sorted(pseudonym(i) for i in range(5))


async def test_the_ingest_role_cannot_read_what_it_writes(ingest_db: IngestDb) -> None:
    db = ingest_db
    await write(db, SignalWriter(db.path), [frame(db)])
    async with await Conn.connect(db.ingest_dsn) as conn:
        cur = await conn.execute("SELECT current_user")
        assert await cur.fetchone() == (f"{db.path.value}_ingest_login",)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute(
                sql.SQL("SELECT 1 FROM {}").format(sql.Identifier(db.schema, "frames"))
            )


async def test_duplicates_across_and_within_batches_are_counted_not_stored(
    ingest_db: IngestDb,
) -> None:
    db = ingest_db
    writer = SignalWriter(db.path)
    first = [frame(db, i) for i in range(4)]
    assert await write(db, writer, first) == WriteResult(4, 0, 0, 0, 0, 400)
    # redelivery of two stored frames, two new ones, and one new frame twice in the batch
    new = [frame(db, 10), frame(db, 11, n=7)]
    twice = frame(db, 12, n=5)
    batch = [first[0], new[0], first[3], twice, new[1], twice]
    assert await write(db, writer, batch) == WriteResult(3, 3, 0, 0, 0, 100 + 7 + 5)
    assert await write(db, writer, batch) == WriteResult(0, 6, 0, 0, 0, 0)
    assert await count(db, "frames") == 7
    # a garment reboot: same sequence, another first-sample time: a different frame
    later = frame(db, 0, time_ns=core(first[0]).time_ns + 1)
    no_seq = [frame(db, 20, seq=None), frame(db, 20, seq=None)]
    assert await write(db, writer, [later, *no_seq]) == WriteResult(2, 1, 0, 0, 0, 200)
    stored = await fetch(db, f"SELECT {FRAME_COLS} FROM {{s}}.frames ORDER BY time_ns")
    wanted = sorted([*first, *new, twice, later, no_seq[0]], key=lambda v: core(v).time_ns)
    assert [tuple(r) for r in stored] == [expected_row(v) for v in wanted]


async def test_gaps_are_stored_and_deduplicated(ingest_db: IngestDb) -> None:
    db = ingest_db
    writer = SignalWriter(db.path)
    gaps = [gap(db, 0), gap(db, 1), gap(db, 0, start_ns=NOW_NS - 2 * DAY_NS + 1_999)]
    assert await write(db, writer, gaps) == WriteResult(0, 0, 3, 0, 0, 0)
    assert await write(db, writer, [gaps[1], gaps[1], gap(db, 2)]) == WriteResult(0, 0, 1, 2, 0, 0)
    rows = await fetch(
        db, "SELECT stream, start_ns, end_ns, ts, samples_missing, cause FROM {s}.gaps"
        " ORDER BY start_ns, end_ns",
    )  # fmt: skip
    values = sorted([*gaps, gap(db, 2)], key=lambda g: (g.gap.start_ns, g.gap.end_ns))
    assert [tuple(r) for r in rows] == [
        (
            g.gap.stream.value, g.gap.start_ns, g.gap.end_ns, ts_of_ns(g.gap.start_ns),
            g.gap.samples_missing, g.gap.cause.value,
        )
        for g in values
    ]  # fmt: skip


async def test_dead_letters_are_stored_with_reasons(ingest_db: IngestDb) -> None:
    db = ingest_db
    clinical = db.path is IngestPath.CLINICAL
    topic = LAYOUT.clinical(new_subject(0)[0], StreamKind.ECG) if clinical else (
        LAYOUT.research(StreamKind.ECG)
    )  # fmt: skip
    bad = classify(db.path, LAYOUT, topic, b"not a wire message", now_ns=NOW_NS)
    _, (rtopic, rpayload) = research_frame(name=pseudonym(3), time_ns=0)
    late = classify(db.path, LAYOUT, rtopic, rpayload, now_ns=NOW_NS)
    assert isinstance(bad, DeadLetter)
    assert isinstance(late, DeadLetter)
    result = await write(db, SignalWriter(db.path), [bad, frame(db), late])
    assert result == WriteResult(1, 0, 0, 0, 2, 100)
    rows = await fetch(db, "SELECT topic_class, reason, payload FROM {s}.dead_letters ORDER BY 2")
    if clinical:
        assert rows == [("frames", "wire_bad_magic", b"not a wire message"),
                        ("frames", "wrong_path", rpayload)]  # fmt: skip
    else:  # garbage on the research path is not kept; a research message is
        assert rows == [("frames", "time_out_of_range", rpayload),
                        ("frames", "wire_bad_magic", None)]  # fmt: skip


async def test_a_redelivered_dead_letter_is_stored_once(ingest_db: IngestDb) -> None:
    """A batch of refused messages committed but never acknowledged comes again: the
    dead letters are not stored (nor counted) twice; a different message still is."""
    db = ingest_db
    topic = LAYOUT.research(StreamKind.ECG)
    if db.path is IngestPath.CLINICAL:
        topic = LAYOUT.clinical(new_subject(0)[0], StreamKind.ECG)
    bad = classify(db.path, LAYOUT, topic, b"not a wire message", now_ns=NOW_NS)
    other = classify(db.path, LAYOUT, topic, b"not one either", now_ns=NOW_NS)
    writer = SignalWriter(db.path)
    assert (await write(db, writer, [bad])).dead_letters == 1
    assert (await write(db, writer, [bad, other, bad])).dead_letters == 1
    rows = await fetch(db, "SELECT count(*), count(DISTINCT digest) FROM {s}.dead_letters")
    assert rows == [(2, 2)]


async def _partitions(db: IngestDb, table: str) -> set[str]:
    rows = await fetch(
        db,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = %s::regclass",
        f"{db.schema}.{table}",
    )
    return {r[0] for r in rows}


def _days(first: int, last: int, table: str = "frames") -> set[str]:
    return {partition_name(table, ts_of_ns(d * DAY_NS).date()) for d in range(first, last + 1)}


async def test_partitions_are_created_for_the_batch_days_and_ahead(ingest_db: IngestDb) -> None:
    db = ingest_db
    writer = SignalWriter(db.path, partitions_ahead_days=3)
    old = DAY0 - 10
    await write(db, writer, [frame(db, 0), frame(db, 1, time_ns=old * DAY_NS + 5), gap(db, 0)])
    want = _days(old, old) | _days(DAY0, DAY0 + 3)
    assert await _partitions(db, "frames") == want
    assert await _partitions(db, "gaps") == {n.replace("frames", "gaps") for n in want}


async def test_a_dropped_partition_is_recreated_and_the_batch_retried(ingest_db: IngestDb) -> None:
    db = ingest_db
    writer = SignalWriter(db.path)
    assert (await write(db, writer, [frame(db, 0)])).frames == 1
    async with await Conn.connect(db.admin_dsn, autocommit=True) as admin:
        for table in ("frames", "gaps"):
            for name in _days(DAY0, DAY0, table):
                await admin.execute(
                    sql.SQL("DROP TABLE {}").format(sql.Identifier(db.schema, name))
                )
    # the writer still believes the day exists: the insert fails, it re-ensures, retries once
    result = await write(db, writer, [frame(db, 1), gap(db, 1)])
    assert result == WriteResult(1, 0, 1, 0, 0, 100)
    assert await count(db, "frames") == 1
    assert await count(db, "gaps") == 1


async def test_a_connection_killed_mid_batch_commits_nothing(ingest_db: IngestDb) -> None:
    db = ingest_db
    writer = SignalWriter(db.path)
    await write(db, writer, [frame(db, 99, time_ns=NOW_NS - DAY_NS - 1)])  # partitions exist
    batch: list[Item] = [frame(db, i) for i in range(50)] + [gap(db, 0), gap(db, 1)]
    gaps_table = sql.Identifier(db.schema, "gaps")
    async with (
        await Conn.connect(db.admin_dsn, autocommit=True) as admin,
        await Conn.connect(db.ingest_dsn) as victim,
    ):
        cur = await victim.execute("SELECT pg_backend_pid()")
        row = await cur.fetchone()
        assert row is not None
        pid = row[0]
        await victim.commit()
        async with admin.transaction():
            # the writer COPYs the frames, then blocks on the gaps until it is killed
            await admin.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(gaps_table)
            )
            task = asyncio.create_task(writer.write(victim, batch))
            while True:
                cur = await admin.execute("SELECT cardinality(pg_blocking_pids(%s))", (pid,))
                blocked = await cur.fetchone()
                if blocked is not None and blocked[0] > 0:
                    break
                assert not task.done()
                await asyncio.sleep(0.01)
            cur = await admin.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,))
            waiting = await cur.fetchone()
            assert waiting is not None
            assert "gaps" in waiting[0]  # the frames are already COPYed in its transaction
            await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            with pytest.raises(StoreUnavailableError):
                await task
    assert await count(db, "frames") == 1
    assert await count(db, "gaps") == 0
    # the caller reconnects and writes the batch again: stored once, then only duplicates
    assert await write(db, writer, batch) == WriteResult(50, 0, 2, 0, 0, 5000)
    assert await write(db, writer, batch) == WriteResult(0, 50, 0, 2, 0, 0)
    assert await count(db, "frames") == 51


async def test_an_open_transaction_is_refused_and_left_alone(ingest_db: IngestDb) -> None:
    db = ingest_db
    async with await Conn.connect(db.ingest_dsn) as conn:
        await conn.execute("SELECT 1")
        with pytest.raises(StoreError):
            await SignalWriter(db.path).write(conn, [frame(db)])
        await conn.rollback()
        assert (await SignalWriter(db.path).write(conn, [frame(db)])).frames == 1


async def test_an_item_of_the_other_path_is_a_programming_error(ingest_db: IngestDb) -> None:
    db = ingest_db
    other = research_frame()[0] if db.path is IngestPath.CLINICAL else clinical_frame()[0]
    async with await Conn.connect(db.ingest_dsn) as conn:
        with pytest.raises(TypeError):
            await SignalWriter(db.path).write(conn, [other])
    assert await count(db, "frames") == 0


async def test_an_autocommit_connection_gets_one_transaction_too(ingest_db: IngestDb) -> None:
    db = ingest_db
    writer = SignalWriter(db.path)
    async with await Conn.connect(db.ingest_dsn, autocommit=True) as conn:
        assert await writer.write(conn, [frame(db, 0), gap(db, 0)]) == WriteResult(
            1, 0, 1, 0, 0, 100
        )
        # a duplicate forces the slow path; a bad row after it must undo the good ones
        bad = frame(db, 1, time_ns=-1)  # refused by the CHECK even after the retry
        with pytest.raises(StoreError) as info:
            await writer.write(conn, [frame(db, 0), frame(db, 2), bad])
        assert info.value.sqlstate is not None
        assert info.value.sqlstate.startswith("2")
    assert await count(db, "frames") == 1
