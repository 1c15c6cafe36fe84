"""``biogw db migrate|status`` on a fresh database, and the care commands without a DSN
(an embedded PostgreSQL kept in ``database.embedded_dir``, migrated on first use).
The commands run their own event loop, so each runs in a worker thread."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from click.testing import CliRunner, Result

from gateway.cli import main
from gateway.store.migrate import load_migrations

VERSIONS = ", ".join(str(m.version) for m in load_migrations())


async def biogw(
    args: Sequence[str], *, dsn: str | None, embedded_dir: Path | None = None
) -> Result:
    env = {
        "BIOGW_DATABASE__CARE_DSN": dsn,
        "BIOGW_DATABASE__EMBEDDED_DIR": str(embedded_dir) if embedded_dir else None,
        "BIOGW_CONFIG": None,
    }
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), env=env)


def test_the_care_migrations_are_1_to_8() -> None:
    assert VERSIONS == "1, 2, 3, 4, 5, 6, 7, 8"


async def test_migrate_applies_every_version_once(empty_db: str) -> None:
    before = await biogw(["db", "status"], dsn=empty_db)
    assert before.exit_code == 0, before.output
    assert before.stdout.splitlines() == ["applied: none", f"pending: {VERSIONS}"]

    first = await biogw(["db", "migrate"], dsn=empty_db)
    assert first.exit_code == 0, first.output
    assert first.stdout.strip() == f"applied: {VERSIONS}"

    second = await biogw(["db", "migrate"], dsn=empty_db)
    assert second.exit_code == 0, second.output
    assert second.stdout.strip() == "applied: none"

    after = await biogw(["db", "status"], dsn=empty_db)
    assert after.stdout.splitlines() == [f"applied: {VERSIONS}", "pending: none"]


async def test_an_unreachable_server_is_a_clear_error() -> None:
    result = await biogw(["db", "status"], dsn="postgresql://postgres@127.0.0.1:1/nothing")
    assert result.exit_code == 1
    assert result.stderr.startswith("biogw: ")


async def test_without_a_dsn_the_embedded_database_is_used_and_kept(tmp_path: Path) -> None:
    data_dir = tmp_path / "state" / "pgdata"
    enrol = ["subject", "add", "--name", "Embedded Canary", "--birth-date", "1990-01-02"]
    added = await biogw(
        [*enrol, "--email", "embedded@example.org"],
        dsn=None,
        embedded_dir=data_dir,
    )
    assert added.exit_code == 0, added.output
    subject_id = added.stdout.strip()
    assert (data_dir / "PG_VERSION").exists()

    # A second process-like invocation starts the server again on the same directory.
    shown = await biogw(["consent", "show", subject_id], dsn=None, embedded_dir=data_dir)
    assert shown.exit_code == 0, shown.output
    assert "unknown_subject" not in shown.output

    status = await biogw(["db", "status"], dsn=None, embedded_dir=data_dir)
    assert status.stdout.splitlines() == [f"applied: {VERSIONS}", "pending: none"]
    missing = await biogw(
        ["consent", "show", "00000000-0000-4000-8000-000000000000"],
        dsn=None,
        embedded_dir=data_dir,
    )
    assert missing.exit_code == 1
    assert "unknown_subject" in missing.stderr
