"""``biogw db migrate|status``: the databases' schemas from the command line.

Owns: applying the shipped care migrations to the care database (configured DSN or the
embedded server, see ``gateway.care_db``), and the research migrations to the research
database when there is one (``database.research_dsn``, or the embedded server's), and
reporting which care versions are applied and which are pending.

Must not: print DSNs (they may hold passwords), SQL text or row values.
"""

from __future__ import annotations

from typing import Any

import click
import psycopg

from gateway.care_db import (
    apply_care_migrations,
    apply_research_migrations,
    care_database,
    connect,
    databases,
    run,
)
from gateway.config import Invocation
from gateway.store import translate_error
from gateway.store.migrate import load_migrations

__all__ = ["db_group", "register"]


def _versions(versions: tuple[int, ...] | list[int]) -> str:
    return ", ".join(str(v) for v in versions) if versions else "none"


@click.group("db")
def db_group() -> None:
    """The databases' schemas (migrations): care, and research when there is one."""


@db_group.command("migrate")
@click.pass_obj
def db_migrate(invocation: Invocation) -> None:
    """Apply the pending care migrations (and the research ones, when there is a research
    database); print the versions applied."""
    settings = invocation.settings()

    async def go() -> None:
        async with databases(settings, auto_migrate=False) as dbs:
            applied = await apply_care_migrations(dbs.care)
            click.echo(f"applied: {_versions(applied)}")
            if dbs.research is not None:
                research = await apply_research_migrations(dbs.research)
                click.echo(f"research applied: {_versions(research)}")

    run(go())


async def _applied_versions(conn: psycopg.AsyncConnection[Any]) -> list[int]:
    try:
        cur = await conn.execute("SELECT to_regclass('biogw_meta.schema_migrations')")
        row = await cur.fetchone()
        if row is None or row[0] is None:
            return []
        cur = await conn.execute(
            "SELECT version FROM biogw_meta.schema_migrations ORDER BY version"
        )
        return [int(version) for (version,) in await cur.fetchall()]
    except psycopg.Error as exc:
        raise translate_error(exc, "migrate.status") from exc


@db_group.command("status")
@click.pass_obj
def db_status(invocation: Invocation) -> None:
    """Print the applied and the pending care migration versions."""
    settings = invocation.settings()

    async def go() -> None:
        async with (
            care_database(settings, auto_migrate=False) as dsn,
            await connect(dsn) as conn,
        ):
            applied = await _applied_versions(conn)
        pending = [m.version for m in load_migrations() if m.version not in applied]
        click.echo(f"applied: {_versions(applied)}")
        click.echo(f"pending: {_versions(pending)}")

    run(go())


def register(group: click.Group) -> None:
    """Add ``db`` to the ``biogw`` group."""
    group.add_command(db_group)
