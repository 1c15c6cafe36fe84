"""Where the command-line tools find their databases, and how they talk to them.

Owns: choosing the databases for a command. The care database is the configured
``database.care_dsn`` or, when none is configured, an embedded PostgreSQL (pgserver) whose
cluster is kept in ``database.embedded_dir`` and which gets the care migrations applied
automatically. The research database (``databases``) is ``database.research_dsn`` or, on
the embedded server, its second database ``biogw_research`` (research migrations applied
automatically). Also the connection and event-loop helpers the subcommands share.

The embedded server is started for the duration of ``care_database`` and stopped when
the block ends unless another process is still using the same directory (pgserver keeps
a per-directory list of processes); the data stays in the directory for the next command.

Must not: apply migrations to a configured server on its own (``biogw db migrate`` does
that explicitly), or log DSNs, SQL text or row values above DEBUG.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

import click
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from gateway.config import Settings
from gateway.errors import BiogwError
from gateway.store import translate_error
from gateway.store.embedded import embedded_postgres
from gateway.store.migrate import load_migrations, migrate

__all__ = [
    "EMBEDDED_RESEARCH_DB",
    "Databases",
    "apply_care_migrations",
    "apply_research_migrations",
    "care_database",
    "connect",
    "databases",
    "embedded_research_database",
    "run",
    "run_until_stopped",
]

EMBEDDED_RESEARCH_DB: Final = "biogw_research"
"""The research database's name on the embedded server."""


@dataclass(frozen=True, slots=True)
class Databases:
    """The DSNs of one invocation: care always, research when there is one."""

    care: str
    research: str | None


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


@asynccontextmanager
async def databases(settings: Settings, *, auto_migrate: bool = True) -> AsyncIterator[Databases]:
    """Both databases for this invocation. Care as ``care_database``; research is
    ``database.research_dsn`` when configured, else on the embedded server its database
    ``biogw_research`` (created and migrated like the care one), else none."""
    async with care_database(settings, auto_migrate=auto_migrate) as care:
        research = settings.database.research_dsn
        if research is None and settings.database.care_dsn is None:
            research = await embedded_research_database(care, auto_migrate=auto_migrate)
        yield Databases(care, research)


async def embedded_research_database(server_dsn: str, *, auto_migrate: bool = True) -> str:
    """The research database ``biogw_research`` on the embedded server at ``server_dsn``
    (created if missing, migrated unless ``auto_migrate`` is false); returns its DSN."""
    async with await connect(server_dsn) as conn:
        try:
            cur = await conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_RESEARCH_DB,)
            )
            if await cur.fetchone() is None:
                await conn.execute(
                    sql.SQL("CREATE DATABASE {}").format(sql.Identifier(EMBEDDED_RESEARCH_DB))
                )
        except psycopg.Error as exc:
            raise translate_error(exc, "research.create") from exc
    dsn = make_conninfo(server_dsn, dbname=EMBEDDED_RESEARCH_DB)
    if auto_migrate:
        await apply_research_migrations(dsn)
    return dsn


async def apply_research_migrations(dsn: str) -> tuple[int, ...]:
    """Apply the pending research migrations to ``dsn``; return the versions applied."""
    async with await connect(dsn) as conn:
        return await migrate(conn, load_migrations("research"))


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


def run_until_stopped(main: Callable[[], Awaitable[None]], *, duration_s: float | None) -> None:
    """Run ``main()`` (a long-running command) until it returns, Ctrl-C or SIGTERM (both
    cancel it, so it stops cleanly) or ``duration_s`` seconds; a ``BiogwError`` is
    printed and exits with status 1."""

    async def go() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None  # inside asyncio.run
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            async with asyncio.timeout(duration_s):
                await main()

    run(go())


def run(coro: Coroutine[Any, Any, None]) -> None:
    """Run a command's coroutine; a ``BiogwError`` is printed and exits with status 1."""
    try:
        asyncio.run(coro)
    except BiogwError as exc:
        click.echo(f"biogw: {exc}", err=True)
        sys.exit(1)
