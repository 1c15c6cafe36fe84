"""The research database: its own migration set, pseudonymized tables only, and roles
that share nothing with the care database (each database is fresh, on one server)."""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from gateway.store import MigrationError, StorePermissionError, translate_error
from gateway.store.migrate import load_migrations, migrate
from gateway.store.partitions import ensure_partitions, ts_of_ns

Conn = psycopg.AsyncConnection[Any]
T0 = datetime(2026, 11, 20, tzinfo=UTC)
DAY = timedelta(days=1)
PSEUDO_TABLES = (
    "pseudo.frames",
    "pseudo.gaps",
    "pseudo.vitals",
    "pseudo.demographics",
    "pseudo.dead_letters",
    "pseudo.vitals_1m",
)
CARE_GROUPS = (
    "biogw_gateway",
    "biogw_owner_api",
    "biogw_clinician_api",
    "biogw_privacy_officer",
    "clinical_ingest",
)
CARE_ROLES = CARE_GROUPS + tuple(f"{g}_login" for g in CARE_GROUPS)
RESEARCH_ROLES = ("research_ingest", "research_ingest_login")
PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")


@pytest.fixture
async def research_db(new_database: Callable[[], Awaitable[str]]) -> str:
    dsn = await new_database()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await migrate(conn, load_migrations("research"))
    return dsn


async def _tables(conn: Conn, schemas: tuple[str, ...]) -> list[str]:
    cur = await conn.execute(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname = ANY(%s) ORDER BY 1",
        (list(schemas),),
    )
    return [str(r[0]) for r in await cur.fetchall()]


async def _privileges(conn: Conn, roles: tuple[str, ...], tables: list[str]) -> list[str]:
    held = []
    for role in roles:
        for table in tables:
            for privilege in PRIVILEGES:
                cur = await conn.execute(
                    "SELECT has_table_privilege(%s, %s, %s)", (role, table, privilege)
                )
                if await cur.fetchone() == (True,):
                    held.append(f"{role} {privilege} {table}")
    return held


async def test_both_sets_apply_on_fresh_databases_and_are_idempotent(
    new_database: Callable[[], Awaitable[str]],
) -> None:
    for name, versions in (("care", (1, 2, 3, 4, 5, 6, 7, 8)), ("research", (1, 2, 3))):
        dsn = await new_database()
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            assert await migrate(conn, load_migrations(name)) == versions, name
            assert await migrate(conn, load_migrations(name)) == (), name


async def test_research_set_refuses_a_care_database(care_db: str) -> None:
    async with await psycopg.AsyncConnection.connect(care_db, autocommit=True) as conn:
        with pytest.raises(MigrationError) as info:
            await migrate(conn, load_migrations("research"))
    assert info.value.reason in ("checksum_mismatch", "unknown_applied")


async def test_research_schema_layout(research_db: str) -> None:
    async with await psycopg.AsyncConnection.connect(research_db, autocommit=True) as conn:
        assert await _tables(conn, ("pseudo", "release")) == sorted(PSEUDO_TABLES)
        cur = await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = 'release'")
        assert await cur.fetchone() == (1,)
        for schema in ("identity", "consent", "audit", "clinical"):
            cur = await conn.execute("SELECT to_regnamespace(%s)", (schema,))
            assert await cur.fetchone() == (None,), schema


async def test_research_schema_has_no_identifying_column(research_db: str) -> None:
    async with await psycopg.AsyncConnection.connect(research_db, autocommit=True) as conn:
        await ensure_partitions(conn, "pseudo", ("frames", "gaps", "vitals"), T0, T0 + DAY)
        cur = await conn.execute(
            "SELECT table_schema || '.' || table_name || '.' || column_name"
            " FROM information_schema.columns"
            " WHERE table_schema IN ('pseudo', 'release')"
            " AND column_name ~* '(subject|device|mac|name|serial|birth|email|phone|consent)'"
        )
        assert await cur.fetchall() == []
        cur = await conn.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'pseudo'"
            " AND column_name = 'pseudonym'"
        )
        # four keyed tables, three partitions and the vitals_1m view
        assert await cur.fetchone() == (4 + 3 + 1,)


async def test_research_ingest_inserts_only(research_db: str) -> None:
    time_ns = 1_763_600_000_123_456_789 + 365 * 86_400 * 10**9
    at = ts_of_ns(time_ns)
    async with await psycopg.AsyncConnection.connect(research_db, autocommit=True) as conn:
        await conn.execute("SET ROLE research_ingest_login")
        assert len(await ensure_partitions(conn, "pseudo", ("frames",), at, at)) == 0
        assert len(await ensure_partitions(conn, "pseudo", ("frames",), at, at + DAY)) == 2
        insert = (
            "INSERT INTO pseudo.frames (pseudonym, stream, time_ns, ts, fs_hz, sequence,"
            " n_samples, unit, samples) VALUES ('p-1', 'ecg', %s, %s, 250, 1, 1, 'uV', %s)"
            " ON CONFLICT DO NOTHING"
        )
        for expected in (1, 0):
            cur = await conn.execute(insert, (time_ns, at, struct.pack("<d", 1.0)))
            assert cur.rowcount == expected
        await conn.execute(
            "INSERT INTO pseudo.demographics VALUES ('p-1', '30-39', 'female', 'Kanto')"
        )
        for statement in (
            "SELECT * FROM pseudo.frames",
            "SELECT * FROM pseudo.demographics",
            "UPDATE pseudo.frames SET quality = 1",
            "DELETE FROM pseudo.demographics",
            "SELECT * FROM biogw_meta.schema_migrations",
        ):
            with pytest.raises(psycopg.Error) as info:
                await conn.execute(statement.encode())
            assert isinstance(translate_error(info.value, "t"), StorePermissionError), statement


async def test_roles_of_one_database_hold_nothing_in_the_other(
    care_db: str, research_db: str
) -> None:
    async with await psycopg.AsyncConnection.connect(care_db, autocommit=True) as care:
        tables = await _tables(care, ("identity", "consent", "audit", "clinical", "biogw_meta"))
        assert await _privileges(care, RESEARCH_ROLES, tables) == []
        cur = await care.execute(
            "SELECT has_function_privilege(%s,"
            " 'clinical.ensure_partitions(timestamptz, timestamptz, text[])', 'EXECUTE')",
            ("research_ingest",),
        )
        assert await cur.fetchone() == (False,)
    async with await psycopg.AsyncConnection.connect(research_db, autocommit=True) as research:
        tables = await _tables(research, ("pseudo", "release", "biogw_meta"))
        assert await _privileges(research, CARE_ROLES, tables) == []
        for role in CARE_ROLES:
            cur = await research.execute(
                "SELECT has_database_privilege(%s, current_database(), 'CONNECT'),"
                " has_function_privilege(%s,"
                " 'pseudo.ensure_partitions(timestamptz, timestamptz, text[])', 'EXECUTE')",
                (role, role),
            )
            assert await cur.fetchone() == (False, False), role
        cur = await research.execute(
            "SELECT has_database_privilege('research_ingest_login', current_database(), 'CONNECT')"
        )
        assert await cur.fetchone() == (True,)


async def test_research_logins_cannot_connect_to_the_care_database(
    care_db: str, research_db: str
) -> None:
    """CONNECT is revoked from PUBLIC on both sides (care 0007, research 0001): on a
    shared server a research login is refused at the door of the care database."""
    for login in ("research_ingest_login", "research_api_login"):
        with pytest.raises(psycopg.OperationalError, match="permission denied"):
            await psycopg.AsyncConnection.connect(make_conninfo(care_db, user=login))
    for login in ("clinical_ingest_login", "biogw_clinician_api_login"):
        async with await psycopg.AsyncConnection.connect(make_conninfo(care_db, user=login)):
            pass
        with pytest.raises(psycopg.OperationalError, match="permission denied"):
            await psycopg.AsyncConnection.connect(make_conninfo(research_db, user=login))
