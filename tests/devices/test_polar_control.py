"""Tests for devices.polar.control: PMD control-point requests, responses, settings, features.

Golden vectors: the Polar BLE SDK's unit tests (github.com/polarofficial/polar-ble-sdk,
.../src/test/java/com/polar/androidcommunications/api/ble/model/gatt/client/pmd/), bytes
quoted in the SDK's issue tracker, and H10 responses from the ``arctic`` Rust crate's tests
(github.com/Roughsketch/arctic, src/control.rs), each named where used.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.errors import FrameDecodeError, FrameEncodeError
from devices.polar import (
    PmdControlRequest,
    PmdControlResponse,
    PmdErrorCode,
    PmdMeasurementStopped,
    PmdMeasurementType,
    PmdOpCode,
    PmdSecurityStrategy,
    PmdSettings,
    PmdSettingType,
    decode_control_point_notification,
    decode_control_request,
    decode_control_response,
    decode_pmd_features,
    decode_settings,
    encode_control_response,
    encode_get_settings_request,
    encode_measurement_stopped,
    encode_pmd_features,
    encode_settings,
    encode_start_request,
    encode_stop_request,
    factor_bits,
)

S = PmdSettingType
M = PmdMeasurementType

# --- settings ---------------------------------------------------------------------------


def test_sdk_settings_with_range() -> None:
    # PmdSettingTest.kt testPmdSettingsWithRange
    data = bytes.fromhex("00 01 3400 01 01 1000 02 04 F500 F401 E803 D007 04 01 03")
    settings = decode_settings(data)
    assert dict(settings) == {
        S.SAMPLE_RATE: (52,),
        S.RESOLUTION: (16,),
        S.RANGE: (245, 500, 1000, 2000),
        S.CHANNELS: (3,),
    }
    assert S.FACTOR not in settings
    assert settings.factor is None
    assert encode_settings(settings) == data


def test_sdk_settings_with_range_milliunit() -> None:
    # PmdSettingTest.kt testPmdSettingWithRangeMilliUnit; the SDK reads FF FF FF FF as -1,
    # we read setting values as the unsigned fields they are.
    data = bytes.fromhex("03 02 FFFFFFFF FF000000 01 01 0E00")
    settings = decode_settings(data)
    assert settings[S.RANGE_MILLIUNIT] == (0xFFFFFFFF, 0xFF)
    assert settings[S.RESOLUTION] == (14,)


def test_sdk_selected_serialization_skips_factor() -> None:
    # PmdSettingTest.kt testPmdSelectedSerialization: FACTOR is never serialised.
    selected = PmdSettings.of(
        {
            S.SAMPLE_RATE: (0x7FFF,),
            S.RESOLUTION: (0,),
            S.RANGE: (15,),
            S.RANGE_MILLIUNIT: (2**31 - 1,),
            S.CHANNELS: (4,),
            S.FACTOR: (15,),
        }
    )
    request = decode_control_request(encode_start_request(M.ACC, selected))
    assert request.settings is not None
    assert len(request.settings) == 5
    assert S.FACTOR not in request.settings
    assert request.settings[S.RANGE_MILLIUNIT] == (2**31 - 1,)


def test_security_setting_as_pmd_secret_serialises_it() -> None:
    # PmdSecret.serializeToPmdSettings: 06 01 strategy key...
    key = tuple(range(16))
    settings = PmdSettings.of({S.SECURITY: (PmdSecurityStrategy.AES128, *key)})
    assert encode_settings(settings) == bytes((6, 1, 2, *key))
    assert decode_settings(encode_settings(settings)) == settings
    assert encode_settings(PmdSettings.of({S.SECURITY: (0,)})) == bytes.fromhex("060100")
    with pytest.raises(FrameEncodeError):
        PmdSettings.of({S.SECURITY: (PmdSecurityStrategy.AES256, 1, 2)})


def test_factor_setting() -> None:
    bits = factor_bits(2.44e-4)
    settings = decode_settings(bytes((5, 1)) + bits.to_bytes(4, "little"))
    assert settings.factor == pytest.approx(2.44e-4, rel=1e-7)
    # A start response with a single parameter byte carries no settings (SDK parser).
    response = PmdControlResponse(
        PmdOpCode.REQUEST_MEASUREMENT_START, 2, PmdErrorCode.SUCCESS, parameters=b"\x00"
    )
    assert response.settings() == PmdSettings()


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({S.SAMPLE_RATE: (0x10000,)}, "sample_rate_out_of_range"),
        ({S.CHANNELS: (256,)}, "channels_out_of_range"),
        ({S.RANGE: (-1,)}, "range_out_of_range"),
        ({S.RANGE: tuple(range(256))}, "too_many_values"),
    ],
)
def test_settings_reject_unrepresentable(
    values: dict[PmdSettingType, tuple[int, ...]], reason: str
) -> None:
    with pytest.raises(FrameEncodeError) as info:
        PmdSettings.of(values)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x07\x01\x00", "unknown_setting"),
        (b"\x00", "truncated"),
        (b"\x00\x02\x82\x00\x01", "truncated"),
        (b"\x00\x01\x82\x00\x00\x01\x82\x00", "duplicate_setting"),
        (b"\x06\x01\x09", "bad_security_strategy"),
    ],
)
def test_settings_decode_errors(data: bytes, reason: str) -> None:
    with pytest.raises(FrameDecodeError) as info:
        decode_settings(data)
    assert (info.value.kind, info.value.reason) == ("pmd.settings", reason)


setting_values = st.one_of(
    st.tuples(
        st.sampled_from([S.SAMPLE_RATE, S.RESOLUTION, S.RANGE]),
        st.lists(st.integers(0, 0xFFFF), max_size=6),
    ),
    st.tuples(
        st.sampled_from([S.RANGE_MILLIUNIT, S.FACTOR]),
        st.lists(st.integers(0, 0xFFFFFFFF), max_size=4),
    ),
    st.tuples(st.just(S.CHANNELS), st.lists(st.integers(0, 0xFF), max_size=4)),
)
settings_strategy = st.lists(setting_values, unique_by=lambda kv: kv[0]).map(
    lambda kvs: PmdSettings.of({k: tuple(v) for k, v in kvs})
)


@given(settings=settings_strategy)
def test_settings_roundtrip(settings: PmdSettings) -> None:
    assert decode_settings(encode_settings(settings)) == settings


# --- requests ---------------------------------------------------------------------------


def test_start_request_matches_the_sdk_byte_order() -> None:
    # polar-ble-sdk issues #331/#443: the ACC start the PMD specification shows
    # (52 Hz, 16 bit, range 8 G, 3 channels).
    expected = bytes.fromhex("02 02 00 01 34 00 01 01 10 00 02 01 08 00 04 01 03")
    settings = PmdSettings.of(
        {S.CHANNELS: (3,), S.RANGE: (8,), S.RESOLUTION: (16,), S.SAMPLE_RATE: (52,)}
    )
    assert encode_start_request("acc", settings) == expected
    request = decode_control_request(expected)
    assert request.op_code is PmdOpCode.REQUEST_MEASUREMENT_START
    assert request.measurement is M.ACC
    assert request.settings == settings
    assert not request.offline


def test_decode_start_request_in_any_setting_order() -> None:
    # polar-ble-sdk issue #360: an H10 ACC start written with the range first.
    request = decode_control_request(bytes.fromhex("02 02 02 01 08 00 00 01 c8 00 01 01 10 00"))
    assert request.settings == PmdSettings.of(
        {S.SAMPLE_RATE: (200,), S.RESOLUTION: (16,), S.RANGE: (8,)}
    )


def test_simple_requests() -> None:
    assert encode_get_settings_request(M.ECG) == b"\x01\x00"
    assert encode_get_settings_request(M.ACC, offline=True) == b"\x01\x82"
    assert encode_stop_request("ecg") == b"\x03\x00"
    assert (
        encode_start_request(M.SDK_MODE, PmdSettings()) == b"\x02\x09"
    )  # BlePMDClient.startSDKMode
    stop = decode_control_request(b"\x03\x02")
    assert stop == PmdControlRequest(PmdOpCode.STOP_MEASUREMENT, 2, False, None, b"\x02")
    offline = decode_control_request(b"\x01\x82")
    assert (offline.measurement, offline.offline) == (M.ACC, True)
    assert decode_control_request(b"\x05").op_code is PmdOpCode.GET_MEASUREMENT_STATUS


def test_unknown_measurement_id_is_kept_for_an_invalid_measurement_reply() -> None:
    request = decode_control_request(b"\x02\x04")
    assert request.measurement_id == 4
    assert request.measurement is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "short"),
        (b"\x0a\x00", "unknown_op_code"),
        (b"\x02", "short"),
        (b"\x01\x00\x00", "bad_length"),
        (b"\x05\x00", "bad_length"),
        (b"\x08", "bad_length"),
        (b"\x09\x01\x02\x05\x00\x01\x82\x00", "bad_length"),
    ],
)
def test_request_decode_errors(data: bytes, reason: str) -> None:
    with pytest.raises(FrameDecodeError) as info:
        decode_control_request(data)
    assert (info.value.kind, info.value.reason) == ("pmd.control", reason)


def test_offline_trigger_settings_request() -> None:
    # BlePMDClient.setOfflineRecordingTriggerSetting: status, type, length, settings.
    data = bytes.fromhex("09 01 00 04 00 01 82 00")
    request = decode_control_request(data)
    assert request.measurement is M.ECG
    assert request.settings == PmdSettings.of({S.SAMPLE_RATE: (130,)})


@given(
    measurement=st.sampled_from(list(PmdMeasurementType)),
    settings=settings_strategy.filter(lambda s: all(len(v) == 1 for v in s.values())),
    offline=st.booleans(),
)
def test_start_request_roundtrip(
    measurement: PmdMeasurementType, settings: PmdSettings, offline: bool
) -> None:
    request = decode_control_request(encode_start_request(measurement, settings, offline=offline))
    sent: dict[PmdSettingType, tuple[int, ...]] = {
        k: v for k, v in settings.items() if k is not S.FACTOR
    }
    assert request.measurement is measurement
    assert request.offline is offline
    assert request.settings == PmdSettings.of(sent)


def test_start_request_needs_one_value_per_setting() -> None:
    with pytest.raises(FrameEncodeError):
        encode_start_request(M.ECG, PmdSettings.of({S.SAMPLE_RATE: (130, 260)}))


# --- responses --------------------------------------------------------------------------


def test_sdk_success_response() -> None:
    # BlePmdClientControlPointResponseTest.kt "success control point response for acc ..."
    response = decode_control_response(bytes.fromhex("F0 01 02 00 00 FF FF FF"))
    assert response.op_code is PmdOpCode.GET_MEASUREMENT_SETTINGS
    assert response.measurement is M.ACC
    assert response.error is PmdErrorCode.SUCCESS
    assert response.ok
    assert not response.more
    assert response.parameters == b"\xff\xff\xff"


def test_sdk_failing_response() -> None:
    # BlePmdClientControlPointResponseTest.kt "failing control point response for mag ..."
    response = decode_control_response(bytes.fromhex("F0 01 06 07 00"))
    assert response.measurement is M.MAG
    assert response.error is PmdErrorCode.INVALID_RESOLUTION
    assert not response.ok
    assert response.parameters == b""


def test_h10_get_settings_responses() -> None:
    # arctic src/control.rs settings_ecg / settings_acc (Polar H10; the SDK maintainers
    # confirm an H10 always offers ECG 130 Hz / 14 bit: polar-ble-sdk issue #253).
    ecg = decode_control_response(bytes.fromhex("f0 01 00 00 00 00 01 82 00 01 01 0e 00"))
    assert dict(ecg.settings()) == {S.SAMPLE_RATE: (130,), S.RESOLUTION: (14,)}
    acc = decode_control_response(
        bytes.fromhex(
            "f0 01 02 00 00 00 04 19 00 32 00 64 00 C8 00 01 01 10 00 02 03 02 00 04 00 08 00"
        )
    )
    assert dict(acc.settings()) == {
        S.SAMPLE_RATE: (25, 50, 100, 200),
        S.RESOLUTION: (16,),
        S.RANGE: (2, 4, 8),
    }
    again = encode_control_response(
        PmdOpCode.GET_MEASUREMENT_SETTINGS, M.ACC, parameters=encode_settings(acc.settings())
    )
    assert decode_control_response(again) == acc


def test_encode_error_response() -> None:
    data = encode_control_response(
        PmdOpCode.REQUEST_MEASUREMENT_START, M.ECG, PmdErrorCode.ALREADY_IN_STATE
    )
    assert data == bytes.fromhex("F0 02 00 06 00")
    with pytest.raises(FrameEncodeError):
        encode_control_response(
            PmdOpCode.REQUEST_MEASUREMENT_START,
            M.ECG,
            PmdErrorCode.NOT_SUPPORTED,
            parameters=b"\x00",
        )


def test_h10_error_response() -> None:
    # A real H10 via gatttool (github.com/phdiethelm/h10_ecg, exploration/gatttool.md,
    # "Trying to start Measurement"): write ``02 00`` (start ECG without settings),
    # indication ``f0 02 00 05 00`` = INVALID_PARAMETER with the "more" byte 0.
    captured = bytes.fromhex("f0 02 00 05 00")
    start, invalid = PmdOpCode.REQUEST_MEASUREMENT_START, PmdErrorCode.INVALID_PARAMETER
    expected = PmdControlResponse(start, 0, invalid)
    assert decode_control_response(captured) == expected
    # An error ending after the error code (SDK PmdControlPointResponse: "more" only
    # if there are more than 4 bytes) decodes the same.
    assert decode_control_response(captured[:4]) == expected
    assert encode_control_response(start, M.ECG, invalid) == captured


def test_error_responses_drop_trailing_bytes_like_the_sdk() -> None:
    response = decode_control_response(bytes.fromhex("F0 02 00 05 01 AA"))
    assert (response.more, response.parameters) == (False, b"")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "short"),
        (b"\xf0\x01\x00", "short"),
        (b"\x0f\x01\x00\x00", "not_a_response"),
        (b"\xf0\x0a\x00\x00", "unknown_op_code"),
        (b"\xf0\x01\x00\x0f", "unknown_error_code"),
    ],
)
def test_response_decode_errors(data: bytes, reason: str) -> None:
    with pytest.raises(FrameDecodeError) as info:
        decode_control_response(data)
    assert (info.value.kind, info.value.reason) == ("pmd.control", reason)


@given(
    op=st.sampled_from(list(PmdOpCode)),
    measurement=st.integers(0, 255),
    error=st.sampled_from(list(PmdErrorCode)),
    more=st.booleans(),
    parameters=st.binary(max_size=40),
)
def test_response_roundtrip(
    op: PmdOpCode, measurement: int, error: PmdErrorCode, more: bool, parameters: bytes
) -> None:
    if error is not PmdErrorCode.SUCCESS:
        more, parameters = False, b""
    data = encode_control_response(op, measurement, error, more=more, parameters=parameters)
    assert decode_control_response(data) == PmdControlResponse(
        op, measurement, error, more, parameters
    )


def test_sdk_measurement_stopped_notifications() -> None:
    # BlePmdClientTest.kt "process measurement stop control point command [no content]"
    assert decode_control_point_notification(b"\x01\x01\x02") == PmdMeasurementStopped((1, 2))
    assert decode_control_point_notification(b"\x01") == PmdMeasurementStopped(())
    assert encode_measurement_stopped([M.ECG, M.ACC]) == b"\x01\x00\x02"
    response = decode_control_point_notification(bytes.fromhex("F0 03 00 00 00"))
    assert isinstance(response, PmdControlResponse)


# --- features ---------------------------------------------------------------------------


def test_h10_feature_read() -> None:
    # polar-ble-sdk issue #360: an H10's control-point read, 0x05 = ECG | ACC.
    data = bytes.fromhex("0f 05 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00")
    assert decode_pmd_features(data) == frozenset({M.ECG, M.ACC})
    assert encode_pmd_features({M.ECG, M.ACC}) == data


def test_feature_bits_follow_the_sdk() -> None:
    # PmdMeasurementType.fromByteArray: byte 1 bits 0-7, byte 2 bits 1-6.
    assert decode_pmd_features(bytes((0x0F, 0xEF, 0x7E))) == frozenset(
        set(PmdMeasurementType) - {M.OFFLINE_TEMP}
    )
    with pytest.raises(FrameDecodeError, match="bad_code"):
        decode_pmd_features(b"\x00\x05\x00")
    with pytest.raises(FrameDecodeError, match="short"):
        decode_pmd_features(b"\x0f\x05")


@given(st.sets(st.sampled_from([m for m in PmdMeasurementType if m is not M.OFFLINE_TEMP])))
def test_features_roundtrip(measurements: set[PmdMeasurementType]) -> None:
    assert decode_pmd_features(encode_pmd_features(measurements)) == measurements


# --- fuzz -------------------------------------------------------------------------------


@given(st.binary(max_size=64))
def test_fuzz_control_decoders(data: bytes) -> None:
    decoders = (
        decode_control_request,
        decode_control_response,
        decode_control_point_notification,
        decode_settings,
        decode_pmd_features,
        lambda d: decode_control_response(d).settings() if d[:1] == b"\xf0" else None,
    )
    for decoder in decoders:
        with contextlib.suppress(FrameDecodeError):
            decoder(data)


@given(st.binary(max_size=64).map(lambda b: b"\x02" + b))
def test_fuzz_start_requests(data: bytes) -> None:
    with contextlib.suppress(FrameDecodeError):
        request = decode_control_request(data)
        assert request.settings is not None
