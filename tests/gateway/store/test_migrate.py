"""Migration runner: order, idempotence, checksums, atomic failure, concurrent runners."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path

import psycopg
import pytest

from gateway.store import MigrationError
from gateway.store.embedded import embedded_postgres
from gateway.store.migrate import CARE_MIGRATIONS, Migration, load_migrations, migrate

EXPECTED = (
    (1, "identity"),
    (2, "consent"),
    (3, "audit"),
    (4, "roles"),
    (5, "clinical"),
    (6, "clinical_read"),
    (7, "care_hardening"),
    (8, "alerts"),
)
VERSIONS = tuple(version for version, _ in EXPECTED)
NEXT = VERSIONS[-1] + 1


def _changed(migration: Migration, sql: bytes) -> Migration:
    return dataclasses.replace(migration, sql=sql, sha256=hashlib.sha256(sql).hexdigest())


def test_load_migrations_reads_package_data_in_order() -> None:
    migrations = load_migrations()
    assert tuple((m.version, m.name) for m in migrations) == EXPECTED
    for m in migrations:
        data = (resources.files(CARE_MIGRATIONS) / f"{m.version:04d}_{m.name}.sql").read_bytes()
        assert m.sql == data
        assert m.sha256 == hashlib.sha256(data).hexdigest()


async def test_fresh_database_applies_all_in_order_then_nothing(empty_db: str) -> None:
    migrations = load_migrations()
    async with await psycopg.AsyncConnection.connect(empty_db, autocommit=True) as conn:
        assert await migrate(conn, migrations) == VERSIONS
        cur = await conn.execute(
            "SELECT version, name, sha256 FROM biogw_meta.schema_migrations"
            " ORDER BY applied_at, version"
        )
        rows = await cur.fetchall()
        assert rows == [(m.version, m.name, m.sha256) for m in migrations]
        cur = await conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname IN ('identity', 'consent', 'audit')"
        )
        assert {r[0] for r in await cur.fetchall()} == {"identity", "consent", "audit"}
        assert await migrate(conn, migrations) == ()
        assert await migrate(conn, migrations[:2] + migrations[2:]) == ()


async def test_changed_applied_file_is_a_checksum_mismatch(empty_db: str) -> None:
    migrations = load_migrations()
    async with await psycopg.AsyncConnection.connect(empty_db, autocommit=True) as conn:
        await migrate(conn, migrations[:3])
        edited = list(migrations)
        edited[1] = _changed(migrations[1], migrations[1].sql + b"\n-- edited\n")
        with pytest.raises(MigrationError) as info:
            await migrate(conn, edited)
        assert info.value.reason == "checksum_mismatch"
        assert info.value.version == 2
        assert "0002_consent.sql" in str(info.value)
        # Nothing ran: 0004 is still pending.
        cur = await conn.execute("SELECT max(version) FROM biogw_meta.schema_migrations")
        assert await cur.fetchone() == (3,)


async def test_applied_version_missing_from_the_files_is_refused(empty_db: str) -> None:
    migrations = load_migrations()
    async with await psycopg.AsyncConnection.connect(empty_db, autocommit=True) as conn:
        await migrate(conn, migrations)
        with pytest.raises(MigrationError) as info:
            await migrate(conn, migrations[:3])
        assert (info.value.reason, info.value.version) == ("unknown_applied", 4)


async def test_failing_migration_rolls_back_whole_file(empty_db: str) -> None:
    migrations = load_migrations()
    broken = Migration(NEXT, "broken", b"", "")
    broken = _changed(broken, b"CREATE TABLE identity.partial (x int);\nSELECT 1/0;\n")
    async with await psycopg.AsyncConnection.connect(empty_db, autocommit=True) as conn:
        with pytest.raises(MigrationError) as info:
            await migrate(conn, (*migrations, broken))
        assert (info.value.reason, info.value.version) == ("failed", NEXT)
        assert info.value.sqlstate == "22012"  # division_by_zero
        cur = await conn.execute("SELECT to_regclass('identity.partial') IS NULL")
        assert await cur.fetchone() == (True,)
        cur = await conn.execute(
            "SELECT array_agg(version ORDER BY version) FROM biogw_meta.schema_migrations"
        )
        assert await cur.fetchone() == (list(VERSIONS),)


async def test_concurrent_runners_apply_each_file_once(empty_db: str) -> None:
    migrations = load_migrations()
    async with (
        await psycopg.AsyncConnection.connect(empty_db, autocommit=True) as one,
        await psycopg.AsyncConnection.connect(empty_db, autocommit=True) as two,
    ):
        first, second = await asyncio.gather(migrate(one, migrations), migrate(two, migrations))
    assert sorted(first + second) == list(VERSIONS)
    assert not set(first) & set(second)


async def test_roles_migration_is_safe_in_many_databases(
    care_db: str, new_database: Callable[[], Awaitable[str]]
) -> None:
    # care_db already created the cluster-wide roles; more databases must migrate too,
    # also at the same time.
    dsns = [await new_database(), await new_database()]

    async def run(dsn: str) -> tuple[int, ...]:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            return await migrate(conn, load_migrations())

    assert await asyncio.gather(*(run(d) for d in dsns)) == [VERSIONS] * 2
    async with await psycopg.AsyncConnection.connect(dsns[0], autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT has_table_privilege('biogw_gateway_login', 'identity.devices', 'SELECT')"
        )
        assert await cur.fetchone() == (True,)


async def test_embedded_server_runs_migrations_and_cleans_up(tmp_path: Path) -> None:
    async with embedded_postgres(tmp_path) as dsn:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            assert await migrate(conn, load_migrations()) == VERSIONS
        assert await asyncio.to_thread(os.listdir, tmp_path)
    assert await asyncio.to_thread(os.listdir, tmp_path) == []  # data deleted on exit
