"""The audit chain: append records and verify the hash chain.

Owns: ``append`` (through the ``audit.append`` SQL function, which assigns seq, time and
hashes under the chain-head row lock, so concurrent appends form one chain) and
``verify_chain``, which re-derives every hash in Python from the stored columns with the
canonical encoding documented in ``migrations/care/0003_audit.sql``. Verification does not
trust the database's own hash function, so replacing it does not hide tampering.

Must not: log details, objects or actors above DEBUG (they can name people), or update
and delete audit rows (nothing may; the database refuses).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from gateway.store import StoreError, translate_error

__all__ = ["GENESIS_HASH", "AuditEntry", "append", "row_hash", "verify_chain"]

#: ``prev_hash`` of the first record.
GENESIS_HASH = bytes(32)

_BATCH = 1000


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Where an appended record landed in the chain."""

    seq: int
    hash: bytes


async def append(
    conn: psycopg.AsyncConnection[Any],
    *,
    actor_role: str,
    action: str,
    object_ref: str,
    details: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Append one record in the caller's transaction (it commits with the caller's work).

    ``object_ref`` names what was touched (``"subject:<uuid>"``, ``"device:<key>"``).
    Concurrent appends wait on the chain head until the earlier transaction ends.
    """
    try:
        cur = await conn.execute(
            "SELECT seq, hash FROM audit.append(%s, %s, %s, %s)",
            (actor_role, action, object_ref, Jsonb(dict(details or {}))),
        )
        row = await cur.fetchone()
    except psycopg.Error as exc:
        raise translate_error(exc, "audit.append") from exc
    if row is None:  # the function always returns one row; guard the type
        raise StoreError("audit.append", None, "no row returned")
    return AuditEntry(int(row[0]), bytes(row[1]))


def _field(text: str) -> bytes:
    data = text.encode("utf-8")
    return str(len(data)).encode("ascii") + b":" + data + b";"


def row_hash(
    *,
    seq: int,
    at: datetime,
    actor_role: str,
    action: str,
    object_ref: str,
    details_json: str,
    prev_hash: bytes,
) -> bytes:
    """SHA-256 of the canonical encoding of one record (see ``0003_audit.sql``).

    ``details_json`` is PostgreSQL's text output of the jsonb value (``details::text``),
    which is canonical for a given value.
    """
    stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    encoded = b"".join(
        _field(part)
        for part in (str(seq), stamp, actor_role, action, object_ref, details_json, prev_hash.hex())
    )
    return hashlib.sha256(encoded).digest()


async def verify_chain(conn: psycopg.AsyncConnection[Any]) -> int | None:
    """Return the seq of the first broken link, or None when the whole chain verifies.

    A link is broken when its seq is not the next number, its ``prev_hash`` is not the
    previous record's hash, or its stored hash differs from the re-derived one. Removed
    records at the end are caught by the chain head: if the last record is not the head,
    the first seq missing is returned.
    """
    try:
        return await _verify(conn)
    except psycopg.Error as exc:
        raise translate_error(exc, "audit.verify") from exc


async def _verify(conn: psycopg.AsyncConnection[Any]) -> int | None:
    # The head is read first: a record is committed together with the head update that
    # covers it, so every seq up to the head read here is visible to the next statement,
    # and records appended meanwhile (seq > head) are left for the next verification.
    async with conn.transaction():
        cur = await conn.execute("SELECT last_seq, last_hash FROM audit.chain_head")
        head = await cur.fetchone()
        if head is None:
            return 1
        last_seq, last_hash = int(head[0]), bytes(head[1])
        broken, seen, prev = await _walk(conn, last_seq)
    if broken is not None:
        return broken
    if seen != last_seq or prev != last_hash:
        return seen + 1
    return None


async def _walk(conn: psycopg.AsyncConnection[Any], last_seq: int) -> tuple[int | None, int, bytes]:
    """Check records 1..last_seq in order: (first broken seq or None, last seq, its hash)."""
    seen = 0
    prev = GENESIS_HASH
    async with conn.cursor(name="biogw_audit_verify") as cur:
        await cur.execute(
            "SELECT seq, at, actor_role, action, object, details::text, prev_hash, hash"
            " FROM audit.log WHERE seq <= %s ORDER BY seq",
            (last_seq,),
        )
        while rows := await cur.fetchmany(_BATCH):
            for seq, at, actor_role, action, object_ref, details, prev_hash, stored in rows:
                computed = row_hash(
                    seq=seq,
                    at=at,
                    actor_role=actor_role,
                    action=action,
                    object_ref=object_ref,
                    details_json=details,
                    prev_hash=bytes(prev_hash),
                )
                if seq != seen + 1 or bytes(prev_hash) != prev or bytes(stored) != computed:
                    return int(seq), seen, prev
                prev = bytes(stored)
                seen = int(seq)
    return None, seen, prev
