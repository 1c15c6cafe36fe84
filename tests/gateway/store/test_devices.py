"""The ``identity.devices`` queries against a real PostgreSQL: recording a pairing with a
random key, listing without MAC or serial, unpairing, and the audit record each write
appends in the same transaction (and only then)."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import psycopg
import pytest

from gateway.store import StoreIntegrityError, audit
from gateway.store.devices import (
    PairedDevice,
    bond_address,
    device_for_key,
    devices_of,
    list_devices,
    mark_unpaired,
    record_paired_device,
    subject_for_device,
)

Conn = psycopg.AsyncConnection[tuple[Any, ...]]
MAC = "C0:FF:EE:00:12:34"


async def new_subject(conn: Conn, name: str = "Canary Wearer") -> uuid.UUID:
    cur = await conn.execute(
        "INSERT INTO identity.subjects (name) VALUES (%s) RETURNING id", (name,)
    )
    row = await cur.fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


async def audit_rows(conn: Conn) -> list[tuple[Any, ...]]:
    cur = await conn.execute("SELECT action, object, details::text FROM audit.log ORDER BY seq")
    return list(await cur.fetchall())


async def record(conn: Conn, subject: uuid.UUID, mac: str = MAC) -> uuid.UUID:
    return await record_paired_device(
        conn, mac=mac, serial="SIM-123", model="sim", profile="garment", owner_subject_id=subject
    )


async def test_record_gives_a_random_key_and_audits(admin: Conn) -> None:
    subject = await new_subject(admin)
    key = await record(admin, subject)
    assert key.version == 4
    device = await device_for_key(admin, key)
    assert device is not None
    assert device.device_key == key
    assert (device.owner_subject_id, device.profile, device.model) == (subject, "garment", "sim")
    assert device.bond_state == "bonded"
    assert device.active
    assert device.paired_at is not None
    assert await subject_for_device(admin, key) == subject
    assert await devices_of(admin, subject) == [device]
    assert await list_devices(admin) == [device]
    assert await bond_address(admin, key) == MAC
    # The public value type has no field for the MAC or the serial.
    names = {f.name for f in dataclasses.fields(PairedDevice)}
    assert not names & {"mac", "serial", "address"}
    rows = await audit_rows(admin)
    assert [(a, o) for a, o, _ in rows] == [("device.pair", f"device:{key}")]
    assert MAC.lower() not in rows[0][2].lower()
    assert "SIM-123" not in rows[0][2]
    assert await audit.verify_chain(admin) is None


async def test_unknown_keys_and_subjects(admin: Conn) -> None:
    missing = uuid.uuid4()
    assert await device_for_key(admin, missing) is None
    assert await subject_for_device(admin, missing) is None
    assert await bond_address(admin, missing) is None
    assert await devices_of(admin, missing) == []
    assert await mark_unpaired(admin, missing) is False
    with pytest.raises(StoreIntegrityError):
        await record(admin, missing)  # no such subject: foreign key
    assert await list_devices(admin) == []
    assert await audit_rows(admin) == []


async def test_a_live_mac_binds_once_and_a_failed_write_audits_nothing(admin: Conn) -> None:
    subject, other = await new_subject(admin), await new_subject(admin, "Other")
    await record(admin, subject)
    with pytest.raises(StoreIntegrityError):
        await record(admin, other, mac=MAC.lower())
    assert len(await audit_rows(admin)) == 1
    assert await devices_of(admin, other) == []


async def test_unpair_releases_the_subject_and_the_mac(admin: Conn) -> None:
    subject = await new_subject(admin)
    key = await record(admin, subject)
    assert await mark_unpaired(admin, key) is True
    device = await device_for_key(admin, key)
    assert device is not None
    assert device.bond_state == "removed"
    assert not device.active
    assert device.unpaired_at is not None
    assert device.paired_at is not None
    assert device.unpaired_at >= device.paired_at
    assert await subject_for_device(admin, key) is None
    assert await bond_address(admin, key) is None
    assert await mark_unpaired(admin, key) is False  # already removed: nothing written
    again = await record(admin, subject)  # the MAC may be bound anew, under a new key
    assert again != key
    assert [d.device_key for d in await devices_of(admin, subject)] == [again, key]
    rows = await audit_rows(admin)
    assert [a for a, _, _ in rows] == ["device.pair", "device.unpair", "device.pair"]
    assert await audit.verify_chain(admin) is None


async def test_writes_join_the_callers_transaction(care_db: str) -> None:
    async with await psycopg.AsyncConnection.connect(care_db) as conn:
        subject = await new_subject(conn)
        key = await record(conn, subject)
        await conn.rollback()
        assert await device_for_key(conn, key) is None
        assert await audit_rows(conn) == []
