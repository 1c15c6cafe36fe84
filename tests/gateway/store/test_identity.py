"""identity.subjects: enrolment with a random id, read-back, and the receipt reference."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
import pytest

from gateway.store import StoreIntegrityError
from gateway.store.identity import Subject, add_subject, get_subject, receipt_reference

Conn = psycopg.AsyncConnection[Any]


async def test_add_then_get_round_trips(admin: Conn) -> None:
    subject_id = await add_subject(
        admin,
        name="Canary Tanaka",
        birth_date=date(1980, 2, 29),
        email="canary@example.org",
        phone="+81 3 1234 5678",
        country="JP",
        height_cm=171.5,
        weight_kg=Decimal("64.2"),
        sex="female",
    )
    assert isinstance(subject_id, UUID)
    assert subject_id.version == 4  # gen_random_uuid(): random, derived from nothing
    assert await get_subject(admin, subject_id) == Subject(
        subject_id=subject_id,
        name="Canary Tanaka",
        birth_date=date(1980, 2, 29),
        email="canary@example.org",
        phone="+81 3 1234 5678",
        country="JP",
        height_cm=Decimal("171.5"),
        weight_kg=Decimal("64.2"),
        sex="female",
    )


async def test_optional_fields_default_to_null_and_ids_differ(admin: Conn) -> None:
    first = await add_subject(admin, name="A", birth_date=None, email=None)
    second = await add_subject(admin, name="A", birth_date=None, email=None)
    assert first != second
    subject = await get_subject(admin, first)
    assert subject is not None
    assert (subject.phone, subject.country, subject.height_cm, subject.sex) == (
        None,
        None,
        None,
        None,
    )


async def test_unknown_subject_is_none(admin: Conn) -> None:
    assert await get_subject(admin, UUID(int=7)) is None


@pytest.mark.parametrize(
    "bad",
    [
        {"country": "jp"},
        {"email": "no-at-sign"},
        {"height_cm": 10},
        {"sex": "robot"},
    ],
)
async def test_constraints_reject_bad_values(admin: Conn, bad: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"name": "B", "birth_date": None, "email": None, **bad}
    with pytest.raises(StoreIntegrityError) as info:
        await add_subject(admin, **fields)
    assert info.value.sqlstate == "23514"
    cur = await admin.execute("SELECT count(*) FROM identity.subjects")
    assert await cur.fetchone() == (0,)


async def test_receipt_reference_is_opaque(admin: Conn) -> None:
    subject_id = await add_subject(
        admin, name="Canary Sato", birth_date=date(1990, 1, 1), email="sato@example.org"
    )
    reference = receipt_reference(subject_id)
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]{7,127}", reference)
    for personal in ("Canary", "Sato", "sato", "@", "example"):
        assert personal not in reference
