"""A small ordered-SQL migration runner with a version table.

Owns: discovering migrations shipped as package data, one set per database (``care``,
``research``) (``NNNN_name.sql``, loaded with
``importlib.resources``), recording each applied file with its SHA-256 in
``biogw_meta.schema_migrations``, applying each pending file in its own transaction in
version order, and refusing to run when an applied file has changed or is unknown.
Concurrent runners are serialised by a transaction-scoped advisory lock, so two processes
migrating one database apply each file once.

Must not: open connections itself (the caller passes one), read configuration, or log SQL
text or row values above DEBUG.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any, Final, Literal

import psycopg

from gateway.store import MigrationError, translate_error

__all__ = [
    "CARE_MIGRATIONS",
    "MIGRATION_SETS",
    "RESEARCH_MIGRATIONS",
    "Migration",
    "MigrationSet",
    "load_migrations",
    "migrate",
]

_log = logging.getLogger(__name__)

#: Package holding the care database's migrations.
CARE_MIGRATIONS = "gateway.store.migrations.care"
#: Package holding the research database's migrations.
RESEARCH_MIGRATIONS = "gateway.store.migrations.research"

#: The named migration sets, one per database.
MigrationSet = Literal["care", "research"]
MIGRATION_SETS: Final[Mapping[str, str]] = MappingProxyType(
    {"care": CARE_MIGRATIONS, "research": RESEARCH_MIGRATIONS}
)

# pg_advisory_xact_lock key: the first 8 bytes of sha256(b"biogw.migrate"), signed.
_LOCK_KEY = int.from_bytes(hashlib.sha256(b"biogw.migrate").digest()[:8], "big", signed=True)
_NAME = re.compile(r"^(?P<version>[0-9]{4})_(?P<name>[a-z0-9_]+)\.sql$")

_SETUP = b"""
CREATE SCHEMA IF NOT EXISTS biogw_meta;
REVOKE ALL ON SCHEMA biogw_meta FROM PUBLIC;
CREATE TABLE IF NOT EXISTS biogw_meta.schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    sha256      text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file: ``version`` from its name, ``sha256`` hex digest of its bytes."""

    version: int
    name: str
    sql: bytes
    sha256: str


def load_migrations(package: str = "care") -> tuple[Migration, ...]:
    """Read every ``NNNN_name.sql`` in ``package``, sorted by version.

    ``package`` is a set name from ``MIGRATION_SETS`` (``"care"``, the default, or
    ``"research"``) or a dotted package name such as ``CARE_MIGRATIONS``.

    Raises ``MigrationError`` (``bad_name``, ``duplicate_version``) for a ``.sql`` file
    whose name does not follow the pattern or a version used twice.
    """
    found: dict[int, Migration] = {}
    package = MIGRATION_SETS.get(package, package)
    for entry in resources.files(package).iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.match(entry.name)
        if match is None:
            raise MigrationError("bad_name", None, entry.name)
        version = int(match["version"])
        if version in found:
            raise MigrationError("duplicate_version", version, entry.name)
        data = entry.read_bytes()
        found[version] = Migration(version, match["name"], data, hashlib.sha256(data).hexdigest())
    return tuple(found[v] for v in sorted(found))


async def migrate(
    conn: psycopg.AsyncConnection[Any], migrations: Sequence[Migration]
) -> tuple[int, ...]:
    """Apply the pending ``migrations`` in version order; return the versions applied.

    ``conn`` must be idle (not inside a transaction). Each file runs in its own
    transaction together with its history row, so a failing file leaves no trace and the
    earlier ones stay applied. Before anything is applied, the history is checked: an
    applied version whose file changed (``checksum_mismatch``) or is missing from
    ``migrations`` (``unknown_applied``) raises ``MigrationError`` and nothing runs.
    """
    ordered = sorted(migrations, key=lambda m: m.version)
    try:
        async with conn.transaction():
            await _lock(conn)
            await conn.execute(_SETUP)
            applied = await _applied(conn)
    except psycopg.Error as exc:
        raise translate_error(exc, "migrate.setup") from exc
    _check_history(applied, ordered)
    done: list[int] = []
    for migration in ordered:
        if migration.version in applied:
            continue
        if await _apply(conn, migration):
            done.append(migration.version)
    return tuple(done)


async def _lock(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))


async def _applied(conn: psycopg.AsyncConnection[Any]) -> dict[int, str]:
    cur = await conn.execute("SELECT version, sha256 FROM biogw_meta.schema_migrations")
    return {int(version): str(digest) for version, digest in await cur.fetchall()}


def _check_history(applied: dict[int, str], migrations: Sequence[Migration]) -> None:
    known = {m.version: m for m in migrations}
    for version in sorted(applied):
        migration = known.get(version)
        if migration is None:
            raise MigrationError(
                "unknown_applied", version, "applied in the database but not shipped"
            )
        if migration.sha256 != applied[version]:
            raise MigrationError(
                "checksum_mismatch",
                version,
                f"{version:04d}_{migration.name}.sql changed after it was applied "
                f"(recorded sha256 {applied[version][:12]}…, file {migration.sha256[:12]}…)",
            )


async def _apply(conn: psycopg.AsyncConnection[Any], migration: Migration) -> bool:
    """Apply one file unless a concurrent runner already did; True if applied here."""
    try:
        async with conn.transaction():
            await _lock(conn)
            cur = await conn.execute(
                "SELECT sha256 FROM biogw_meta.schema_migrations WHERE version = %s",
                (migration.version,),
            )
            row = await cur.fetchone()
            if row is not None:
                _check_history({migration.version: str(row[0])}, [migration])
                return False
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO biogw_meta.schema_migrations (version, name, sha256)"
                " VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.sha256),
            )
    except psycopg.Error as exc:
        # The primary message names schema objects, not row values (those are in .detail).
        message = exc.diag.message_primary or type(exc).__name__
        raise MigrationError("failed", migration.version, message, sqlstate=exc.sqlstate) from exc
    _log.info("applied migration %04d_%s", migration.version, migration.name)
    return True
