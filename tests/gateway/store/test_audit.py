"""Audit chain: appends chain up, verification finds the first tampered record."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from gateway.store import AppendOnlyError, translate_error
from gateway.store.audit import GENESIS_HASH, append, row_hash, verify_chain

Conn = psycopg.AsyncConnection[Any]
N = 12


async def _fill(conn: Conn, count: int = N) -> None:
    for i in range(count):
        await append(
            conn,
            actor_role="clinician_api",
            action="read",
            object_ref=f"subject:{i:04d}",
            details={"stream": "ecg", "n": i},
        )


async def _tamper(conn: Conn, statement: str, *params: object) -> None:
    """Run a statement as superuser with triggers bypassed (what an attacker with
    superuser access could do); the append-only trigger would otherwise refuse."""
    async with conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(statement.encode(), params)


async def test_empty_chain_verifies(admin: Conn) -> None:
    assert await verify_chain(admin) is None


async def test_appends_chain_and_verify(admin: Conn) -> None:
    await _fill(admin)
    assert await verify_chain(admin) is None
    cur = await admin.execute(
        "SELECT seq, at, actor_role, action, object, details::text, prev_hash, hash"
        " FROM audit.log ORDER BY seq"
    )
    prev = GENESIS_HASH
    rows = await cur.fetchall()
    assert [r[0] for r in rows] == list(range(1, N + 1))
    for seq, at, actor, action, obj, details, prev_hash, stored in rows:
        assert prev_hash == prev
        expected = row_hash(
            seq=seq,
            at=at,
            actor_role=actor,
            action=action,
            object_ref=obj,
            details_json=details,
            prev_hash=prev_hash,
        )
        assert stored == expected  # the SQL trigger and the Python verifier agree
        prev = stored


@pytest.mark.parametrize(
    "details",
    [
        {"name": "Zoë 名前 🫀", "sep": ":;|\x1f", "nested": {"b": [1, 2.5, None], "a": True}},
        {"long": "x" * 5000, "quote": "\"'\\", "num": 1e-7},
        {},
    ],
)
async def test_canonical_encoding_matches_for_awkward_values(
    admin: Conn, details: dict[str, object]
) -> None:
    await append(admin, actor_role="r;1:", action="a:b;", object_ref="", details=details)
    await append(admin, actor_role="r", action="a", object_ref="ö", details=details)
    assert await verify_chain(admin) is None


@pytest.mark.parametrize("column", ["details", "action", "at", "hash", "prev_hash"])
async def test_tampered_row_breaks_verification_at_that_seq(admin: Conn, column: str) -> None:
    await _fill(admin)
    change = {
        "details": "details = details || '{\"n\": 999}'",
        "action": "action = 'write'",
        "at": "at = at - interval '1 hour'",
        "hash": "hash = sha256('forged'::bytea)",
        "prev_hash": "prev_hash = sha256('forged'::bytea)",
    }[column]
    await _tamper(admin, f"UPDATE audit.log SET {change} WHERE seq = %s", 7)
    assert await verify_chain(admin) == 7


async def test_deleted_rows_are_found(admin: Conn) -> None:
    await _fill(admin)
    await _tamper(admin, "DELETE FROM audit.log WHERE seq = %s", 5)
    assert await verify_chain(admin) == 6  # the first record whose link no longer holds
    await _tamper(admin, "DELETE FROM audit.log WHERE seq >= %s", 5)
    assert await verify_chain(admin) == 5  # the chain head still says there were 12


async def test_superuser_update_without_bypass_is_refused(admin: Conn) -> None:
    await _fill(admin, 2)

    for statement in (
        "UPDATE audit.log SET action = 'x' WHERE seq = 1",
        "DELETE FROM audit.log WHERE seq = 1",
        "TRUNCATE audit.log",
    ):
        with pytest.raises(psycopg.Error) as info:
            await admin.execute(statement.encode())
        assert isinstance(translate_error(info.value, "test"), AppendOnlyError)
    assert await verify_chain(admin) is None


async def test_rolled_back_append_leaves_no_gap(admin: Conn) -> None:
    await _fill(admin, 2)
    async with admin.transaction(force_rollback=True):
        await append(admin, actor_role="x", action="read", object_ref="subject:x")
    entry = await append(admin, actor_role="x", action="read", object_ref="subject:y")
    assert entry.seq == 3
    assert await verify_chain(admin) is None


async def test_concurrent_appends_form_one_chain(care_db: str) -> None:
    async def writer(tag: str) -> list[int]:
        seqs: list[int] = []
        async with await psycopg.AsyncConnection.connect(care_db) as conn:
            for i in range(15):
                async with conn.transaction():
                    entry = await append(
                        conn, actor_role=tag, action="read", object_ref=f"{tag}:{i}"
                    )
                    seqs.append(entry.seq)
        return seqs

    results = await asyncio.gather(*(writer(f"w{k}") for k in range(3)))
    all_seqs = sorted(s for r in results for s in r)
    assert all_seqs == list(range(1, 46))
    async with await psycopg.AsyncConnection.connect(care_db, autocommit=True) as conn:
        assert await verify_chain(conn) is None
