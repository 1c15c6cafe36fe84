"""Advertising data structures -> the fields bleak's ``AdvertisementData`` carries.

Role: a pure function over the (AD type, bytes) pairs bumble has already split out of
an advertising report (advertisement and scan response concatenated), following the
Core Specification Supplement v11, Part A, section 1 and the Assigned Numbers 2.3
AD types. UUIDs come out as bleak's normalised lower-case 128-bit strings.

It must not: do I/O, log, or guess: a structure too short for its type is skipped
whole (advertisements come from any device in range); a repeated structure (bumble's
virtual controller repeats the advertisement as its scan response) counts once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from bleak.uuids import normalize_uuid_16, normalize_uuid_32

__all__ = ["AdvertisedFields", "parse_ad_structures", "uuid_from_le_bytes"]

_UUID16_LISTS = (0x02, 0x03)  # Incomplete / Complete List of 16-bit Service UUIDs
_UUID32_LISTS = (0x04, 0x05)  # ... 32-bit
_UUID128_LISTS = (0x06, 0x07)  # ... 128-bit
_SHORTENED_LOCAL_NAME = 0x08
_COMPLETE_LOCAL_NAME = 0x09
_TX_POWER_LEVEL = 0x0A
_SERVICE_DATA_16 = 0x16
_SERVICE_DATA_32 = 0x20
_SERVICE_DATA_128 = 0x21
_MANUFACTURER_SPECIFIC_DATA = 0xFF


@dataclass(frozen=True, slots=True)
class AdvertisedFields:
    """What one advertising event says about its sender."""

    local_name: str | None
    service_uuids: tuple[str, ...]
    service_data: dict[str, bytes]
    manufacturer_data: dict[int, bytes]
    tx_power_dbm: int | None


def parse_ad_structures(structures: Iterable[tuple[int, bytes]]) -> AdvertisedFields:
    """Collect the fields bleak reports from advertising data structures."""
    complete_name: str | None = None
    short_name: str | None = None
    uuids: dict[str, None] = {}  # an ordered set
    service_data: dict[str, bytes] = {}
    manufacturer_data: dict[int, bytes] = {}
    tx_power: int | None = None
    for ad_type, data in structures:
        if ad_type in _UUID16_LISTS:
            uuids.update(dict.fromkeys(_uuid_list(data, 2)))
        elif ad_type in _UUID32_LISTS:
            uuids.update(dict.fromkeys(_uuid_list(data, 4)))
        elif ad_type in _UUID128_LISTS:
            uuids.update(dict.fromkeys(_uuid_list(data, 16)))
        elif ad_type == _COMPLETE_LOCAL_NAME:
            complete_name = data.decode("utf-8", errors="replace")
        elif ad_type == _SHORTENED_LOCAL_NAME:
            short_name = data.decode("utf-8", errors="replace")
        elif ad_type == _TX_POWER_LEVEL and len(data) == 1:
            tx_power = int.from_bytes(data, "little", signed=True)
        elif ad_type in (_SERVICE_DATA_16, _SERVICE_DATA_32, _SERVICE_DATA_128):
            _add_service_data(service_data, ad_type, data)
        elif ad_type == _MANUFACTURER_SPECIFIC_DATA and len(data) >= 2:
            manufacturer_data[int.from_bytes(data[:2], "little")] = bytes(data[2:])
    return AdvertisedFields(
        local_name=complete_name if complete_name is not None else short_name,
        service_uuids=tuple(uuids),
        service_data=service_data,
        manufacturer_data=manufacturer_data,
        tx_power_dbm=tx_power,
    )


def uuid_from_le_bytes(data: bytes) -> str:
    """A 2-, 4- or 16-byte little-endian UUID as bleak's normalised string."""
    if len(data) == 2:
        return normalize_uuid_16(int.from_bytes(data, "little"))
    if len(data) == 4:
        return normalize_uuid_32(int.from_bytes(data, "little"))
    if len(data) == 16:
        return str(uuid.UUID(bytes=bytes(reversed(data))))
    raise ValueError(f"a UUID is 2, 4 or 16 bytes, not {len(data)}")


def _uuid_list(data: bytes, size: int) -> list[str]:
    if not data or len(data) % size:
        return []
    return [uuid_from_le_bytes(data[i : i + size]) for i in range(0, len(data), size)]


def _add_service_data(service_data: dict[str, bytes], ad_type: int, data: bytes) -> None:
    size = {_SERVICE_DATA_16: 2, _SERVICE_DATA_32: 4, _SERVICE_DATA_128: 16}[ad_type]
    if len(data) >= size:
        service_data[uuid_from_le_bytes(data[:size])] = bytes(data[size:])
