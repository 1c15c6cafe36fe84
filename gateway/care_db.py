"""Where the command-line tools find the care database, and how they talk to it.

Owns: choosing the care database for a command — the configured ``database.care_dsn``,
or, when none is configured, an embedded PostgreSQL (pgserver) whose cluster is kept in
``database.embedded_dir`` and which gets the care migrations applied automatically —
plus the connection and event-loop helpers the ``biogw`` subcommands share.

The embedded server is started for the duration of ``care_database`` and stopped when
the block ends unless another process is still using the same directory (pgserver keeps
a per-directory list of processes); the data stays in the directory for the next command.

Must not: apply migrations to a configured server on its own (``biogw db migrate`` does
that explicitly), or log DSNs, SQL text or row values above DEBUG.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import click
import psycopg

from gateway.config import Settings
from gateway.errors import BiogwError
from gateway.store import translate_error
from gateway.store.embedded import embedded_postgres
from gateway.store.migrate import load_migrations, migrate

__all__ = ["apply_care_migrations", "care_database", "connect", "run"]


@asynccontextmanager
async def care_database(settings: Settings, *, auto_migrate: bool = True) -> AsyncIterator[str]:
    """Yield the DSN of the care database for this invocation.

    ``database.care_dsn`` when configured (used as is); otherwise an embedded server in
    ``database.embedded_dir``, brought up to date with the care migrations first unless
    ``auto_migrate`` is false. Raises ``StoreUnavailableError`` if the embedded server
    cannot start and ``MigrationError`` if its history does not match the shipped files.
    """
    configured = settings.database.care_dsn
    if configured is not None:
        yield configured
        return
    async with embedded_postgres(data_dir=settings.database.embedded_dir) as dsn:
        if auto_migrate:
            await apply_care_migrations(dsn)
        yield dsn


async def apply_care_migrations(dsn: str) -> tuple[int, ...]:
    """Apply the pending care migrations to ``dsn``; return the versions applied."""
    async with await connect(dsn) as conn:
        return await migrate(conn, load_migrations())


async def connect(dsn: str) -> psycopg.AsyncConnection[Any]:
    """An autocommit connection; connection failures become ``StoreError``s."""
    try:
        return await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    except psycopg.Error as exc:
        raise translate_error(exc, "care.connect") from exc


def run(coro: Coroutine[Any, Any, None]) -> None:
    """Run a command's coroutine; a ``BiogwError`` is printed and exits with status 1."""
    try:
        asyncio.run(coro)
    except BiogwError as exc:
        click.echo(f"biogw: {exc}", err=True)
        sys.exit(1)
