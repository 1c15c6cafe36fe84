"""Paired devices in the care database's ``identity`` schema: record a pairing, list
devices, resolve a device key to its wearer, and mark a device unpaired.

Owns the ``identity.devices`` queries. A device's key is a random UUID assigned here at
pairing; it is the only handle for the device downstream of the gateway. The radio
address (MAC) and serial number go into ``identity.devices`` and come back out only
through :func:`bond_address` (which the pairing flow uses to remove the bond); the
listing types carry neither. Every write appends an audit record (``device:<key>``, no
MAC or serial) in the caller's transaction, so the change and its audit record commit
together.

Must not: open connections or transactions of its own beyond a savepoint (the caller
passes the connection and owns the transaction), read configuration, or log MAC
addresses, serials, subject ids or device keys above DEBUG.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import psycopg

from gateway.store import audit, translate_error

__all__ = [
    "BondState",
    "PairedDevice",
    "SessionTarget",
    "bond_address",
    "device_for_key",
    "devices_of",
    "list_devices",
    "mark_unpaired",
    "record_paired_device",
    "session_targets",
    "subject_for_device",
]

BondState = Literal["unbonded", "bonding", "bonded", "removed"]

_COLUMNS = "device_key, model, profile, owner_subject_id, bond_state, paired_at, unpaired_at"


@dataclass(frozen=True, slots=True)
class PairedDevice:
    """A device as the rest of the gateway may see it: no MAC, no serial."""

    device_key: UUID
    model: str | None
    profile: str
    owner_subject_id: UUID | None
    bond_state: BondState
    paired_at: datetime | None
    unpaired_at: datetime | None

    @property
    def active(self) -> bool:
        return self.bond_state == "bonded"


def _device(row: tuple[Any, ...]) -> PairedDevice:
    key, model, profile, owner, state, paired_at, unpaired_at = row
    return PairedDevice(key, model, profile, owner, state, paired_at, unpaired_at)


async def record_paired_device(
    conn: psycopg.AsyncConnection[Any],
    *,
    mac: str,
    serial: str | None,
    model: str | None,
    profile: str,
    owner_subject_id: UUID,
    actor_role: str = "gateway",
) -> UUID:
    """Record a bonded device bound to ``owner_subject_id``; return its new random key.

    ``StoreIntegrityError`` when the MAC already has a live (not removed) binding, the
    subject does not exist, or a value breaks a CHECK constraint.
    """
    device_key = uuid.uuid4()
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO identity.devices (device_key, mac, serial, model, profile,"
                " owner_subject_id, bond_state, paired_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, 'bonded', now())",
                (device_key, mac, serial, model, profile, owner_subject_id),
            )
            await audit.append(
                conn,
                actor_role=actor_role,
                action="device.pair",
                object_ref=f"device:{device_key}",
                details={"subject": f"subject:{owner_subject_id}", "profile": profile},
            )
    except psycopg.Error as exc:
        raise translate_error(exc, "devices.record") from exc
    return device_key


async def device_for_key(
    conn: psycopg.AsyncConnection[Any], device_key: UUID
) -> PairedDevice | None:
    """The device with ``device_key`` (in any bond state), or None if there is none."""
    rows = await _fetch(
        conn,
        "devices.get",
        f"SELECT {_COLUMNS} FROM identity.devices WHERE device_key = %s",
        (device_key,),
    )
    return _device(rows[0]) if rows else None


async def devices_of(conn: psycopg.AsyncConnection[Any], subject_id: UUID) -> list[PairedDevice]:
    """Every device ever bound to ``subject_id``, most recently paired first."""
    rows = await _fetch(
        conn,
        "devices.of",
        f"SELECT {_COLUMNS} FROM identity.devices WHERE owner_subject_id = %s"
        " ORDER BY paired_at DESC NULLS LAST, device_key",
        (subject_id,),
    )
    return [_device(row) for row in rows]


async def list_devices(conn: psycopg.AsyncConnection[Any]) -> list[PairedDevice]:
    """Every recorded device, most recently paired first."""
    rows = await _fetch(
        conn,
        "devices.list",
        f"SELECT {_COLUMNS} FROM identity.devices ORDER BY paired_at DESC NULLS LAST, device_key",
        (),
    )
    return [_device(row) for row in rows]


async def subject_for_device(conn: psycopg.AsyncConnection[Any], device_key: UUID) -> UUID | None:
    """The wearer a bonded device is bound to; None when unknown, unbound or unpaired."""
    rows = await _fetch(
        conn,
        "devices.subject",
        "SELECT owner_subject_id FROM identity.devices"
        " WHERE device_key = %s AND bond_state = 'bonded'",
        (device_key,),
    )
    return rows[0][0] if rows else None


async def bond_address(conn: psycopg.AsyncConnection[Any], device_key: UUID) -> str | None:
    """The radio address of a device not yet removed, for the pairing flow to delete
    its bond; None when unknown or already removed. Nothing else may call this."""
    rows = await _fetch(
        conn,
        "devices.address",
        "SELECT mac::text FROM identity.devices WHERE device_key = %s AND bond_state <> 'removed'",
        (device_key,),
    )
    return str(rows[0][0]).upper() if rows else None


@dataclass(frozen=True, slots=True)
class SessionTarget:
    """What the session supervisor needs to reach a bonded device. The address stays in
    the gateway process: never logged above DEBUG, published or stored elsewhere."""

    device_key: UUID
    address: str
    profile: str


async def session_targets(conn: psycopg.AsyncConnection[Any]) -> list[SessionTarget]:
    """Every bonded device with its radio address, for the gateway's device sessions.
    Besides pairing, only the session supervisor may call this."""
    rows = await _fetch(
        conn,
        "devices.targets",
        "SELECT device_key, mac::text, profile FROM identity.devices"
        " WHERE bond_state = 'bonded' ORDER BY paired_at, device_key",
        (),
    )
    return [SessionTarget(key, str(mac).upper(), profile) for key, mac, profile in rows]


async def mark_unpaired(
    conn: psycopg.AsyncConnection[Any], device_key: UUID, *, actor_role: str = "gateway"
) -> bool:
    """Mark the device removed (bond state ``removed``, ``unpaired_at`` now) and audit
    it; False (and nothing written) when there is no such device not already removed."""
    try:
        async with conn.transaction():
            cur = await conn.execute(
                "UPDATE identity.devices SET bond_state = 'removed', unpaired_at = now()"
                " WHERE device_key = %s AND bond_state <> 'removed'",
                (device_key,),
            )
            if cur.rowcount != 1:
                return False
            await audit.append(
                conn,
                actor_role=actor_role,
                action="device.unpair",
                object_ref=f"device:{device_key}",
            )
    except psycopg.Error as exc:
        raise translate_error(exc, "devices.unpair") from exc
    return True


async def _fetch(
    conn: psycopg.AsyncConnection[Any], operation: str, query: str, params: tuple[Any, ...]
) -> list[tuple[Any, ...]]:
    try:
        cur = await conn.execute(query, params)
        return list(await cur.fetchall())
    except psycopg.Error as exc:
        raise translate_error(exc, operation) from exc
