"""Tests for devices.polar.profile: the Polar H10 profile and its per-connection decoder."""

from __future__ import annotations

import contextlib
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.errors import FrameDecodeError, ProfileError
from devices.frame import StreamKind, Timebase, Unit
from devices.hrs import (
    HEART_RATE_MEASUREMENT_UUID,
    HeartRateMeasurement,
    decode_heart_rate_measurement,
    encode_heart_rate_measurement,
    heart_rate_frames,
)
from devices.info import BATTERY_LEVEL_UUID
from devices.polar import (
    H10_ACC_SAMPLES_PER_FRAME,
    H10_ECG_SAMPLES_PER_FRAME,
    PMD_CONTROL_POINT_UUID,
    PMD_DATA_UUID,
    PMD_SERVICE_UUID,
    POLAR_H10_PROFILE,
    PmdErrorCode,
    PmdMeasurementType,
    PmdOpCode,
    PmdSettings,
    PmdSettingType,
    PolarH10Profile,
    encode_control_response,
    encode_measurement_stopped,
    encode_pmd_frame,
    encode_settings,
    factor_bits,
    parse_pmd_frame,
)
from devices.registry import Advertisement

T0 = 599_616_023_171_427_290  # an H10 ECG timestamp quoted in TimeSystemExplained.md


def ecg_frame(ts: int, n: int = H10_ECG_SAMPLES_PER_FRAME, start: int = 0) -> bytes:
    samples = np.arange(start, start + n)
    return encode_pmd_frame("ecg", frame_type=0, compressed=False, timestamp_ns=ts, samples=samples)


def acc_frame(ts: int, n: int = H10_ACC_SAMPLES_PER_FRAME) -> bytes:
    samples = np.tile([[-9, -1, 999]], (n, 1))
    return encode_pmd_frame("acc", frame_type=1, compressed=False, timestamp_ns=ts, samples=samples)


# --- profile as data --------------------------------------------------------------------


def test_name_and_subscriptions_in_order() -> None:
    assert POLAR_H10_PROFILE.name == "polar-h10"
    subs = POLAR_H10_PROFILE.subscriptions
    assert [s.characteristic for s in subs] == [
        PMD_CONTROL_POINT_UUID,
        PMD_DATA_UUID,
        HEART_RATE_MEASUREMENT_UUID,
        BATTERY_LEVEL_UUID,
    ]
    assert subs[1].streams == ("ecg", "accel")
    assert subs[3].streams == ("battery",)


def test_start_and_stop_commands_bytes() -> None:
    # The bytes the SDK writes for an H10 (polar-ble-sdk issue #360 shows the same fields).
    starts = POLAR_H10_PROFILE.start_commands
    assert [c.characteristic for c in starts] == [PMD_CONTROL_POINT_UUID] * 2
    assert all(c.with_response for c in starts)
    assert starts[0].data == bytes.fromhex("02 00 00 01 82 00 01 01 0E 00")
    assert starts[1].data == bytes.fromhex("02 02 00 01 C8 00 01 01 10 00 02 01 08 00")
    assert [c.data for c in POLAR_H10_PROFILE.stop_commands] == [b"\x03\x00", b"\x03\x02"]
    slow = PolarH10Profile(acc_rate_hz=25, acc_range_g=2)
    assert slow.start_commands[1].data == bytes.fromhex("02 02 00 01 19 00 01 01 10 00 02 01 02 00")


@pytest.mark.parametrize("kwargs", [{"ecg_rate_hz": 250}, {"acc_rate_hz": 52}, {"acc_range_g": 16}])
def test_rejects_settings_an_h10_does_not_offer(kwargs: dict[str, int]) -> None:
    with pytest.raises(ProfileError):
        PolarH10Profile(**kwargs)


@pytest.mark.parametrize(
    ("advertisement", "expected"),
    [
        (Advertisement("Polar H10 8C4CAD2C"), True),
        (Advertisement("Polar H9 1234ABCD"), False),
        (Advertisement(None), False),
        (Advertisement("Polar Sense", (PMD_SERVICE_UUID.upper(),)), True),
        (Advertisement("HRM", ("0000180d-0000-1000-8000-00805f9b34fb",)), False),
    ],
)
def test_matches(advertisement: Advertisement, expected: bool) -> None:
    assert POLAR_H10_PROFILE.matches(advertisement) is expected


# --- decoder ----------------------------------------------------------------------------


def test_ecg_frames_follow_the_previous_timestamp() -> None:
    decoder = POLAR_H10_PROFILE.new_decoder("h10-a")
    first_ts = T0
    (first,) = decoder.decode(PMD_DATA_UUID, ecg_frame(first_ts), received_ns=1)
    assert first.stream is StreamKind.ECG
    assert first.unit is Unit.MICROVOLT
    assert first.timebase is Timebase.DEVICE
    assert first.fs_hz == 130.0
    assert first.sequence is None
    assert first.samples.tolist() == list(range(73))
    # First frame: back from its timestamp at the nominal rate.
    assert first.time_ns == round(first_ts - Fraction(72 * 10**9, 130))
    second_ts = first_ts + 561_000_000  # the device's clock runs its own pace
    (second,) = decoder.decode(PMD_DATA_UUID.upper(), ecg_frame(second_ts), received_ns=2)
    expected = parse_pmd_frame(
        ecg_frame(second_ts), sample_rate_hz=130, previous_timestamp_ns=first_ts
    )
    assert second.time_ns == expected.sample_timestamps_ns[0]
    assert second.time_ns == round(first_ts + Fraction(561_000_000, 73))


def test_acc_frames_and_independent_previous_timestamps() -> None:
    decoder = PolarH10Profile(acc_rate_hz=100).new_decoder("h10-b")
    decoder.decode(PMD_DATA_UUID, ecg_frame(T0), 0)
    (acc,) = decoder.decode(PMD_DATA_UUID, acc_frame(T0 + 5_000_000), 0)
    assert acc.stream is StreamKind.ACCEL
    assert acc.unit is Unit.MILLI_G
    assert acc.channels == ("x", "y", "z")
    assert acc.samples.shape == (36, 3)
    assert acc.fs_hz == 100.0
    # The ECG timestamp is not the ACC stream's previous one: first ACC frame uses the rate.
    assert acc.time_ns == T0 + 5_000_000 - 10_000_000 * 35
    (acc2,) = decoder.decode(PMD_DATA_UUID, acc_frame(T0 + 365_000_000), 0)
    assert acc2.time_ns == T0 + 5_000_000 + 360_000_000 // 36


def test_start_response_factor_scales_compressed_acc() -> None:
    decoder = POLAR_H10_PROFILE.new_decoder("h10-c")
    factor = PmdSettings.of({PmdSettingType.FACTOR: (factor_bits(0.5),)})
    response = encode_control_response(
        PmdOpCode.REQUEST_MEASUREMENT_START,
        PmdMeasurementType.ACC,
        parameters=encode_settings(factor),
    )
    assert decoder.decode(PMD_CONTROL_POINT_UUID, response, 0) == ()
    data = encode_pmd_frame(
        "acc", frame_type=1, compressed=True, timestamp_ns=T0, samples=[[2, 4, 6]]
    )
    (acc,) = decoder.decode(PMD_DATA_UUID, data, 0)
    assert acc.samples.tolist() == [[1.0, 2.0, 3.0]]
    decoder.reset()  # factors are re-learnt from the next start response
    (acc,) = decoder.decode(PMD_DATA_UUID, data, 0)
    assert acc.samples.tolist() == [[2.0, 4.0, 6.0]]


def test_refused_start_raises_profile_error() -> None:
    decoder = POLAR_H10_PROFILE.new_decoder("h10-d")
    refused = encode_control_response(
        PmdOpCode.REQUEST_MEASUREMENT_START, PmdMeasurementType.ECG, PmdErrorCode.INVALID_STATE
    )
    with pytest.raises(ProfileError, match="INVALID_STATE"):
        decoder.decode(PMD_CONTROL_POINT_UUID, refused, 0)
    # A refused stop is not fatal; a successful start without parameters is silent.
    stop = encode_control_response(
        PmdOpCode.STOP_MEASUREMENT, PmdMeasurementType.ECG, PmdErrorCode.ALREADY_IN_STATE
    )
    assert decoder.decode(PMD_CONTROL_POINT_UUID, stop, 0) == ()
    ok = encode_control_response(PmdOpCode.REQUEST_MEASUREMENT_START, PmdMeasurementType.ECG)
    assert decoder.decode(PMD_CONTROL_POINT_UUID, ok, 0) == ()


def test_device_stopping_a_stream_raises_profile_error() -> None:
    decoder = POLAR_H10_PROFILE.new_decoder("h10-e")
    with pytest.raises(ProfileError, match="ecg"):
        decoder.decode(PMD_CONTROL_POINT_UUID, encode_measurement_stopped([0]), 0)
    assert decoder.decode(PMD_CONTROL_POINT_UUID, b"\x01", 0) == ()


def test_successful_stop_and_reset_forget_previous_timestamps() -> None:
    for forget in ("stop", "reset"):
        decoder = POLAR_H10_PROFILE.new_decoder("h10-f")
        decoder.decode(PMD_DATA_UUID, ecg_frame(T0), 0)
        if forget == "stop":
            stop = encode_control_response(PmdOpCode.STOP_MEASUREMENT, PmdMeasurementType.ECG)
            decoder.decode(PMD_CONTROL_POINT_UUID, stop, 0)
        else:
            decoder.reset()
        # Same timestamp again is fine once forgotten (else: non-monotonic).
        (frame,) = decoder.decode(PMD_DATA_UUID, ecg_frame(T0), 0)
        assert frame.time_ns == round(T0 - Fraction(72 * 10**9, 130))


def test_previous_timestamp_advances_even_when_the_payload_fails() -> None:
    decoder = POLAR_H10_PROFILE.new_decoder("h10-g")
    decoder.decode(PMD_DATA_UUID, ecg_frame(T0), 0)
    broken = ecg_frame(T0 + 561_000_000)[:-1]  # truncated sample
    with pytest.raises(FrameDecodeError, match="truncated"):
        decoder.decode(PMD_DATA_UUID, broken, 0)
    (frame,) = decoder.decode(PMD_DATA_UUID, ecg_frame(T0 + 1_122_000_000), 0)
    assert frame.time_ns == round(T0 + 561_000_000 + Fraction(561_000_000, 73))


def test_heart_rate_measurement_is_delegated() -> None:
    decoder = POLAR_H10_PROFILE.new_decoder("h10-h")
    data = encode_heart_rate_measurement(HeartRateMeasurement(72, (812.5,), sensor_contact=True))
    frames = decoder.decode(HEART_RATE_MEASUREMENT_UUID, data, received_ns=123)
    expected = heart_rate_frames(
        decode_heart_rate_measurement(data), device_key="h10-h", received_ns=123
    )
    assert [(f.stream, f.time_ns, f.samples.tolist()) for f in frames] == [
        (f.stream, f.time_ns, f.samples.tolist()) for f in expected
    ]


def test_battery_level_notification_is_a_battery_frame() -> None:
    # Battery Level 0x2A19 is one uint8 percentage (GATT Specification Supplement).
    decoder = POLAR_H10_PROFILE.new_decoder("h10-k")
    (frame,) = decoder.decode(BATTERY_LEVEL_UUID.upper(), b"\x64", received_ns=555)
    assert frame.device_key == "h10-k"
    assert frame.stream is StreamKind.BATTERY
    assert frame.unit is Unit.PERCENT
    assert frame.timebase is Timebase.ARRIVAL
    assert frame.time_ns == 555
    assert frame.samples.tolist() == [100.0]


@pytest.mark.parametrize("data", [b"", b"\x65", b"\xff", b"\x50\x00"])
def test_malformed_battery_level_is_a_decode_error(data: bytes) -> None:
    decoder = POLAR_H10_PROFILE.new_decoder("h10-l")
    with pytest.raises(FrameDecodeError):
        decoder.decode(BATTERY_LEVEL_UUID, data, 0)


def test_unexpected_inputs() -> None:
    decoder = POLAR_H10_PROFILE.new_decoder("h10-i")
    with pytest.raises(FrameDecodeError, match="unknown_characteristic"):
        decoder.decode("00002a38-0000-1000-8000-00805f9b34fb", b"\x01", 0)  # body location
    ppi = bytes((3,)) + bytes(9) + bytes(6)
    with pytest.raises(ProfileError, match="ppi"):
        decoder.decode(PMD_DATA_UUID, ppi, 0)
    with pytest.raises(FrameDecodeError, match="short"):
        decoder.decode(PMD_DATA_UUID, b"\x00\x01", 0)
    with pytest.raises(FrameDecodeError, match="not_a_response"):
        decoder.decode(PMD_CONTROL_POINT_UUID, b"\x0f\x05\x00\x00", 0)


def test_non_finite_factor_in_start_response_is_refused() -> None:
    decoder = POLAR_H10_PROFILE.new_decoder("h10-j")
    nan_factor = PmdSettings.of({PmdSettingType.FACTOR: (0x7FC00000,)})
    response = encode_control_response(
        PmdOpCode.REQUEST_MEASUREMENT_START,
        PmdMeasurementType.ACC,
        parameters=encode_settings(nan_factor),
    )
    with pytest.raises(FrameDecodeError, match="bad_factor"):
        decoder.decode(PMD_CONTROL_POINT_UUID, response, 0)


@given(
    characteristic=st.sampled_from(
        [PMD_DATA_UUID, PMD_CONTROL_POINT_UUID, HEART_RATE_MEASUREMENT_UUID, BATTERY_LEVEL_UUID]
    ),
    chunks=st.lists(st.binary(max_size=240), max_size=4),
)
def test_fuzz_decoder(characteristic: str, chunks: list[bytes]) -> None:
    decoder = POLAR_H10_PROFILE.new_decoder("h10-fuzz")
    for data in chunks:
        with contextlib.suppress(FrameDecodeError, ProfileError):
            decoder.decode(characteristic, data, 0)
