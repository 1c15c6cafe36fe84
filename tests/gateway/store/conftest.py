"""Fixtures for the care-database tests: a server, and a fresh database per test.

The server is the one named by ``BIOGW_TEST_DSN`` (CI sets it to the machine's
PostgreSQL) or, when unset, an embedded pgserver instance started once per session, so
the suite passes on a machine without PostgreSQL. Every test gets its own database
``biogw_test_<random>``, dropped afterwards. Roles are cluster-global and shared.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from gateway.store.embedded import EmbeddedServer
from gateway.store.migrate import load_migrations, migrate


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """Superuser DSN of the test server (maintenance database)."""
    configured = os.environ.get("BIOGW_TEST_DSN")
    if configured:
        yield configured
        return
    with EmbeddedServer() as server:
        assert server.dsn is not None
        yield server.dsn


async def create_database(server_dsn: str) -> tuple[str, str]:
    """Create ``biogw_test_<random>``; return (name, DSN)."""
    name = f"biogw_test_{secrets.token_hex(6)}"
    async with await psycopg.AsyncConnection.connect(server_dsn, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name, make_conninfo(server_dsn, dbname=name)


async def drop_database(server_dsn: str, name: str) -> None:
    async with await psycopg.AsyncConnection.connect(server_dsn, autocommit=True) as admin:
        await admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
async def empty_db(server_dsn: str) -> AsyncIterator[str]:
    """DSN (superuser) of a fresh, empty database dropped after the test."""
    name, dsn = await create_database(server_dsn)
    try:
        yield dsn
    finally:
        await drop_database(server_dsn, name)


@pytest.fixture
async def new_database(server_dsn: str) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """A factory for further fresh databases (DSNs), all dropped after the test."""
    names: list[str] = []

    async def make() -> str:
        name, dsn = await create_database(server_dsn)
        names.append(name)
        return dsn

    try:
        yield make
    finally:
        for name in names:
            await drop_database(server_dsn, name)


@pytest.fixture
async def care_db(empty_db: str) -> str:
    """DSN (superuser) of a fresh database with every care migration applied."""
    async with await psycopg.AsyncConnection.connect(empty_db, autocommit=True) as conn:
        await migrate(conn, load_migrations())
    return empty_db


@pytest.fixture
async def admin(care_db: str) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
    """Autocommit superuser connection to the migrated care database."""
    async with await psycopg.AsyncConnection.connect(care_db, autocommit=True) as conn:
        yield conn
