"""The TimescaleDB layout (gateway/store/timescale.py).

On the native backend (these machines) ``apply_timescale`` returns False and changes
nothing, on both databases. The TimescaleDB tests run only where the server offers the
extension and are skipped here with the reason below."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest

from devices.frame import StreamKind
from gateway.store.migrate import load_migrations, migrate
from gateway.store.partitions import SignalSchema, detect_backend, ensure_partitions, ts_of_ns
from gateway.store.signals import read_signal
from gateway.store.timescale import TimescaleError, apply_timescale, drop_chunks_before

Conn = psycopg.AsyncConnection[Any]
NO_TIMESCALE = "timescaledb extension not available on this server"
DAY = timedelta(days=1)
T0 = datetime(2026, 11, 20, tzinfo=UTC)


async def _catalog(conn: Conn, schema: str) -> list[tuple[Any, ...]]:
    """Everything apply_timescale could change: relations, their kinds and ACLs, the
    schema's functions, the installed extensions."""
    cur = await conn.execute(
        "SELECT c.relname, c.relkind, c.relacl::text FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s"
        " UNION ALL SELECT p.proname, 'f', md5(p.prosrc) FROM pg_proc p"
        " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %s"
        " UNION ALL SELECT extname, 'e', extversion FROM pg_extension ORDER BY 1, 2",
        (schema, schema),
    )
    return list(await cur.fetchall())


@pytest.mark.parametrize(("migrations", "schema"), [("care", "clinical"), ("research", "pseudo")])
async def test_native_backend_returns_false_and_changes_nothing(
    new_database: Callable[[], Awaitable[str]], migrations: str, schema: SignalSchema
) -> None:
    dsn = await new_database()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        if await detect_backend(conn) != "native":
            pytest.skip("this server offers timescaledb: the native-only case does not apply")
        await migrate(conn, load_migrations(migrations))
        await ensure_partitions(conn, schema, ("frames", "gaps", "vitals"), T0, T0 + DAY)
        before = await _catalog(conn, schema)
        assert any(name == "vitals_1m" and kind == "v" for name, kind, _ in before)
        assert await apply_timescale(conn, schema, compress_after=timedelta(days=7)) is False
        assert await _catalog(conn, schema) == before


async def test_bad_arguments_are_refused_before_anything_runs(admin: Conn) -> None:
    with pytest.raises(ValueError, match="positive"):
        await apply_timescale(admin, "clinical", compress_after=timedelta(0))
    with pytest.raises(ValueError, match="timezone-aware"):
        await drop_chunks_before(admin, "clinical", "frames", datetime(2026, 1, 1))


# --- TimescaleDB present -------------------------------------------------------------


@pytest.fixture
async def ts_admin(admin: Conn) -> Conn:
    if await detect_backend(admin) == "native":
        pytest.skip(NO_TIMESCALE)
    return admin


async def _hypertables(conn: Conn, schema: str) -> set[str]:
    cur = await conn.execute(
        "SELECT hypertable_name FROM timescaledb_information.hypertables"
        " WHERE hypertable_schema = %s",
        (schema,),
    )
    return {str(r[0]) for r in await cur.fetchall()}


async def test_empty_tables_become_hypertables_with_grants_and_names_kept(ts_admin: Conn) -> None:
    assert await apply_timescale(ts_admin, "clinical", compress_after=timedelta(days=7))
    assert await _hypertables(ts_admin, "clinical") == {"frames", "gaps", "vitals"}
    cur = await ts_admin.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = 'clinical.frames'::regclass"
        " AND contype = 'u'"
    )
    assert await cur.fetchall() == [("frames_once",)]
    cur = await ts_admin.execute(
        "SELECT has_table_privilege('biogw_clinician_api_login', 'clinical.frames', 'SELECT'),"
        " has_table_privilege('clinical_ingest_login', 'clinical.frames', 'INSERT'),"
        " has_table_privilege('biogw_gateway_login', 'clinical.frames', 'SELECT'),"
        " has_table_privilege('biogw_clinician_api_login', 'clinical.vitals_1m', 'SELECT')"
    )
    assert await cur.fetchone() == (True, True, False, True)
    cur = await ts_admin.execute(
        "SELECT 1 FROM timescaledb_information.continuous_aggregates"
        " WHERE view_schema = 'clinical' AND view_name = 'vitals_1m'"
    )
    assert await cur.fetchone() == (1,)
    cur = await ts_admin.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = 'clinical' AND table_name = 'vitals_1m' ORDER BY ordinal_position"
    )
    assert [r[0] for r in await cur.fetchall()] == [
        "bucket",
        "subject_id",
        "kind",
        "value_avg",
        "value_min",
        "value_max",
        "n",
    ]
    # Idempotent, and ensure_partitions is now a no-op the ingest role may still call.
    assert await apply_timescale(ts_admin, "clinical", compress_after=timedelta(days=7))
    await ts_admin.execute(b"SET ROLE clinical_ingest_login")
    assert await ensure_partitions(ts_admin, "clinical", ("frames",), T0, T0 + DAY) == ()
    time_ns = int(T0.timestamp()) * 10**9
    samples = np.arange(3, dtype="<f8")
    await ts_admin.execute(
        "INSERT INTO clinical.frames (subject_id, device_key, stream, time_ns, ts, fs_hz,"
        " sequence, n_samples, unit, samples) VALUES (%s, %s, 'ecg', %s, %s, 250, 1, 3, 'uV', %s)",
        (uuid.UUID(int=1), uuid.UUID(int=2), time_ns, ts_of_ns(time_ns), samples.tobytes()),
    )
    await ts_admin.execute(b"RESET ROLE")
    series = await read_signal(ts_admin, uuid.UUID(int=1), StreamKind.ECG, time_ns, time_ns + 10**9)
    np.testing.assert_array_equal(series.samples, samples)


async def test_tables_holding_rows_are_refused_and_left_native(ts_admin: Conn) -> None:
    await ensure_partitions(ts_admin, "clinical", ("vitals",), T0, T0 + DAY)
    await ts_admin.execute(
        "INSERT INTO clinical.vitals (subject_id, ts, kind, value, window_s)"
        " VALUES (%s, %s, 'hr', 60, 10)",
        (uuid.UUID(int=1), T0),
    )
    with pytest.raises(TimescaleError) as info:
        await apply_timescale(ts_admin, "clinical", compress_after=timedelta(days=7))
    assert (info.value.reason, info.value.table) == ("not_empty", "clinical.vitals")
    assert await _hypertables(ts_admin, "clinical") == set()
    cur = await ts_admin.execute(
        "SELECT relkind FROM pg_class WHERE oid IN"
        " ('clinical.frames'::regclass, 'clinical.vitals'::regclass,"
        " 'clinical.vitals_1m'::regclass)"
    )
    assert sorted(r[0] for r in await cur.fetchall()) == ["p", "p", "v"]


async def test_drop_chunks_before_drops_whole_old_chunks_only(ts_admin: Conn) -> None:
    assert await apply_timescale(ts_admin, "clinical", compress_after=timedelta(days=7))
    for day in range(3):
        await ts_admin.execute(
            "INSERT INTO clinical.vitals (subject_id, ts, kind, value, window_s)"
            " VALUES (%s, %s, 'hr', 60, 10)",
            (uuid.UUID(int=1), T0 + day * DAY + timedelta(hours=1)),
        )
    dropped = await drop_chunks_before(
        ts_admin, "clinical", "vitals", T0 + DAY + timedelta(hours=2)
    )
    assert len(dropped) == 1
    cur = await ts_admin.execute("SELECT count(*) FROM clinical.vitals")
    assert await cur.fetchone() == (2,)


async def test_research_schema_gets_the_same_layout(
    new_database: Callable[[], Awaitable[str]],
) -> None:
    dsn = await new_database()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        if await detect_backend(conn) == "native":
            pytest.skip(NO_TIMESCALE)
        await migrate(conn, load_migrations("research"))
        assert await apply_timescale(conn, "pseudo", compress_after=timedelta(days=7))
        assert await _hypertables(conn, "pseudo") == {"frames", "gaps", "vitals"}
        cur = await conn.execute(
            "SELECT has_table_privilege('research_ingest', 'pseudo.frames', 'INSERT'),"
            " has_table_privilege('research_api', 'pseudo.frames', 'SELECT')"
        )
        assert await cur.fetchone() == (True, False)
