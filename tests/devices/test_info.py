"""Tests for devices.info: Battery Level and Device Information Service values."""

from __future__ import annotations

import contextlib
import struct

import pytest
from bumble.profiles.device_information_service import DeviceInformationService
from hypothesis import given
from hypothesis import strategies as st

from devices.errors import FrameDecodeError, FrameEncodeError
from devices.frame import StreamKind, Timebase, Unit
from devices.info import (
    BATTERY_LEVEL_UUID,
    BATTERY_SERVICE_UUID,
    DEVICE_INFORMATION_SERVICE_UUID,
    FIRMWARE_REVISION_UUID,
    HARDWARE_REVISION_UUID,
    MANUFACTURER_NAME_UUID,
    MODEL_NUMBER_UUID,
    PNP_ID_UUID,
    SERIAL_NUMBER_UUID,
    SOFTWARE_REVISION_UUID,
    SYSTEM_ID_UUID,
    DeviceInformation,
    PnpId,
    SystemId,
    VendorIdSource,
    battery_frame,
    decode_battery_level,
    decode_device_information,
    decode_pnp_id,
    decode_system_id,
    decode_utf8_string,
    encode_battery_level,
    encode_device_information,
    encode_pnp_id,
    encode_system_id,
    encode_utf8_string,
)
from devices.registry import uuid16


def test_assigned_numbers() -> None:
    # Bluetooth SIG Assigned Numbers: services and characteristics.
    expected = {
        BATTERY_SERVICE_UUID: 0x180F,
        BATTERY_LEVEL_UUID: 0x2A19,
        DEVICE_INFORMATION_SERVICE_UUID: 0x180A,
        MANUFACTURER_NAME_UUID: 0x2A29,
        MODEL_NUMBER_UUID: 0x2A24,
        SERIAL_NUMBER_UUID: 0x2A25,
        HARDWARE_REVISION_UUID: 0x2A27,
        FIRMWARE_REVISION_UUID: 0x2A26,
        SOFTWARE_REVISION_UUID: 0x2A28,
        SYSTEM_ID_UUID: 0x2A23,
        PNP_ID_UUID: 0x2A50,
    }
    for uuid, short in expected.items():
        assert uuid == uuid16(short)


# --- battery --------------------------------------------------------------------------
@pytest.mark.parametrize(("payload", "percent"), [(b"\x00", 0), (b"\x5a", 90), (b"\x64", 100)])
def test_battery_golden(payload: bytes, percent: int) -> None:
    # GATT Specification Supplement, Battery Level: uint8, percent, 0-100.
    assert decode_battery_level(payload) == percent
    assert encode_battery_level(percent) == payload
    assert payload == struct.pack("B", percent)  # bumble's BatteryService format 'B'


@pytest.mark.parametrize(
    ("payload", "reason"),
    [(b"", "bad_length"), (b"\x50\x00", "bad_length"), (b"\x65", "out_of_range")],
)
def test_battery_malformed(payload: bytes, reason: str) -> None:
    with pytest.raises(FrameDecodeError) as info:
        decode_battery_level(payload)
    assert info.value.reason == reason


@pytest.mark.parametrize("percent", [-1, 101])
def test_battery_encoder_range(percent: int) -> None:
    with pytest.raises(FrameEncodeError):
        encode_battery_level(percent)
    with pytest.raises(FrameDecodeError):
        battery_frame(percent, device_key="b", received_ns=0)


@given(st.integers(0, 100))
def test_battery_round_trip(percent: int) -> None:
    assert decode_battery_level(encode_battery_level(percent)) == percent


@given(st.binary(max_size=64))
def test_fuzz_battery(data: bytes) -> None:
    with contextlib.suppress(FrameDecodeError):
        assert 0 <= decode_battery_level(data) <= 100


def test_battery_frame() -> None:
    frame = battery_frame(87, device_key="b", received_ns=42)
    assert frame.stream is StreamKind.BATTERY
    assert frame.unit is Unit.PERCENT
    assert frame.timebase is Timebase.ARRIVAL
    assert frame.time_ns == 42
    assert frame.samples.tolist() == [87.0]
    assert frame.offsets_ns is not None
    assert frame.offsets_ns.tolist() == [0]


# --- strings --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("payload", "text"),
    [
        (b"Polar Electro Oy", "Polar Electro Oy"),
        (b"H10\x00\x00\x00\x00", "H10"),  # fixed-size NUL-padded buffer
        (b"\x00\x00", ""),
        (b"", ""),
        ("体温計 v1.2".encode(), "体温計 v1.2"),
    ],
)
def test_utf8_strings(payload: bytes, text: str) -> None:
    assert decode_utf8_string(payload, "dis.model_number") == text


@pytest.mark.parametrize(
    ("payload", "reason"),
    [(b"\xff\xfe", "bad_utf8"), (b"ab\xc3", "bad_utf8"), (b"H1\x000", "embedded_nul")],
)
def test_utf8_malformed(payload: bytes, reason: str) -> None:
    with pytest.raises(FrameDecodeError) as info:
        decode_utf8_string(payload, "dis.serial_number")
    assert (info.value.kind, info.value.reason) == ("dis.serial_number", reason)


@given(st.text().filter(lambda t: "\x00" not in t))
def test_utf8_round_trip(text: str) -> None:
    assert decode_utf8_string(encode_utf8_string(text), "k") == text


def test_utf8_encoder_rejects_nul() -> None:
    with pytest.raises(FrameEncodeError):
        encode_utf8_string("a\x00b")


# --- System ID and PnP ID -------------------------------------------------------------
def test_system_id_golden() -> None:
    # GATT Specification Supplement, System ID: Manufacturer Identifier (uint40) then
    # Organizationally Unique Identifier (uint24), little endian.
    payload = bytes.fromhex("0102030405060708")
    assert decode_system_id(payload) == SystemId(0x0504030201, 0x080706)
    assert encode_system_id(SystemId(0x0504030201, 0x080706)) == payload


@given(st.integers(0, (1 << 40) - 1), st.integers(0, (1 << 24) - 1))
def test_system_id_agrees_with_bumble(manufacturer: int, oui: int) -> None:
    packed = DeviceInformationService.pack_system_id(oui, manufacturer)  # type: ignore[no-untyped-call]
    assert encode_system_id(SystemId(manufacturer, oui)) == packed
    assert decode_system_id(packed) == SystemId(manufacturer, oui)
    unpacked = DeviceInformationService.unpack_system_id(packed)  # type: ignore[no-untyped-call]
    assert unpacked == (oui, manufacturer)


def test_pnp_id_golden() -> None:
    # GATT Specification Supplement, PnP ID: source uint8, vendor, product, version uint16.
    # Hand-made with Polar Electro Oy's Bluetooth SIG company identifier 0x006B.
    payload = bytes.fromhex("016b001d001001")
    expected = PnpId(VendorIdSource.BLUETOOTH_SIG, 0x006B, 0x001D, 0x0110)
    assert decode_pnp_id(payload) == expected
    assert encode_pnp_id(expected) == payload
    usb = decode_pnp_id(bytes.fromhex("025e04d00b0001"))  # hand-made USB-IF example
    assert usb == PnpId(VendorIdSource.USB_IF, 0x045E, 0x0BD0, 0x0100)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("016b001d0010", "bad_length"),
        ("016b001d00100100", "bad_length"),
        ("006b001d001001", "reserved_vendor_id_source"),
        ("036b001d001001", "reserved_vendor_id_source"),
    ],
)
def test_pnp_id_malformed(payload: str, reason: str) -> None:
    with pytest.raises(FrameDecodeError) as info:
        decode_pnp_id(bytes.fromhex(payload))
    assert info.value.reason == reason


@pytest.mark.parametrize("length", [0, 7, 9])
def test_system_id_bad_length(length: int) -> None:
    with pytest.raises(FrameDecodeError):
        decode_system_id(bytes(length))


def test_id_encoders_reject_out_of_range() -> None:
    for bad_system_id in (SystemId(1 << 40, 0), SystemId(0, 1 << 24), SystemId(-1, 0)):
        with pytest.raises(FrameEncodeError):
            encode_system_id(bad_system_id)
    with pytest.raises(FrameEncodeError):
        encode_pnp_id(PnpId(VendorIdSource.USB_IF, 0x10000, 0, 0))
    with pytest.raises(FrameEncodeError):
        encode_pnp_id(PnpId(3, 0, 0, 0))  # type: ignore[arg-type]  # a reserved source


pnp_ids = st.builds(
    PnpId,
    st.sampled_from(VendorIdSource),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
)


@given(pnp_ids)
def test_pnp_id_round_trip(pnp_id: PnpId) -> None:
    assert decode_pnp_id(encode_pnp_id(pnp_id)) == pnp_id


@given(st.binary(max_size=64))
def test_fuzz_dis_decoders(data: bytes) -> None:
    with contextlib.suppress(FrameDecodeError):
        decode_utf8_string(data, "fuzz")
    with contextlib.suppress(FrameDecodeError):
        decode_system_id(data)
    with contextlib.suppress(FrameDecodeError):
        decode_pnp_id(data)


# --- DeviceInformation ----------------------------------------------------------------
def test_device_information_from_reads() -> None:
    reads = {
        MANUFACTURER_NAME_UUID.upper(): b"Polar Electro Oy",
        MODEL_NUMBER_UUID: b"H10\x00",
        SERIAL_NUMBER_UUID: b"C7A1B2C3",
        FIRMWARE_REVISION_UUID: b"3.1.1",
        SYSTEM_ID_UUID: bytes.fromhex("0102030405060708"),
        PNP_ID_UUID: bytes.fromhex("016b001d001001"),
        uuid16(0x2A2A): b"\xff",  # IEEE regulatory list: not ours, ignored
    }
    info = decode_device_information(reads)
    assert info.manufacturer_name == "Polar Electro Oy"
    assert info.model_number == "H10"
    assert info.serial_number == "C7A1B2C3"
    assert info.firmware_revision == "3.1.1"
    assert info.hardware_revision is None
    assert info.software_revision is None
    assert info.system_id == SystemId(0x0504030201, 0x080706)
    assert info.pnp_id is not None
    assert info.pnp_id.vendor_id == 0x006B
    # Identifying fields stay out of repr (and so out of logs).
    assert "C7A1B2C3" not in repr(info)
    assert "SystemId" not in repr(info)


def test_device_information_bad_value_raises() -> None:
    with pytest.raises(FrameDecodeError) as info:
        decode_device_information({MODEL_NUMBER_UUID: b"\xff"})
    assert info.value.kind == "dis.model_number"


optional_text = st.one_of(st.none(), st.text().filter(lambda t: "\x00" not in t))
infos = st.builds(
    DeviceInformation,
    optional_text,
    optional_text,
    optional_text,
    optional_text,
    optional_text,
    optional_text,
    st.one_of(
        st.none(), st.builds(SystemId, st.integers(0, (1 << 40) - 1), st.integers(0, 0xFFFFFF))
    ),
    st.one_of(st.none(), pnp_ids),
)


@given(infos)
def test_device_information_round_trip(info: DeviceInformation) -> None:
    assert decode_device_information(encode_device_information(info)) == info
