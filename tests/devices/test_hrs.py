"""Tests for devices.hrs: Heart Rate Measurement decoder/encoder, frames and the profile."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
from bumble.profiles.heart_rate_service import HeartRateService
from hypothesis import given
from hypothesis import strategies as st

from devices.errors import FrameDecodeError, FrameEncodeError
from devices.frame import Quality, StreamKind, Timebase, Unit
from devices.hrs import (
    BODY_SENSOR_LOCATION_UUID,
    HEART_RATE_MEASUREMENT_UUID,
    HEART_RATE_PROFILE,
    HEART_RATE_SERVICE_UUID,
    BodySensorLocation,
    HeartRateMeasurement,
    decode_body_sensor_location,
    decode_heart_rate_measurement,
    encode_heart_rate_measurement,
    heart_rate_frames,
    rr_ms_from_units,
    rr_units_from_ms,
)
from devices.registry import Advertisement, uuid16

HRM = HeartRateMeasurement

# --- golden vectors -------------------------------------------------------------------
GOLDEN = [
    # Polar H10 notifications captured with gatttool, quoted in the Stack Overflow question
    # "Reading Heart Rate Measurement (x2A37) values" (id 50477232).
    ("10482c03", HRM(72, (rr_ms_from_units(0x032C),))),
    ("10495e039603", HRM(73, (rr_ms_from_units(0x035E), rr_ms_from_units(0x0396)))),
    # Polar H7 notification [22, 77, 22, 3] from the Stack Overflow answer on reading BPM
    # from a Polar H7 (RR 790/1024 s = 0.77 s); flags 0x16 = contact supported + detected.
    ("164d1603", HRM(77, (771.484375,), sensor_contact=True)),
    # polarofficial/polar-ble-sdk, sources/iOS/.../BleHrClientTest.swift:
    ("00ff", HRM(255)),  # testHrFormatUint8
    ("007f", HRM(127)),
    ("018080", HRM(32896)),  # testHrFormatUint16
    ("017f7f", HRM(32639)),
    ("06ff", HRM(255, sensor_contact=True)),  # testSensorContactSupported
    ("04ff", HRM(255, sensor_contact=False)),
    ("0200", HRM(0)),  # testSensorContactNotSupported: status bit without support bit
    ("0000", HRM(0)),
    ("090000ffff", HRM(0, energy_expended_kj=65535)),  # testEnergyExpended
    ("08007f80", HRM(0, energy_expended_kj=32895)),
    ("1000ffff", HRM(0, (63999.0234375,))),  # testRRinterval: 65535/1024 s
    ("110000ffff7f80", HRM(0, (63999.0234375, rr_ms_from_units(32895)))),
    ("10000000", HRM(0, (0.0,))),
    # Hand-made from the GATT Specification Supplement layout: everything at once.
    (
        "1f4801e8030004cc01",
        HRM(328, (1000.0, 449.21875), sensor_contact=True, energy_expended_kj=1000),
    ),
    # Reserved flag bits 5-7 set: ignored (spec: receivers ignore RFU bits).
    ("f0482c03", HRM(72, (792.96875,))),
    # RR flag set but no RR in this second (Polar's client reports rrPresent, no RRs).
    ("1028", HRM(40)),
]


@pytest.mark.parametrize(("hex_payload", "expected"), GOLDEN)
def test_golden_vectors_decode(hex_payload: str, expected: HeartRateMeasurement) -> None:
    assert decode_heart_rate_measurement(bytes.fromhex(hex_payload)) == expected


def test_polar_rr_values_in_ms() -> None:
    m = decode_heart_rate_measurement(bytes.fromhex("10482c03"))
    assert m.rr_intervals_ms == (792.96875,)  # 812 * 1000 / 1024, exactly


@pytest.mark.parametrize(
    ("hex_payload", "expected", "kwargs"),
    [
        ("10482c03", HRM(72, (792.96875,)), {}),
        ("164d1603", HRM(77, (771.484375,), sensor_contact=True), {}),
        ("018080", HRM(32896), {"uint16": True}),
        ("1f4801e8030004cc01", GOLDEN[-3][1], {"uint16": True}),
    ],
)
def test_golden_vectors_encode(
    hex_payload: str, expected: HeartRateMeasurement, kwargs: dict[str, bool]
) -> None:
    assert encode_heart_rate_measurement(expected, **kwargs) == bytes.fromhex(hex_payload)


@pytest.mark.parametrize(
    ("hex_payload", "reason"),
    [
        ("", "short"),
        ("00", "short"),
        ("01", "short"),
        ("0148", "short"),  # 16-bit heart rate with one byte
        ("0848", "short"),  # energy announced, missing
        ("0848e8", "short"),  # energy half there
        ("19480100", "short"),  # 16-bit HR + energy, energy missing a byte
        ("10482c", "odd_rr_bytes"),  # dangling half RR
        ("10482c0396", "odd_rr_bytes"),
        ("00480000", "trailing_bytes"),  # bytes that no flag announces
        ("0848e80300", "trailing_bytes"),
    ],
)
def test_malformed_frames_raise(hex_payload: str, reason: str) -> None:
    with pytest.raises(FrameDecodeError) as info:
        decode_heart_rate_measurement(bytes.fromhex(hex_payload))
    assert info.value.kind == "hrs.measurement"
    assert info.value.reason == reason


# --- property tests -------------------------------------------------------------------
rr_units = st.integers(0, 0xFFFF)
rr_tuples = st.lists(rr_units.map(rr_ms_from_units), max_size=9).map(tuple)
contacts = st.sampled_from([None, True, False])
energies = st.one_of(st.none(), st.integers(0, 0xFFFF))


@st.composite
def measurements(draw: st.DrawFn) -> tuple[HeartRateMeasurement, bool]:
    uint16 = draw(st.booleans())
    hr = draw(st.integers(0, 0xFFFF if uint16 else 0xFF))
    m = HRM(hr, draw(rr_tuples), draw(contacts), draw(energies))
    return m, uint16


@given(measurements())
def test_encode_decode_round_trip(case: tuple[HeartRateMeasurement, bool]) -> None:
    m, uint16 = case
    assert decode_heart_rate_measurement(encode_heart_rate_measurement(m, uint16=uint16)) == m


@given(measurements())
def test_decoder_agrees_with_bumble(case: tuple[HeartRateMeasurement, bool]) -> None:
    """bumble's HeartRateService.HeartRateMeasurement.from_bytes as an independent oracle."""
    m, uint16 = case
    payload = encode_heart_rate_measurement(m, uint16=uint16)
    ours = decode_heart_rate_measurement(payload)
    theirs = HeartRateService.HeartRateMeasurement.from_bytes(payload)
    assert ours.heart_rate_bpm == theirs.heart_rate
    assert ours.sensor_contact == theirs.sensor_contact_detected
    assert ours.energy_expended_kj == theirs.energy_expended
    their_units = [round(s * 1024) for s in theirs.rr_intervals or ()]
    assert [rr_units_from_ms(x) for x in ours.rr_intervals_ms] == their_units


@given(st.binary(max_size=64))
def test_fuzz_decoder_raises_only_frame_decode_error(data: bytes) -> None:
    try:
        m = decode_heart_rate_measurement(data)
    except FrameDecodeError:
        return
    # Whatever decodes survives a re-encode in the same heart-rate format.
    again = encode_heart_rate_measurement(m, uint16=bool(data[0] & 0x01))
    assert decode_heart_rate_measurement(again) == m


@given(st.binary(max_size=64))
def test_fuzz_profile_decoder(data: bytes) -> None:
    decoder = HEART_RATE_PROFILE.new_decoder("fuzz")
    try:
        frames = decoder.decode(HEART_RATE_MEASUREMENT_UUID, data, 10**18)
    except FrameDecodeError:
        return
    assert frames[0].stream is StreamKind.HR


@given(rr_units)
def test_rr_units_ms_inverse(units: int) -> None:
    assert rr_units_from_ms(rr_ms_from_units(units)) == units
    assert rr_ms_from_units(units) == units * 1000 / 1024


@given(st.floats(0, 63999.5, allow_nan=False))
def test_rr_encoding_error_is_bounded(rr_ms: float) -> None:
    assert abs(rr_ms_from_units(rr_units_from_ms(rr_ms)) - rr_ms) <= 1000 / 1024 / 2


# --- encoder edge cases ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("m", "kwargs", "reason"),
    [
        (HRM(256), {}, "heart_rate_out_of_range"),
        (HRM(65536), {"uint16": True}, "heart_rate_out_of_range"),
        (HRM(-1), {}, "heart_rate_out_of_range"),
        (HRM(60, (-1.0,)), {}, "rr_out_of_range"),
        (HRM(60, (math.nan,)), {}, "rr_out_of_range"),
        (HRM(60, (math.inf,)), {}, "rr_out_of_range"),
        (HRM(60, (64000.0,)), {}, "rr_out_of_range"),
        (HRM(60, energy_expended_kj=65536), {}, "energy_out_of_range"),
        (HRM(60), {"contact_supported": True}, "contact_status_missing"),
    ],
)
def test_encoder_rejects_unrepresentable(
    m: HeartRateMeasurement, kwargs: dict[str, bool], reason: str
) -> None:
    with pytest.raises(FrameEncodeError) as info:
        encode_heart_rate_measurement(m, **kwargs)
    assert info.value.reason == reason


def test_encoder_contact_override_and_rounding() -> None:
    m = HRM(60, sensor_contact=True)
    assert encode_heart_rate_measurement(m, contact_supported=False) == b"\x00\x3c"
    assert encode_heart_rate_measurement(HRM(60, sensor_contact=False)) == b"\x04\x3c"
    # 800 ms is not a multiple of 1000/1024 ms: it goes out as 819 units (799.8046875 ms).
    sent = encode_heart_rate_measurement(HRM(60, (800.0,)))
    assert sent == b"\x10\x3c" + (819).to_bytes(2, "little")
    assert decode_heart_rate_measurement(sent).rr_intervals_ms == (799.8046875,)


# --- frames ---------------------------------------------------------------------------
RECEIVED_NS = 1_700_000_000_000_000_000


def test_hr_frame_only() -> None:
    (hr,) = heart_rate_frames(HRM(61), device_key="dev", received_ns=RECEIVED_NS)
    assert hr.stream is StreamKind.HR
    assert hr.unit is Unit.BPM
    assert hr.timebase is Timebase.ARRIVAL
    assert hr.time_ns == RECEIVED_NS
    assert hr.samples.tolist() == [61.0]
    assert hr.offsets_ns is not None
    assert hr.offsets_ns.tolist() == [0]
    assert hr.fs_hz is None
    assert hr.quality is Quality.NONE
    assert hr.device_key == "dev"


def test_rr_frame_timing_last_beat_at_arrival() -> None:
    m = HRM(80, (1000.0, 500.0, 250.0), sensor_contact=True, energy_expended_kj=12)
    hr, rr, energy = heart_rate_frames(m, device_key="dev", received_ns=RECEIVED_NS)
    assert rr.stream is StreamKind.RR
    assert rr.unit is Unit.MILLISECOND
    assert rr.samples.tolist() == [1000.0, 500.0, 250.0]
    assert rr.offsets_ns is not None
    assert rr.offsets_ns.tolist() == [0, 500_000_000, 750_000_000]
    assert rr.time_ns == RECEIVED_NS - 750_000_000
    assert rr.sample_times_ns()[-1] == RECEIVED_NS
    assert hr.quality == rr.quality == Quality.CONTACT_SUPPORTED
    assert energy.stream is StreamKind.ENERGY
    assert energy.unit is Unit.KILOJOULE
    assert energy.samples.tolist() == [12.0]
    assert energy.quality is Quality.NONE


def test_frame_quality_flags() -> None:
    no_contact = HRM(0, (rr_ms_from_units(900),), sensor_contact=False)
    hr, rr = heart_rate_frames(no_contact, device_key="d", received_ns=0)
    assert hr.quality == rr.quality == Quality.CONTACT_SUPPORTED | Quality.NO_CONTACT
    *_, energy = heart_rate_frames(
        HRM(60, energy_expended_kj=0xFFFF), device_key="d", received_ns=0
    )
    assert energy.quality is Quality.SATURATED


@pytest.mark.parametrize("bad_rr", [math.nan, math.inf, -1.0])
def test_frames_refuse_impossible_rr(bad_rr: float) -> None:
    with pytest.raises(FrameDecodeError):
        heart_rate_frames(HRM(60, (800.0, bad_rr)), device_key="d", received_ns=0)


@given(rr_tuples.filter(bool), st.integers(0, 2**62))
def test_rr_frame_properties(rr: tuple[float, ...], received_ns: int) -> None:
    frames = heart_rate_frames(HRM(60, rr), device_key="d", received_ns=received_ns)
    rr_frame = frames[1]
    times = rr_frame.sample_times_ns()
    assert int(times[-1]) == received_ns
    assert rr_frame.offsets_ns is not None
    assert rr_frame.offsets_ns[0] == 0
    gaps_ms = np.diff(times) / 1e6
    assert np.allclose(gaps_ms, np.array(rr[1:]), atol=1e-6)
    assert not rr_frame.samples.flags.writeable


# --- profile --------------------------------------------------------------------------
def test_profile_shape() -> None:
    p = HEART_RATE_PROFILE
    assert p.name == "hrs"
    assert HEART_RATE_SERVICE_UUID == uuid16(0x180D) == "0000180d-0000-1000-8000-00805f9b34fb"
    assert uuid16(0x2A37) == HEART_RATE_MEASUREMENT_UUID
    assert uuid16(0x2A38) == BODY_SENSOR_LOCATION_UUID
    assert [s.characteristic for s in p.subscriptions] == [HEART_RATE_MEASUREMENT_UUID]
    assert p.start_commands == ()
    assert p.stop_commands == ()


@pytest.mark.parametrize(
    ("uuids", "expected"),
    [
        ((uuid16(0x180D),), True),
        ((uuid16(0x180A), uuid16(0x180D).upper()), True),
        ((uuid16(0x1809),), False),
        ((), False),
    ],
)
def test_profile_matches(uuids: tuple[str, ...], expected: bool) -> None:
    assert HEART_RATE_PROFILE.matches(Advertisement("Polar H10 12345678", uuids)) is expected


def test_profile_decoder() -> None:
    decoder = HEART_RATE_PROFILE.new_decoder("aa")
    frames = decoder.decode(HEART_RATE_MEASUREMENT_UUID.upper(), bytes.fromhex("10482c03"), 5)
    assert [f.stream for f in frames] == [StreamKind.HR, StreamKind.RR]
    assert frames[1].samples.tolist() == [792.96875]
    assert all(f.device_key == "aa" for f in frames)
    decoder.reset()
    assert decoder.decode(HEART_RATE_MEASUREMENT_UUID, b"\x00\x3c", 5)[0].samples[0] == 60
    with pytest.raises(FrameDecodeError) as info:
        decoder.decode(BODY_SENSOR_LOCATION_UUID, b"\x01", 5)
    assert (info.value.kind, info.value.reason) == ("hrs", "unknown_characteristic")


def test_body_sensor_location() -> None:
    assert decode_body_sensor_location(b"\x01") is BodySensorLocation.CHEST
    for bad in (b"", b"\x07", b"\x01\x00"):
        with pytest.raises(FrameDecodeError):
            decode_body_sensor_location(bad)


@given(st.binary(max_size=64))
def test_fuzz_body_sensor_location(data: bytes) -> None:
    with contextlib.suppress(FrameDecodeError):
        assert decode_body_sensor_location(data) == data[0]
