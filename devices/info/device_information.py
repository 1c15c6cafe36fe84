"""Device Information Service (0x180A): characteristic UUIDs, decoders and encoders.

Turns the values the gateway reads once per connection (strings, System ID, PnP ID) into
a frozen ``DeviceInformation``. Strings are UTF-8; trailing NULs (real devices send
fixed-size, NUL-padded buffers) are stripped, while invalid UTF-8 or a NUL followed by
more text raises ``FrameDecodeError`` (PostgreSQL text cannot hold NUL, and guessing
where the real string ends would make a value up).

The serial number and System ID identify one physical device (the System ID is often
derived from the Bluetooth address): they are excluded from ``repr`` and must never
reach the research path or a log line above DEBUG.
Pure: no I/O, no Bluetooth stack.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from devices.errors import FrameDecodeError, FrameEncodeError
from devices.registry import uuid16

DEVICE_INFORMATION_SERVICE_UUID = uuid16(0x180A)
MANUFACTURER_NAME_UUID = uuid16(0x2A29)
MODEL_NUMBER_UUID = uuid16(0x2A24)
SERIAL_NUMBER_UUID = uuid16(0x2A25)
HARDWARE_REVISION_UUID = uuid16(0x2A27)
FIRMWARE_REVISION_UUID = uuid16(0x2A26)
SOFTWARE_REVISION_UUID = uuid16(0x2A28)
SYSTEM_ID_UUID = uuid16(0x2A23)
PNP_ID_UUID = uuid16(0x2A50)

_STRING_FIELDS = {
    MANUFACTURER_NAME_UUID: "manufacturer_name",
    MODEL_NUMBER_UUID: "model_number",
    SERIAL_NUMBER_UUID: "serial_number",
    HARDWARE_REVISION_UUID: "hardware_revision",
    FIRMWARE_REVISION_UUID: "firmware_revision",
    SOFTWARE_REVISION_UUID: "software_revision",
}


class VendorIdSource(enum.IntEnum):
    """Who assigned a PnP ID's vendor id (0 and 3-255 are reserved)."""

    BLUETOOTH_SIG = 1
    USB_IF = 2


@dataclass(frozen=True, slots=True)
class SystemId:
    """System ID (0x2A23): a 40-bit manufacturer-defined identifier and a 24-bit OUI."""

    manufacturer_identifier: int
    organizationally_unique_identifier: int


@dataclass(frozen=True, slots=True)
class PnpId:
    """PnP ID (0x2A50). ``product_version`` is 0xJJMN: major JJ, minor M, sub-minor N."""

    vendor_id_source: VendorIdSource
    vendor_id: int
    product_id: int
    product_version: int


@dataclass(frozen=True, slots=True)
class DeviceInformation:
    """What a device says about itself; every field ``None`` when not read."""

    manufacturer_name: str | None = None
    model_number: str | None = None
    serial_number: str | None = field(default=None, repr=False)
    hardware_revision: str | None = None
    firmware_revision: str | None = None
    software_revision: str | None = None
    system_id: SystemId | None = field(default=None, repr=False)
    pnp_id: PnpId | None = None


def decode_utf8_string(data: bytes, kind: str) -> str:
    """A UTF-8 string characteristic, trailing NULs stripped (see the module docstring)."""
    text = bytes(data).rstrip(b"\x00")
    if b"\x00" in text:
        raise FrameDecodeError(kind, "embedded_nul", "NUL before the end of the string")
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameDecodeError(kind, "bad_utf8", f"invalid byte at {exc.start}") from None


def encode_utf8_string(text: str, kind: str = "dis.string") -> bytes:
    """``text`` as a UTF-8 characteristic value (no terminator), for the simulator."""
    if "\x00" in text:
        raise FrameEncodeError(kind, "embedded_nul")
    return text.encode("utf-8")


def decode_system_id(data: bytes) -> SystemId:
    """System ID: 8 bytes, little endian, manufacturer identifier (40 bits) then OUI."""
    if len(data) != 8:
        raise FrameDecodeError("dis.system_id", "bad_length", f"{len(data)} bytes, need 8")
    value = int.from_bytes(data, "little")
    return SystemId(value & ((1 << 40) - 1), value >> 40)


def encode_system_id(system_id: SystemId) -> bytes:
    manufacturer = system_id.manufacturer_identifier
    oui = system_id.organizationally_unique_identifier
    if not (0 <= manufacturer < 1 << 40 and 0 <= oui < 1 << 24):
        raise FrameEncodeError("dis.system_id", "out_of_range")
    return (manufacturer | oui << 40).to_bytes(8, "little")


def decode_pnp_id(data: bytes) -> PnpId:
    """PnP ID: 7 bytes, source uint8 then vendor, product and version as uint16 LE.

    A reserved vendor id source raises ``FrameDecodeError``: the vendor id would be a
    number in an unknown namespace.
    """
    kind = "dis.pnp_id"
    if len(data) != 7:
        raise FrameDecodeError(kind, "bad_length", f"{len(data)} bytes, need 7")
    try:
        source = VendorIdSource(data[0])
    except ValueError:
        raise FrameDecodeError(kind, "reserved_vendor_id_source", str(data[0])) from None
    vendor, product, version = (int.from_bytes(data[i : i + 2], "little") for i in (1, 3, 5))
    return PnpId(source, vendor, product, version)


def encode_pnp_id(pnp_id: PnpId) -> bytes:
    numbers = (pnp_id.vendor_id, pnp_id.product_id, pnp_id.product_version)
    if not all(0 <= n <= 0xFFFF for n in numbers):
        raise FrameEncodeError("dis.pnp_id", "out_of_range")
    if pnp_id.vendor_id_source not in tuple(VendorIdSource):
        raise FrameEncodeError("dis.pnp_id", "reserved_vendor_id_source")
    return bytes([pnp_id.vendor_id_source]) + b"".join(n.to_bytes(2, "little") for n in numbers)


def decode_device_information(values: Mapping[str, bytes]) -> DeviceInformation:
    """Build ``DeviceInformation`` from read values keyed by characteristic UUID.

    Keys are full 128-bit UUID strings (any case); characteristics not listed here are
    ignored, absent ones stay ``None``. Any malformed value raises ``FrameDecodeError``.
    """
    by_uuid = {uuid.lower(): data for uuid, data in values.items()}
    strings = {
        name: decode_utf8_string(by_uuid[uuid], f"dis.{name}")
        for uuid, name in _STRING_FIELDS.items()
        if uuid in by_uuid
    }
    system_id = by_uuid.get(SYSTEM_ID_UUID)
    pnp_id = by_uuid.get(PNP_ID_UUID)
    return DeviceInformation(
        **strings,
        system_id=None if system_id is None else decode_system_id(system_id),
        pnp_id=None if pnp_id is None else decode_pnp_id(pnp_id),
    )


def encode_device_information(info: DeviceInformation) -> dict[str, bytes]:
    """The characteristic values a simulated device serves for ``info`` (None omitted)."""
    out = {
        uuid: encode_utf8_string(text, f"dis.{name}")
        for uuid, name in _STRING_FIELDS.items()
        if (text := getattr(info, name)) is not None
    }
    if info.system_id is not None:
        out[SYSTEM_ID_UUID] = encode_system_id(info.system_id)
    if info.pnp_id is not None:
        out[PNP_ID_UUID] = encode_pnp_id(info.pnp_id)
    return out
