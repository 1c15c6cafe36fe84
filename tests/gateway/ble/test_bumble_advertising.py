"""The advertising-data parser behind BumbleScanner: golden bytes, malformed input,
round trips and fuzzing (pure; no radio)."""

from __future__ import annotations

import uuid

from bleak.uuids import normalize_uuid_16, normalize_uuid_32
from bumble.core import AdvertisingData
from hypothesis import given
from hypothesis import strategies as st

from gateway.ble.bumble_backend.advertising import (
    AdvertisedFields,
    parse_ad_structures,
    uuid_from_le_bytes,
)

PMD_SERVICE = "fb005c80-02e7-f387-1cad-8acd2d8df0c8"  # Polar Measurement Data (Polar BLE SDK)

# Assembled by hand from the Core Specification Supplement v11, Part A: each AD structure
# is length, AD type (Assigned Numbers 2.3), data; multi-octet fields little-endian.
GOLDEN = bytes.fromhex(
    "020106"  # 1.3 Flags: LE General Discoverable, BR/EDR not supported
    "03030d18"  # 1.1 Complete List of 16-bit Service UUIDs: 0x180D Heart Rate
    "050578563412"  # 1.1 Complete List of 32-bit Service UUIDs: 0x12345678
    "1107c8f08d2dcd8aad1c87f3e702805c00fb"  # 1.1 Complete List of 128-bit UUIDs: PMD
    "0a09506f6c617220483130"  # 1.2 Complete Local Name: "Polar H10"
    "020af6"  # 1.5 TX Power Level: -10 dBm
    "04160f1864"  # 1.11 Service Data - 16-bit UUID: 0x180F Battery, 100
    "06ff6b00aabbcc"  # 1.4 Manufacturer Specific Data: company 0x006B (Polar), AA BB CC
)


def test_golden_advertisement() -> None:
    fields = parse_ad_structures(AdvertisingData.from_bytes(GOLDEN).ad_structures)
    assert fields == AdvertisedFields(
        local_name="Polar H10",
        service_uuids=(normalize_uuid_16(0x180D), normalize_uuid_32(0x12345678), PMD_SERVICE),
        service_data={normalize_uuid_16(0x180F): b"\x64"},
        manufacturer_data={0x006B: b"\xaa\xbb\xcc"},
        tx_power_dbm=-10,
    )


def test_advertisement_repeated_as_scan_response_counts_once() -> None:
    structures = AdvertisingData.from_bytes(GOLDEN + GOLDEN).ad_structures
    once = parse_ad_structures(AdvertisingData.from_bytes(GOLDEN).ad_structures)
    assert parse_ad_structures(structures) == once


def test_complete_name_wins_over_shortened() -> None:
    assert parse_ad_structures([(0x08, b"Pol")]).local_name == "Pol"
    assert parse_ad_structures([(0x08, b"Pol"), (0x09, b"Polar H10")]).local_name == "Polar H10"
    assert parse_ad_structures([(0x09, b"Polar H10"), (0x08, b"Pol")]).local_name == "Polar H10"


def test_malformed_structures_are_skipped_whole() -> None:
    fields = parse_ad_structures(
        [
            (0x03, b"\x0d\x18\x0f"),  # 16-bit list with a stray octet
            (0x07, bytes(10)),  # 128-bit list too short
            (0x0A, b"\x01\x02"),  # TX power is one octet
            (0x21, bytes(10)),  # 128-bit service data without a whole UUID
            (0xFF, b"\x6b"),  # manufacturer data without a whole company id
            (0x16, b"\x0f\x18"),  # service data with an empty payload is fine
        ]
    )
    assert fields == AdvertisedFields(
        local_name=None,
        service_uuids=(),
        service_data={normalize_uuid_16(0x180F): b""},
        manufacturer_data={},
        tx_power_dbm=None,
    )


def test_uuid_sizes() -> None:
    assert uuid_from_le_bytes(b"\x0d\x18") == "0000180d-0000-1000-8000-00805f9b34fb"
    assert uuid_from_le_bytes(bytes.fromhex("c8f08d2dcd8aad1c87f3e702805c00fb")) == PMD_SERVICE


_uuid128 = st.uuids().map(str)


@given(
    uuids16=st.lists(st.integers(0, 0xFFFF), max_size=4, unique=True),
    uuids128=st.lists(_uuid128, max_size=2, unique=True),
    name=st.none() | st.text(max_size=20),
    company=st.integers(0, 0xFFFF),
    payload=st.binary(max_size=20),
    tx=st.none() | st.integers(-128, 127),
)
def test_round_trip(
    uuids16: list[int],
    uuids128: list[str],
    name: str | None,
    company: int,
    payload: bytes,
    tx: int | None,
) -> None:
    structures: list[tuple[int, bytes]] = []
    if uuids16:
        structures.append((0x03, b"".join(u.to_bytes(2, "little") for u in uuids16)))
    if uuids128:
        structures.append((0x07, b"".join(uuid.UUID(u).bytes[::-1] for u in uuids128)))
    if name is not None:
        structures.append((0x09, name.encode()))
    structures.append((0xFF, company.to_bytes(2, "little") + payload))
    if tx is not None:
        structures.append((0x0A, tx.to_bytes(1, "little", signed=True)))

    fields = parse_ad_structures(structures)

    expected_uuids = [normalize_uuid_16(u) for u in uuids16] + uuids128
    assert fields.service_uuids == tuple(dict.fromkeys(expected_uuids))
    assert fields.local_name == name
    assert fields.manufacturer_data == {company: payload}
    assert fields.tx_power_dbm == tx


@given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=12))
def test_fuzz_any_structures_parse_without_error(structures: list[tuple[int, bytes]]) -> None:
    fields = parse_ad_structures(structures)
    assert all(str(uuid.UUID(u)) == u for u in fields.service_uuids)
    assert all(str(uuid.UUID(u)) == u for u in fields.service_data)
    assert all(0 <= company <= 0xFFFF for company in fields.manufacturer_data)
    assert fields.tx_power_dbm is None or -128 <= fields.tx_power_dbm <= 127


@given(st.binary(max_size=62))
def test_fuzz_raw_advertising_bytes(data: bytes) -> None:
    parse_ad_structures(AdvertisingData.from_bytes(data).ad_structures)
