"""Pairing end to end: simulated garments on the bumble virtual link, a real PostgreSQL
care database. Just Works and passkey garments bond and are recorded under a random key;
a wrong passkey records nothing and keeps no bond; the bond survives reconnection;
unpairing removes the bond (reads are refused again), the subject lookup no longer
resolves the key, and the router drops the device's frames as ``unbound_device``. The
MAC appears in ``identity.devices`` and nowhere else in the database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from bumble import hci
from psycopg import sql

from devices.frame import Frame, StreamKind, Timebase, Unit
from devices.garment.control import decode_features
from devices.garment.profile import GARMENT_PROFILE
from devices.garment.spec import FEATURES_UUID
from devices.sim.garment import SimulatedGarment
from devices.sim.radio import VirtualRadio
from gateway.ble.bumble_backend import BumbleAdapter, BumbleGATTError, PairingPolicy
from gateway.ble.link import BleLink
from gateway.consent import CollectionMethod, ConsentHistory, ConsentRecord, Grant, Period, Scope
from gateway.pairing import PairingError, pair_device, unpair_device
from gateway.privacy import DateShifter, FileKeyStore, Pseudonymizer
from gateway.router import DropReason, Router
from gateway.router import Path as RoutePath
from gateway.store import audit
from gateway.store.devices import device_for_key, list_devices, subject_for_device

Conn = psycopg.AsyncConnection[tuple[Any, ...]]
GATEWAY = "F0:F0:F0:F0:F0:77"
PASSKEY = 123456
INSUFFICIENT = {0x05, 0x0F}  # ATT insufficient authentication / encryption
CARE_TEAM = "org:clinic-a/team:cardio"
RESEARCH = "org:biogw/research"
S = 1_000_000_000
T0 = 1_795_334_400 * S


class Keypad:
    """The passkey provider: what the operator types, and who asked."""

    def __init__(self, passkey: int) -> None:
        self.passkey = passkey
        self.asked: list[str] = []

    async def __call__(self, address: str) -> int:
        self.asked.append(address)
        return self.passkey


@pytest.fixture
async def radio() -> AsyncIterator[VirtualRadio]:
    async with VirtualRadio() as radio:
        yield radio


@pytest.fixture
def keypad() -> Keypad:
    return Keypad(PASSKEY)


@pytest.fixture
async def link(radio: VirtualRadio, keypad: Keypad, tmp_path: Path) -> AsyncIterator[BleLink]:
    policy = PairingPolicy(io_capability="keyboard_only", passkey_provider=keypad)
    async with BumbleAdapter(radio, address=GATEWAY, key_dir=tmp_path, pairing=policy) as adapter:
        yield BleLink(kind="virtual", adapter=adapter)


async def new_subject(conn: Conn) -> uuid.UUID:
    cur = await conn.execute("INSERT INTO identity.subjects (name) VALUES ('Canary') RETURNING id")
    row = await cur.fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


async def read_features(link: BleLink, address: str) -> int:
    async with link.client(address) as client:
        return decode_features(bytes(await client.read_gatt_char(FEATURES_UUID))).boot_id


async def bond_of(link: BleLink, address: str) -> object:
    assert link.adapter is not None
    return await link.adapter.bond(hci.Address(address, hci.Address.RANDOM_DEVICE_ADDRESS))


@pytest.mark.timeout(60)
async def test_just_works_garment_pairs_and_bond_survives_reconnection(
    radio: VirtualRadio, link: BleLink, keypad: Keypad, admin: Conn
) -> None:
    address = "D0:00:00:00:00:51"
    subject = await new_subject(admin)
    async with SimulatedGarment(radio, address=address, seed=5, require_bonding=True) as garment:
        device = await pair_device(link, admin, address=address, subject_id=subject)
        assert keypad.asked == []  # Just Works: no passkey entry
        assert device.profile == GARMENT_PROFILE.name
        assert device.model == "biogw sim garment"
        assert device.bond_state == "bonded"
        assert device.owner_subject_id == subject
        assert await subject_for_device(admin, device.device_key) == subject
        assert await bond_of(link, address) is not None
        # Reconnection: the stored bond encrypts the link, no second pairing.
        assert await read_features(link, address) == garment.boot_id
    cur = await admin.execute(
        "SELECT mac::text, serial FROM identity.devices WHERE device_key = %s", (device.device_key,)
    )
    assert await cur.fetchone() == (address.lower(), f"SIM-{address.replace(':', '')}")
    assert await audit.verify_chain(admin) is None


@pytest.mark.timeout(60)
async def test_passkey_garment_pairs_with_the_right_passkey(
    radio: VirtualRadio, link: BleLink, keypad: Keypad, admin: Conn
) -> None:
    address = "D0:00:00:00:00:52"
    subject = await new_subject(admin)
    async with SimulatedGarment(
        radio, address=address, seed=6, require_bonding=True, passkey=PASSKEY
    ) as garment:
        device = await pair_device(link, admin, address=address, subject_id=subject)
        assert keypad.asked == [address]
        bond = await bond_of(link, address)
        assert bond is not None
        assert bond.ltk is not None  # type: ignore[attr-defined]
        assert bond.ltk.authenticated  # type: ignore[attr-defined]  # MITM-protected
        assert await read_features(link, address) == garment.boot_id
    assert [d.device_key for d in await list_devices(admin)] == [device.device_key]


@pytest.mark.timeout(60)
async def test_wrong_passkey_fails_cleanly_with_nothing_recorded(
    radio: VirtualRadio, link: BleLink, keypad: Keypad, admin: Conn
) -> None:
    address = "D0:00:00:00:00:53"
    subject = await new_subject(admin)
    keypad.passkey = 654321
    async with SimulatedGarment(
        radio, address=address, seed=7, require_bonding=True, passkey=PASSKEY
    ):
        with pytest.raises(PairingError) as caught:
            await pair_device(link, admin, address=address, subject_id=subject)
        assert caught.value.reason == "bond"
        assert await bond_of(link, address) is None
        async with link.client(address) as client:
            with pytest.raises(BumbleGATTError) as refused:
                await client.read_gatt_char(FEATURES_UUID)
            assert refused.value.att_error in INSUFFICIENT
    assert await list_devices(admin) == []
    cur = await admin.execute("SELECT count(*) FROM audit.log")
    assert await cur.fetchone() == (0,)


@pytest.mark.timeout(60)
async def test_unknown_subject_or_absent_device_records_nothing(
    radio: VirtualRadio, link: BleLink, admin: Conn
) -> None:
    address = "D0:00:00:00:00:54"
    async with SimulatedGarment(radio, address=address, seed=8, require_bonding=True):
        with pytest.raises(PairingError) as caught:
            await pair_device(link, admin, address=address, subject_id=uuid.uuid4())
        assert caught.value.reason == "unknown_subject"
        assert await bond_of(link, address) is None
        subject = await new_subject(admin)
        with pytest.raises(PairingError) as absent:
            await pair_device(
                link, admin, address="D0:00:00:00:0F:FF", subject_id=subject, scan_timeout_s=0.5
            )
        assert absent.value.reason == "not_found"
    assert await list_devices(admin) == []


class Directory:
    """The router's ``SubjectDirectory``, loaded from ``subject_for_device`` results."""

    def __init__(self) -> None:
        self.bindings: dict[str, uuid.UUID] = {}

    async def load(self, conn: Conn, device_key: uuid.UUID) -> None:
        self.bindings.clear()
        subject = await subject_for_device(conn, device_key)
        if subject is not None:
            self.bindings[str(device_key)] = subject

    def subject_for(self, device_key: str) -> uuid.UUID | None:
        return self.bindings.get(device_key)


class Consents:
    def __init__(self, subject: uuid.UUID) -> None:
        events = tuple(
            Grant(uuid.uuid4(), _consent(subject, scope))
            for scope in (Scope.CORE_SERVICE, Scope.CLINICAL_CARE, Scope.RESEARCH_INTERNAL)
        )
        self.history = ConsentHistory(subject, events)

    def history_for(self, subject_id: uuid.UUID) -> ConsentHistory | None:
        return self.history if subject_id == self.history.subject_id else None


def _consent(subject: uuid.UUID, scope: Scope) -> ConsentRecord:
    return ConsentRecord(
        record_id=uuid.uuid4(),
        subject_id=subject,
        scope=scope,
        period=Period(0, None),
        actor=None,
        purpose="TREAT",
        policy_version="2026-01",
        policy_text_sha256="cd" * 32,
        collection_method=CollectionMethod.APP,
        recorded_at_ns=0,
    )


def _frame(device_key: uuid.UUID) -> Frame:
    return Frame(
        device_key=str(device_key),
        stream=StreamKind.TEMP,
        time_ns=T0,
        timebase=Timebase.UTC,
        samples=np.linspace(36.0, 36.5, 4),
        unit=Unit.CELSIUS,
        fs_hz=1.0,
        sequence=1,
    )


@pytest.mark.timeout(60)
async def test_unpair_removes_bond_and_binding(
    radio: VirtualRadio, link: BleLink, admin: Conn, tmp_path: Path
) -> None:
    address = "D0:00:00:00:00:55"
    subject = await new_subject(admin)
    keystore = FileKeyStore(tmp_path / "keys", bytes(range(32)))
    directory = Directory()
    router = Router(
        directory,
        Consents(subject),
        Pseudonymizer(keystore),
        DateShifter(keystore),
        clinical_actor=CARE_TEAM,
        research_actor=RESEARCH,
    )
    async with SimulatedGarment(
        radio, address=address, seed=9, require_bonding=True, passkey=PASSKEY
    ) as garment:
        device = await pair_device(link, admin, address=address, subject_id=subject)
        key = device.device_key
        await directory.load(admin, key)
        before = router.route(_frame(key))
        assert before.clinical is not None
        assert before.research is not None
        assert await read_features(link, address) == garment.boot_id

        await unpair_device(link, admin, device_key=key)
        assert await bond_of(link, address) is None
        async with link.client(address) as client:
            with pytest.raises(BumbleGATTError) as refused:
                await client.read_gatt_char(FEATURES_UUID)
            assert refused.value.att_error in INSUFFICIENT
        with pytest.raises(PairingError):
            await unpair_device(link, admin, device_key=key)  # already removed
    assert await subject_for_device(admin, key) is None
    removed = await device_for_key(admin, key)
    assert removed is not None
    assert removed.bond_state == "removed"
    await directory.load(admin, key)
    after = router.route(_frame(key))
    assert after.clinical is None
    assert after.research is None
    for path in RoutePath:
        assert router.counters[(path, DropReason.UNBOUND_DEVICE.value)] == 1
    await assert_mac_only_in_identity_devices(admin, address)


async def assert_mac_only_in_identity_devices(conn: Conn, address: str) -> None:
    """Every row of every user table, as text: the MAC (either case, with or without
    colons) occurs in ``identity.devices`` only."""
    cur = await conn.execute(
        "SELECT table_schema, table_name FROM information_schema.tables"
        " WHERE table_type = 'BASE TABLE'"
        " AND table_schema NOT IN ('pg_catalog', 'information_schema')"
    )
    tables = await cur.fetchall()
    needles = {address.lower(), address.replace(":", "").lower()}
    holders = []
    for schema, table in tables:
        query = sql.SQL("SELECT t::text FROM {}.{} AS t").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        rows = await (await conn.execute(query)).fetchall()
        if any(n in str(row[0]).lower() for row in rows for n in needles):
            holders.append(f"{schema}.{table}")
    assert holders == ["identity.devices"]
