"""Subjects in the care database's ``identity`` schema: enrol one, read one back, and the
opaque reference a consent receipt names the wearer by.

Owns the ``identity.subjects`` queries. The subject id is a random UUID assigned by the
database (``gen_random_uuid()``); nothing derives it from the name or contacts. The receipt
reference is that UUID: it is opaque (random, says nothing about the person), it is the
wearer's own identifier, and resolving it to a person needs read access to ``identity``.

Must not: open connections (the caller passes one and owns the transaction), read
configuration, or log names, contacts or subject ids above DEBUG.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

import psycopg

from gateway.store import StoreError, translate_error

__all__ = ["Sex", "Subject", "add_subject", "get_subject", "receipt_reference"]

Sex = Literal["female", "male", "other", "unknown"]


@dataclass(frozen=True, slots=True)
class Subject:
    """One enrolled person as stored. Heights and weights are ``Decimal`` (numeric(5,1))."""

    subject_id: UUID
    name: str
    birth_date: date | None
    email: str | None
    phone: str | None
    country: str | None
    height_cm: Decimal | None
    weight_kg: Decimal | None
    sex: Sex | None


async def add_subject(
    conn: psycopg.AsyncConnection[Any],
    *,
    name: str,
    birth_date: date | None,
    email: str | None,
    phone: str | None = None,
    country: str | None = None,
    height_cm: float | Decimal | None = None,
    weight_kg: float | Decimal | None = None,
    sex: Sex | None = None,
) -> UUID:
    """Insert a subject in the caller's transaction; return its new random id.

    The table's CHECK constraints validate the values (``StoreIntegrityError`` on a bad
    email, phone, country code, sex or an out-of-range height/weight).
    """
    try:
        cur = await conn.execute(
            "INSERT INTO identity.subjects"
            " (name, birth_date, email, phone, country, height_cm, weight_kg, sex)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (name, birth_date, email, phone, country, height_cm, weight_kg, sex),
        )
        row = await cur.fetchone()
    except psycopg.Error as exc:
        raise translate_error(exc, "identity.add_subject") from exc
    if row is None:  # INSERT ... RETURNING always returns the row; guard the type
        raise StoreError("identity.add_subject", None, "no row returned")
    subject_id: UUID = row[0]
    return subject_id


async def get_subject(conn: psycopg.AsyncConnection[Any], subject_id: UUID) -> Subject | None:
    """The subject with ``subject_id``, or ``None`` if there is none."""
    try:
        cur = await conn.execute(
            "SELECT id, name, birth_date, email, phone, country, height_cm, weight_kg, sex"
            " FROM identity.subjects WHERE id = %s",
            (subject_id,),
        )
        row = await cur.fetchone()
    except psycopg.Error as exc:
        raise translate_error(exc, "identity.get_subject") from exc
    if row is None:
        return None
    return Subject(
        subject_id=row[0],
        name=row[1],
        birth_date=row[2],
        email=row[3],
        phone=row[4],
        country=row[5],
        height_cm=row[6],
        weight_kg=row[7],
        sex=row[8],
    )


def receipt_reference(subject_id: UUID) -> str:
    """The reference a consent receipt names the subject by (``piiPrincipalId``): the
    random subject id itself, never a name, email or phone number."""
    return str(subject_id)
