"""Tests of the biogw garment Profile and its per-connection decoder.

Byte vectors are the worked examples of docs/garment-profile.md (our own open spec),
checked against the doc in test_garment_codec.py and test_garment_control.py.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.errors import FrameDecodeError, ProfileError
from devices.frame import Quality, StreamKind, Timebase, Unit
from devices.garment.codec import GarmentFrame, encode_data_frame
from devices.garment.control import (
    ControlResponse,
    GarmentStatus,
    encode_control_response,
    encode_status,
)
from devices.garment.profile import GARMENT_PROFILE, GarmentProfile, frame_quality
from devices.garment.spec import (
    CONTROL_POINT_UUID,
    DATA_CHARACTERISTIC_UUID,
    FEATURES_UUID,
    GARMENT_SERVICE_UUID,
    STATUS_UUID,
    STREAM_SPECS,
    ControlOpcode,
    FrameFlags,
    GarmentStream,
    ResultCode,
    StatusFlags,
)
from devices.info import BATTERY_LEVEL_UUID
from devices.registry import Advertisement, GattWrite, Profile, Subscription, uuid16

SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow],
)
S = GarmentStream
ECG_INT16 = bytes.fromhex(
    "01 01 01 09 03 04 2a 00 00 00 60 e3 16 00 00 00 00 00 78 00 dd ff 00 04 00 80"
)
ACCEL = bytes.fromhex(
    "01 04 01 05 08 02 e8 03 00 00 00 2d 31 01 00 00 00 00 0c 00 fb ff e8 03 00 80 00 00 d5 03"
)
ECG_INT24 = bytes.fromhex(
    "01 01 02 0a 05 03 04 03 02 01 00 60 d7 1d 14 00 00 00 ff ff ff 70 11 01 00 00 80"
)


def test_is_a_profile() -> None:
    profile: Profile = GARMENT_PROFILE
    assert profile.name == "biogw-garment"


def test_uuids_share_the_documented_base() -> None:
    uuids = [GARMENT_SERVICE_UUID, DATA_CHARACTERISTIC_UUID, CONTROL_POINT_UUID]
    uuids += [FEATURES_UUID, STATUS_UUID]
    assert uuids == [f"ef06{slot:04x}-7f18-4270-b023-f1f830254322" for slot in range(1, 6)]


def test_matches_advertised_service() -> None:
    assert GARMENT_PROFILE.matches(Advertisement("shirt", (GARMENT_SERVICE_UUID,)))
    upper = Advertisement(None, (uuid16(0x180F), GARMENT_SERVICE_UUID.upper()))
    assert GARMENT_PROFILE.matches(upper)
    assert not GARMENT_PROFILE.matches(Advertisement("Polar H10", (uuid16(0x180D),)))
    assert not GARMENT_PROFILE.matches(Advertisement("biogw garment"))


def test_subscriptions_control_point_first() -> None:
    assert GARMENT_PROFILE.subscriptions == (
        Subscription(CONTROL_POINT_UUID),
        Subscription(STATUS_UUID),
        Subscription(DATA_CHARACTERISTIC_UUID, streams=("ecg", "resp", "temp", "accel")),
        Subscription(BATTERY_LEVEL_UUID, streams=("battery",)),
    )


def test_default_start_and_stop_commands() -> None:
    start = GattWrite(CONTROL_POINT_UUID, bytes.fromhex("01 01 09 02 04 03 02 04 05"))
    assert GARMENT_PROFILE.start_commands == (start,)
    assert GARMENT_PROFILE.stop_commands == (GattWrite(CONTROL_POINT_UUID, b"\x02"),)
    assert all(w.with_response for w in GARMENT_PROFILE.start_commands)


def test_custom_rates() -> None:
    profile = GarmentProfile({S.GYRO: 100.0, S.ECG: 500.0})
    assert profile.start_commands[0].data == bytes.fromhex("01 01 0a 05 06")
    assert profile.subscriptions[2].streams == ("ecg", "gyro")
    assert dict(profile.rates_hz) == {S.ECG: 500.0, S.GYRO: 100.0}


@pytest.mark.parametrize(
    "rates",
    [{}, {S.ECG: 256.0}, {S.TEMP: 25.0}, {"ecg": 250.0}],
)
def test_bad_rates_raise_profile_error(rates: dict[GarmentStream, float]) -> None:
    with pytest.raises(ProfileError) as info:
        GarmentProfile(rates)
    assert info.value.profile == "biogw-garment"


def test_decodes_data_into_frames() -> None:
    decoder = GARMENT_PROFILE.new_decoder("dev-1")
    (frame,) = decoder.decode(DATA_CHARACTERISTIC_UUID, ECG_INT16, received_ns=123)
    assert frame.device_key == "dev-1"
    assert frame.stream is StreamKind.ECG
    assert frame.unit is Unit.MICROVOLT
    assert frame.timebase is Timebase.DEVICE
    assert frame.time_ns == 1_500_000_000
    assert frame.fs_hz == 250.0
    assert frame.sequence == 42
    assert frame.quality == Quality.CONTACT_SUPPORTED
    assert frame.channels == ()
    np.testing.assert_array_equal(frame.samples, [120.0, -35.0, 1024.0, -32768.0])
    assert frame.sample_times_ns().tolist()[-1] == 1_512_000_000

    (accel,) = decoder.decode(DATA_CHARACTERISTIC_UUID.upper(), ACCEL, received_ns=0)
    assert (accel.stream, accel.unit, accel.channels) == (
        StreamKind.ACCEL,
        Unit.MILLI_G,
        ("x", "y", "z"),
    )
    assert accel.samples.shape == (2, 3)
    assert accel.quality == Quality.SATURATED

    (lead_off,) = decoder.decode(DATA_CHARACTERISTIC_UUID, ECG_INT24, received_ns=0)
    assert lead_off.quality == Quality.CONTACT_SUPPORTED | Quality.NO_CONTACT | Quality.LEAD_OFF


@pytest.mark.parametrize("stream", list(GarmentStream))
def test_every_stream_maps_to_its_kind_and_unit(stream: GarmentStream) -> None:
    spec = STREAM_SPECS[stream]
    shape = (1, 3) if spec.channels else (1,)
    data = encode_data_frame(
        GarmentFrame(stream, 0, 0, spec.default_rate.hz, np.zeros(shape), FrameFlags.NONE)
    )
    (frame,) = GARMENT_PROFILE.new_decoder("d").decode(DATA_CHARACTERISTIC_UUID, data, 0)
    expected = {
        S.ECG: (StreamKind.ECG, Unit.MICROVOLT),
        S.RESP: (StreamKind.RESP, Unit.RESP_AU),
        S.TEMP: (StreamKind.TEMP, Unit.CELSIUS),
        S.ACCEL: (StreamKind.ACCEL, Unit.MILLI_G),
        S.GYRO: (StreamKind.GYRO, Unit.DEG_PER_S),
    }[stream]
    assert (frame.stream, frame.unit) == expected
    assert frame.quality == Quality.NONE


@SETTINGS
@given(st.integers(0, 0x1F))
def test_every_flag_bit_is_honoured(bits: int) -> None:
    flags = FrameFlags(bits)
    quality = frame_quality(flags)
    assert bool(quality & Quality.CONTACT_SUPPORTED) == bool(flags & FrameFlags.CONTACT_SUPPORTED)
    no_contact = flags & FrameFlags.CONTACT_SUPPORTED and not flags & FrameFlags.SKIN_CONTACT
    assert bool(quality & Quality.NO_CONTACT) == bool(no_contact)
    assert bool(quality & Quality.LEAD_OFF) == bool(flags & FrameFlags.LEAD_OFF)
    assert bool(quality & Quality.SATURATED) == bool(flags & FrameFlags.SATURATED)
    assert bool(quality & Quality.DEVICE_ERROR) == bool(flags & FrameFlags.SENSOR_FAULT)


def _ecg_with_sequence(sequence: int, stream: GarmentStream = S.ECG) -> bytes:
    spec = STREAM_SPECS[stream]
    shape = (1, 3) if spec.channels else (1,)
    frame = GarmentFrame(stream, sequence, 0, spec.default_rate.hz, np.zeros(shape))
    return encode_data_frame(frame)


def _sequences(decoder_input: list[tuple[int, GarmentStream]]) -> list[int | None]:
    decoder = GARMENT_PROFILE.new_decoder("d")
    out: list[int | None] = []
    for raw, stream in decoder_input:
        (frame,) = decoder.decode(DATA_CHARACTERISTIC_UUID, _ecg_with_sequence(raw, stream), 0)
        out.append(frame.sequence)
    return out


def test_sequence_unwraps_past_u32() -> None:
    raws = [0xFFFF_FFFE, 0xFFFF_FFFF, 0, 1, 5]
    expected = [0xFFFF_FFFE, 0xFFFF_FFFF, 1 << 32, (1 << 32) + 1, (1 << 32) + 5]
    assert _sequences([(r, S.ECG) for r in raws]) == expected


def test_sequence_is_per_stream_and_reanchors_on_restart() -> None:
    got = _sequences([(0xFFFF_FFFF, S.ECG), (3, S.ACCEL), (0, S.ECG), (2, S.ACCEL), (2, S.ECG)])
    assert got == [0xFFFF_FFFF, 3, 1 << 32, 2, (1 << 32) + 2]


def test_reset_forgets_sequences_and_status() -> None:
    decoder = GARMENT_PROFILE.new_decoder("d")
    decoder.decode(DATA_CHARACTERISTIC_UUID, _ecg_with_sequence(0xFFFF_FFFF), 0)
    decoder.decode(STATUS_UUID, encode_status(GarmentStatus(5)), 0)
    decoder.reset()
    assert decoder.status is None
    (frame,) = decoder.decode(DATA_CHARACTERISTIC_UUID, _ecg_with_sequence(0), 0)
    assert frame.sequence == 0


def test_status_yields_no_frame_but_is_kept() -> None:
    decoder = GARMENT_PROFILE.new_decoder("d")
    assert decoder.status is None
    status = GarmentStatus(60_000_000, StatusFlags.CONTACT_SUPPORTED, (S.ECG,), (S.ECG,))
    assert decoder.decode(STATUS_UUID, encode_status(status), 0) == ()
    assert decoder.status == status


def test_control_point_success_yields_nothing() -> None:
    decoder = GARMENT_PROFILE.new_decoder("d")
    ok = encode_control_response(ControlResponse(ControlOpcode.START, ResultCode.SUCCESS))
    assert decoder.decode(CONTROL_POINT_UUID, ok, 0) == ()


def test_control_point_failure_raises_profile_error() -> None:
    decoder = GARMENT_PROFILE.new_decoder("d")
    with pytest.raises(ProfileError) as info:
        decoder.decode(CONTROL_POINT_UUID, bytes.fromhex("80 01 04 05"), 0)
    assert info.value.profile == "biogw-garment"
    assert "START" in info.value.reason
    assert "UNSUPPORTED_STREAM" in info.value.reason
    with pytest.raises(ProfileError):
        decoder.decode(CONTROL_POINT_UUID, bytes.fromhex("80 7f 02 00"), 0)


def test_battery_level_notification_is_a_battery_frame() -> None:
    # Battery Level 0x2A19 is one uint8 percentage (GATT Specification Supplement).
    decoder = GARMENT_PROFILE.new_decoder("dev-1")
    (frame,) = decoder.decode(BATTERY_LEVEL_UUID.upper(), b"\x57", received_ns=987)
    assert frame.device_key == "dev-1"
    assert frame.stream is StreamKind.BATTERY
    assert frame.unit is Unit.PERCENT
    assert frame.timebase is Timebase.ARRIVAL
    assert frame.time_ns == 987
    assert frame.samples.tolist() == [87.0]
    assert decoder.decode(BATTERY_LEVEL_UUID, b"\x00", 0)[0].samples.tolist() == [0.0]


@pytest.mark.parametrize("data", [b"", b"\x65", b"\xff", b"\x50\x00"])
def test_malformed_battery_level_is_a_decode_error(data: bytes) -> None:
    decoder = GARMENT_PROFILE.new_decoder("d")
    with pytest.raises(FrameDecodeError):
        decoder.decode(BATTERY_LEVEL_UUID, data, 0)


def test_unknown_characteristic_is_a_decode_error() -> None:
    decoder = GARMENT_PROFILE.new_decoder("d")
    with pytest.raises(FrameDecodeError):
        decoder.decode(FEATURES_UUID, b"\x01", 0)


@SETTINGS
@given(
    st.sampled_from([DATA_CHARACTERISTIC_UUID, STATUS_UUID, BATTERY_LEVEL_UUID]),
    st.binary(max_size=300),
)
def test_fuzz_data_status_and_battery(characteristic: str, data: bytes) -> None:
    decoder = GARMENT_PROFILE.new_decoder("d")
    try:
        frames = decoder.decode(characteristic, data, 0)
    except FrameDecodeError:
        return
    assert len(frames) <= 1


@SETTINGS
@given(st.binary(max_size=300))
def test_fuzz_control_point(data: bytes) -> None:
    decoder = GARMENT_PROFILE.new_decoder("d")
    with contextlib.suppress(FrameDecodeError, ProfileError):
        assert decoder.decode(CONTROL_POINT_UUID, data, 0) == ()
