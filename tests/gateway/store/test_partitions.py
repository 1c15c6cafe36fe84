"""Signal tables in the care database: day partitions created ahead, no default
partition, idempotent frames, BRIN on time, retention by whole partitions, and the
INSERT-only ingest role."""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from gateway.store import StoreIntegrityError, StorePermissionError, translate_error
from gateway.store.partitions import (
    day_partitions,
    detect_backend,
    drop_partitions_before,
    ensure_partitions,
    parse_partition_name,
    partition_name,
    ts_of_ns,
)

Conn = psycopg.AsyncConnection[Any]
DAY = timedelta(days=1)
T0 = datetime(2026, 11, 20, tzinfo=UTC)
INSERT_FRAME = (
    "INSERT INTO clinical.frames (subject_id, device_key, stream, time_ns, ts, fs_hz,"
    " sequence, n_samples, channels, unit, quality, samples)"
    " VALUES (%s, %s, 'ecg', %s, %s, 250.0, %s, 3, '{}', 'uV', 0, %s)"
)


def _ns(at: datetime) -> int:
    return (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000 + 789


async def _insert_frame(
    conn: Conn, time_ns: int, sequence: int | None, *, device: uuid.UUID | None = None
) -> int:
    samples = struct.pack("<3d", 1.0, -0.0, 2.5)
    subject = uuid.UUID(int=1)
    cur = await conn.execute(
        INSERT_FRAME + " ON CONFLICT DO NOTHING",
        (subject, device or uuid.UUID(int=2), time_ns, ts_of_ns(time_ns), sequence, samples),
    )
    return cur.rowcount


async def _partitions(conn: Conn, schema: str, table: str) -> list[str]:
    cur = await conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = %s::regclass ORDER BY 1",
        (f"{schema}.{table}",),
    )
    return [str(r[0]) for r in await cur.fetchall()]


def test_day_partitions_cover_the_range_in_utc() -> None:
    start = datetime(
        2026, 11, 21, 8, 0, tzinfo=timezone(timedelta(hours=9))
    )  # 2026-11-20 23:00 UTC
    spans = day_partitions("frames", start, datetime(2026, 11, 22, 0, 0, 1, tzinfo=UTC))
    assert [s.name for s in spans] == ["frames_p20261120", "frames_p20261121", "frames_p20261122"]
    assert spans[0].lower == T0
    assert spans[0].upper == T0 + DAY
    assert day_partitions("gaps", T0 + DAY, T0 + DAY) == ()
    assert len(day_partitions("vitals", T0, T0 + DAY)) == 1  # end is exclusive


def test_partition_names_round_trip() -> None:
    assert partition_name("vitals", date(2026, 1, 2)) == "vitals_p20260102"
    assert parse_partition_name("vitals", "vitals_p20260102") == date(2026, 1, 2)
    for other in ("frames_p20260102", "vitals_p2026010", "vitals_p20261340", "vitals_old"):
        assert parse_partition_name("vitals", other) is None


def test_ts_of_ns_truncates_to_microseconds() -> None:
    assert ts_of_ns(1_999) == datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="negative"):
        ts_of_ns(-1)


async def test_native_backend_here(admin: Conn) -> None:
    assert await detect_backend(admin) == "native"


async def test_ensure_creates_exactly_the_days_and_is_idempotent(admin: Conn) -> None:
    created = await ensure_partitions(admin, "clinical", ("frames", "gaps"), T0, T0 + 2 * DAY)
    assert created == (
        "frames_p20261120",
        "gaps_p20261120",
        "frames_p20261121",
        "gaps_p20261121",
    )
    assert await _partitions(admin, "clinical", "frames") == list(created[0::2])
    assert await _partitions(admin, "clinical", "vitals") == []
    assert await ensure_partitions(admin, "clinical", ("frames", "gaps"), T0, T0 + 2 * DAY) == ()
    await admin.execute("SET TimeZone = 'UTC'")
    cur = await admin.execute(
        "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = 'frames_p20261121'"
    )
    assert await cur.fetchone() == (
        "FOR VALUES FROM ('2026-11-21 00:00:00+00') TO ('2026-11-22 00:00:00+00')",
    )


async def test_long_ranges_are_split_into_calls(admin: Conn) -> None:
    created = await ensure_partitions(admin, "clinical", ("vitals",), T0, T0 + 70 * DAY)
    assert len(created) == 70
    assert created[-1] == partition_name("vitals", (T0 + 69 * DAY).date())


async def test_insert_without_partition_fails_then_succeeds_after_ensure(admin: Conn) -> None:
    at = T0 + timedelta(hours=5)
    with pytest.raises(psycopg.Error) as info:
        await _insert_frame(admin, _ns(at), 1)
    assert info.value.sqlstate == "23514"  # no partition of relation found for row
    assert isinstance(translate_error(info.value, "test"), StoreIntegrityError)
    cur = await admin.execute("SELECT count(*) FROM pg_inherits")
    assert await cur.fetchone() == (0,)  # no default partition caught it
    await ensure_partitions(admin, "clinical", ("frames",), at, at + timedelta(seconds=1))
    assert await _insert_frame(admin, _ns(at), 1) == 1
    cur = await admin.execute("SELECT tableoid::regclass::text, samples FROM clinical.frames")
    assert await cur.fetchall() == [
        ("clinical.frames_p20261120", struct.pack("<3d", 1.0, -0.0, 2.5))
    ]


async def test_redelivered_frame_is_a_duplicate(admin: Conn) -> None:
    await ensure_partitions(admin, "clinical", ("frames",), T0, T0 + DAY)
    t = _ns(T0 + timedelta(minutes=1))
    assert await _insert_frame(admin, t, 7) == 1
    assert await _insert_frame(admin, t, 7) == 0  # same message again
    assert await _insert_frame(admin, t + 10**9, 7) == 1  # device restarted its counter
    assert await _insert_frame(admin, t, 8) == 1
    assert await _insert_frame(admin, t, 7, device=uuid.UUID(int=3)) == 1  # second device
    assert await _insert_frame(admin, t + 2 * 10**9, None) == 1  # stream without sequence
    assert await _insert_frame(admin, t + 2 * 10**9, None) == 0
    with pytest.raises(psycopg.errors.UniqueViolation):
        await admin.execute(
            INSERT_FRAME,
            (uuid.UUID(int=1), uuid.UUID(int=2), t, ts_of_ns(t), 7, struct.pack("<3d", 0, 0, 0)),
        )


async def test_ts_must_match_time_ns(admin: Conn) -> None:
    await ensure_partitions(admin, "clinical", ("frames",), T0, T0 + DAY)
    t = _ns(T0 + timedelta(minutes=1))
    with pytest.raises(psycopg.errors.CheckViolation):
        await admin.execute(
            INSERT_FRAME,
            (uuid.UUID(int=1), uuid.UUID(int=2), t, ts_of_ns(t + 1000), 1, b"\0" * 24),
        )


async def test_time_columns_have_brin_indexes(admin: Conn) -> None:
    cur = await admin.execute(
        "SELECT c.relname, a.amname FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam"
        " WHERE i.indrelid = ANY(ARRAY['clinical.frames', 'clinical.gaps',"
        " 'clinical.vitals']::regclass[]) AND a.amname = 'brin' ORDER BY 1"
    )
    assert await cur.fetchall() == [
        ("frames_ts_brin", "brin"),
        ("gaps_ts_brin", "brin"),
        ("vitals_ts_brin", "brin"),
    ]
    await ensure_partitions(admin, "clinical", ("frames",), T0, T0 + DAY)
    cur = await admin.execute(
        "SELECT count(*) FROM pg_indexes WHERE tablename = 'frames_p20261120'"
        " AND indexdef LIKE '%USING brin (ts)%'"
    )
    assert await cur.fetchone() == (1,)


async def test_retention_drops_exactly_the_old_partitions(admin: Conn) -> None:
    await ensure_partitions(admin, "clinical", ("frames", "vitals"), T0, T0 + 4 * DAY)
    await _insert_frame(admin, _ns(T0 + 2 * DAY), 1)
    cutoff = T0 + 2 * DAY + timedelta(hours=12)  # inside the third day: it stays
    dropped = await drop_partitions_before(admin, "clinical", "frames", cutoff)
    assert dropped == ("frames_p20261120", "frames_p20261121")
    assert await _partitions(admin, "clinical", "frames") == [
        "frames_p20261122",
        "frames_p20261123",
    ]
    assert len(await _partitions(admin, "clinical", "vitals")) == 4  # other tables untouched
    cur = await admin.execute("SELECT count(*) FROM clinical.frames")
    assert await cur.fetchone() == (1,)
    assert await drop_partitions_before(admin, "clinical", "frames", cutoff) == ()
    assert await drop_partitions_before(admin, "clinical", "frames", T0 + 3 * DAY) == (
        "frames_p20261122",
    )


async def test_ingest_role_inserts_and_creates_partitions_but_reads_nothing(
    admin: Conn,
) -> None:
    await admin.execute("SET ROLE clinical_ingest_login")
    assert await ensure_partitions(admin, "clinical", ("frames",), T0, T0 + DAY) == (
        "frames_p20261120",
    )
    assert await _insert_frame(admin, _ns(T0), 1) == 1
    assert await _insert_frame(admin, _ns(T0), 1) == 0  # ON CONFLICT needs INSERT only
    for statement in (
        "SELECT count(*) FROM clinical.frames",
        "SELECT count(*) FROM clinical.frames_p20261120",
        "UPDATE clinical.frames SET quality = 1",
        "DELETE FROM clinical.frames",
        "TRUNCATE clinical.frames",
        "DROP TABLE clinical.frames_p20261120",
        "SELECT count(*) FROM identity.subjects",
    ):
        with pytest.raises(psycopg.Error) as info:
            await admin.execute(statement.encode())
        assert isinstance(translate_error(info.value, "test"), StorePermissionError), statement
    with pytest.raises(StorePermissionError):
        await drop_partitions_before(admin, "clinical", "frames", T0 + DAY)
    await admin.execute(b"RESET ROLE")
    cur = await admin.execute("SELECT count(*) FROM clinical.frames")
    assert await cur.fetchone() == (1,)
