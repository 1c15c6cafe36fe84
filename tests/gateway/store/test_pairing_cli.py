"""``biogw pair`` / ``devices`` / ``unpair`` end to end: the virtual link with a simulated
garment that requires bonding (Just Works, and passkey entry with ``--passkey-entry``)
and a real care database. ``devices`` never prints the MAC."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import psycopg
import pytest
from click.testing import CliRunner, Result

from gateway.cli import _Invocation
from gateway.pairing_cli import register
from gateway.store.devices import subject_for_device

GARMENT = "D0:00:00:00:00:01"  # the fleet's first garment


@click.group()
@click.pass_context
def biogw(ctx: click.Context) -> None:
    ctx.obj = _Invocation(None, None)


register(biogw)


async def run(
    care_db: str,
    keys: Path,
    args: Sequence[str],
    stdin: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> Result:
    env: dict[str, str | None] = {
        "BIOGW_CONFIG": None,
        "COLUMNS": "200",  # rich would shorten cells to fit 80 columns
        "BIOGW_DATABASE__CARE_DSN": care_db,
        "BIOGW_BLE__KEYSTORE_DIR": str(keys),
        "BIOGW_SIM__POLAR": "0",
        "BIOGW_SIM__GARMENT": "1",
        "BIOGW_SIM__REQUIRE_BONDING": "true",
        **(extra_env or {}),
    }
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, biogw, list(args), input=stdin, env=env)


async def new_subject(conn: psycopg.AsyncConnection[Any]) -> uuid.UUID:
    cur = await conn.execute("INSERT INTO identity.subjects (name) VALUES ('Canary') RETURNING id")
    row = await cur.fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


@pytest.mark.timeout(90)
@pytest.mark.parametrize("chosen", [True, False], ids=["address", "from-scan"])
async def test_pair_list_unpair(
    care_db: str, admin: psycopg.AsyncConnection[Any], tmp_path: Path, chosen: bool
) -> None:
    subject = await new_subject(admin)
    args = ["pair", GARMENT] if chosen else ["pair"]
    paired = await run(
        care_db, tmp_path, [*args, "--subject", str(subject)], stdin=None if chosen else "1\n"
    )
    assert paired.exit_code == 0, paired.output
    key = uuid.UUID(paired.stdout.strip().splitlines()[-1])
    assert await subject_for_device(admin, key) == subject

    listed = await run(care_db, tmp_path, ["devices"])
    assert listed.exit_code == 0, listed.output
    assert str(key) in listed.stdout
    assert "bonded" in listed.stdout
    assert GARMENT.lower() not in listed.stdout.lower()

    unpaired = await run(care_db, tmp_path, ["unpair", str(key)])
    assert unpaired.exit_code == 0, unpaired.output
    assert await subject_for_device(admin, key) is None
    again = await run(care_db, tmp_path, ["unpair", str(key)])
    assert again.exit_code == 1
    assert "not_found" in again.stderr


async def test_unknown_subject_is_refused(care_db: str, tmp_path: Path) -> None:
    result = await run(care_db, tmp_path, ["pair", GARMENT, "--subject", str(uuid.uuid4())])
    assert result.exit_code == 1
    assert "unknown_subject" in result.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("typed", "ok"), [("123456", True), ("654321", False)])
async def test_pair_with_passkey_entry(
    care_db: str, admin: psycopg.AsyncConnection[Any], tmp_path: Path, typed: str, ok: bool
) -> None:
    subject = await new_subject(admin)
    result = await run(
        care_db,
        tmp_path,
        ["pair", GARMENT, "--subject", str(subject), "--passkey-entry"],
        stdin=f"{typed}\n",
        extra_env={"BIOGW_SIM__PASSKEY": "123456"},
    )
    if ok:
        assert result.exit_code == 0, result.output
        key = uuid.UUID(result.stdout.strip().splitlines()[-1])
        assert await subject_for_device(admin, key) == subject
    else:
        assert result.exit_code == 1
        assert "bond" in result.stderr
        cur = await admin.execute("SELECT count(*) FROM identity.devices")
        assert await cur.fetchone() == (0,)
