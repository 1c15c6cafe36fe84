"""Tests for devices.hts: Temperature Measurement, Date Time and IEEE-11073 FLOAT/SFLOAT."""

from __future__ import annotations

import calendar
import contextlib
import math
from datetime import datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.errors import FrameDecodeError, FrameEncodeError
from devices.frame import Quality, StreamKind, Timebase, Unit
from devices.hts import (
    Ieee11073Special,
    TemperatureMeasurement,
    TemperatureType,
    decode_date_time,
    decode_ieee11073_float,
    decode_ieee11073_sfloat,
    decode_temperature_measurement,
    decode_temperature_type,
    encode_date_time,
    encode_ieee11073_float,
    encode_ieee11073_sfloat,
    encode_temperature_measurement,
    ieee11073_float_special,
    ieee11073_sfloat_special,
    temperature_frame,
)

TM = TemperatureMeasurement
SP = Ieee11073Special


def fields(m: TemperatureMeasurement) -> tuple[object, ...]:
    """The measurement's fields with ``nan`` as ``None``, so specials compare equal."""
    celsius = None if math.isnan(m.celsius) else m.celsius
    return (celsius, m.fahrenheit_sent, m.timestamp, m.location, m.special)


# --- golden vectors -------------------------------------------------------------------
# "PHD" = Bluetooth SIG, Personal Health Devices Transcoding Whitepaper (examples quoted
# in the test suite of the TypeScript ble-gatt parsers citing §2.2.6 and §4.1).
GOLDEN = [
    ("006c0100ff", TM(36.4)),  # PHD §2.2.6: 364 * 10**-1 degC
    ("02720100ffda070c120f0000", TM(37.0, timestamp=datetime(2010, 12, 18, 15, 0, 0))),  # §4.1
    # Hand-made from the GATT Specification Supplement layout:
    ("01da0300ff", TM(37.0, fahrenheit_sent=True)),  # 98.6 degF = 37 degC exactly
    ("04720100ff02", TM(37.0, location=TemperatureType.BODY)),
    ("05d10300ff03", TM(36.5, True, None, TemperatureType.EAR)),  # 97.7 degF
    ("06000000000000000000000001", TM(0.0, False, None, TemperatureType.ARMPIT)),  # unknown date
    ("02e1ffffffe807021d173b1e", TM(-3.1, timestamp=datetime(2024, 2, 29, 23, 59, 30))),
    ("f8720100ff", TM(37.0)),  # reserved flag bits 3-7: ignored
    ("040e0e00fe09", TM(35.98, location=TemperatureType.TYMPANUM)),
]


@pytest.mark.parametrize(("hex_payload", "expected"), GOLDEN)
def test_golden_vectors(hex_payload: str, expected: TemperatureMeasurement) -> None:
    assert decode_temperature_measurement(bytes.fromhex(hex_payload)) == expected


@pytest.mark.parametrize(("hex_payload", "expected"), GOLDEN[:5])
def test_golden_vectors_encode(hex_payload: str, expected: TemperatureMeasurement) -> None:
    # All of these use exponent -1.
    assert encode_temperature_measurement(expected, exponent=-1) == bytes.fromhex(hex_payload)


def test_date_time_golden() -> None:
    # PHD §2.2.6 Date Time example: 2010-12-18 15:23:06.
    raw = bytes.fromhex("da070c120f1706")
    assert decode_date_time(raw) == datetime(2010, 12, 18, 15, 23, 6)
    assert encode_date_time(datetime(2010, 12, 18, 15, 23, 6)) == raw


# Special values (exponent 0) of IEEE 11073-20601 FLOAT-Type and SFLOAT-Type, as listed
# in the Bluetooth SIG PHD Transcoding Whitepaper: NaN 0x007FFFFF / 0x07FF, NRes
# 0x00800000 / 0x0800, +INFINITY 0x007FFFFE / 0x07FE, -INFINITY 0x00800002 / 0x0802,
# reserved 0x00800001 / 0x0801.
@pytest.mark.parametrize(
    ("raw", "expected", "special"),
    [
        (0xFF00016C, 36.4, None),
        (0x00000000, 0.0, None),
        (0xFFFFFFFF, -0.1, None),  # exponent -1, mantissa -1
        (0x02000005, 500.0, None),
        (0x80000001, 1e-128, None),
        (0x7F7FFFFD, 8388605e127, None),
        (0x007FFFFF, math.nan, SP.NAN),
        (0x00800000, math.nan, SP.NRES),
        (0x00800001, math.nan, SP.RESERVED),
        (0x007FFFFE, math.inf, SP.POSITIVE_INFINITY),
        (0x00800002, -math.inf, SP.NEGATIVE_INFINITY),
        (0x017FFFFF, 83886070.0, None),  # NaN's mantissa with another exponent is a number
        (0x017FFFFE, 83886060.0, None),  # so is +INFINITY's
    ],
)
def test_float_golden(raw: int, expected: float, special: Ieee11073Special | None) -> None:
    value = decode_ieee11073_float(raw)
    assert value == expected or (math.isnan(value) and math.isnan(expected))
    assert ieee11073_float_special(raw) is special


@pytest.mark.parametrize(
    ("raw", "expected", "special"),
    [
        (0x0072, 114.0, None),  # PHD §2.2.6 blood pressure example, SFLOAT 0x0072
        (0xF16C, 36.4, None),
        (0xFFFF, -0.1, None),
        (0x7001, 1e7, None),
        (0x8001, 1e-8, None),
        (0x07FF, math.nan, SP.NAN),
        (0x0800, math.nan, SP.NRES),
        (0x0801, math.nan, SP.RESERVED),
        (0x07FE, math.inf, SP.POSITIVE_INFINITY),
        (0x0802, -math.inf, SP.NEGATIVE_INFINITY),
        (0x17FF, 20470.0, None),  # exponent 1: a number
    ],
)
def test_sfloat_golden(raw: int, expected: float, special: Ieee11073Special | None) -> None:
    value = decode_ieee11073_sfloat(raw)
    assert value == expected or (math.isnan(value) and math.isnan(expected))
    assert ieee11073_sfloat_special(raw) is special


SPECIAL_PAYLOADS = [
    ("00ffff7f00", False, SP.NAN),
    ("0000008000", False, SP.NRES),
    ("0001008000", False, SP.RESERVED),
    ("00feff7f00", False, SP.POSITIVE_INFINITY),
    ("0002008000", False, SP.NEGATIVE_INFINITY),
    ("01feff7f00", True, SP.POSITIVE_INFINITY),  # a Fahrenheit special is the same special
    ("0102008000", True, SP.NEGATIVE_INFINITY),
    ("01ffff7f00", True, SP.NAN),
]


@pytest.mark.parametrize(("hex_payload", "fahrenheit", "special"), SPECIAL_PAYLOADS)
def test_special_values_decode_to_nan_with_their_kind(
    hex_payload: str, fahrenheit: bool, special: Ieee11073Special
) -> None:
    m = decode_temperature_measurement(bytes.fromhex(hex_payload))
    assert math.isnan(m.celsius)
    assert m.special is special
    assert m.fahrenheit_sent is fahrenheit


@pytest.mark.parametrize(("hex_payload", "fahrenheit", "special"), SPECIAL_PAYLOADS)
def test_special_values_encode(
    hex_payload: str, fahrenheit: bool, special: Ieee11073Special
) -> None:
    m = TM(math.nan, fahrenheit_sent=fahrenheit, special=special)
    assert encode_temperature_measurement(m) == bytes.fromhex(hex_payload)


def test_special_values_with_timestamp_and_type() -> None:
    payload = bytes.fromhex("06feff7f00da070c120f000002")
    m = decode_temperature_measurement(payload)
    assert fields(m) == (
        None,
        False,
        datetime(2010, 12, 18, 15, 0, 0),
        TemperatureType.BODY,
        SP.POSITIVE_INFINITY,
    )
    assert encode_temperature_measurement(m) == payload


def test_ordinary_values_have_no_special() -> None:
    assert decode_temperature_measurement(bytes.fromhex("006c0100ff")).special is None


@pytest.mark.parametrize(
    ("celsius", "special"),
    [
        (math.nan, None),
        (math.inf, None),
        (-math.inf, None),
        (37.0, SP.NAN),
        (math.inf, SP.POSITIVE_INFINITY),
    ],
)
def test_celsius_and_special_must_agree(celsius: float, special: Ieee11073Special | None) -> None:
    with pytest.raises(ValueError, match="special"):
        TM(celsius, special=special)


@pytest.mark.parametrize(
    ("hex_payload", "reason"),
    [
        ("", "short"),
        ("006c0100", "short"),
        ("026c0100ffda070c120f00", "short"),  # time stamp cut short
        ("046c0100ff", "short"),  # type announced, missing
        ("066c0100ffda070c120f0000", "short"),
        ("046c0100ff00", "reserved_temperature_type"),
        ("046c0100ff0a", "reserved_temperature_type"),
        ("006c0100ff00", "trailing_bytes"),
        ("026c0100ffda070c120f000000", "trailing_bytes"),
        ("026c0100ffda070d120f0000", "bad_timestamp"),  # month 13
        ("026c0100ffda07021e0f0000", "bad_timestamp"),  # 30 February
        ("026c0100ffda070c12180000", "bad_timestamp"),  # hour 24
        ("026c0100ffda070c120f3c00", "bad_timestamp"),  # minute 60
        ("026c0100ffe8030c120f0000", "bad_timestamp"),  # year 1000
    ],
)
def test_malformed_raise(hex_payload: str, reason: str) -> None:
    with pytest.raises(FrameDecodeError) as info:
        decode_temperature_measurement(bytes.fromhex(hex_payload))
    assert info.value.reason == reason


@pytest.mark.parametrize("raw", [-1, 1 << 32])
def test_float_raw_out_of_range(raw: int) -> None:
    with pytest.raises(FrameDecodeError):
        decode_ieee11073_float(raw)
    with pytest.raises(FrameDecodeError):
        decode_ieee11073_sfloat(raw if raw < 0 else 1 << 16)


def test_temperature_type_read() -> None:
    assert decode_temperature_type(b"\x06") is TemperatureType.MOUTH
    for bad in (b"", b"\x00", b"\x0a", b"\x01\x01"):
        with pytest.raises(FrameDecodeError):
            decode_temperature_type(bad)


# --- encoders -------------------------------------------------------------------------
def test_float_encoder_specials_and_limits() -> None:
    assert encode_ieee11073_float(math.nan, exponent=-2) == (0x007FFFFF).to_bytes(4, "little")
    assert encode_ieee11073_float(math.inf, exponent=-2) == (0x007FFFFE).to_bytes(4, "little")
    assert encode_ieee11073_float(-math.inf, exponent=5) == (0x00800002).to_bytes(4, "little")
    assert encode_ieee11073_sfloat(math.nan, exponent=0) == b"\xff\x07"
    assert encode_ieee11073_sfloat(-math.inf, exponent=0) == b"\x02\x08"
    assert encode_ieee11073_float(36.6, exponent=-2) == bytes.fromhex("4c0e00fe")
    assert encode_ieee11073_float(-0.125, exponent=-3) == bytes.fromhex("83fffffd")  # -125
    for value, exponent in [(8388606.0, 0), (1.0, 128), (1.0, -129)]:
        with pytest.raises(FrameEncodeError):
            encode_ieee11073_float(value, exponent=exponent)
    for value, exponent in [(2046.0, 0), (-2046.0, 0), (1.0, 8), (1.0, -9)]:
        with pytest.raises(FrameEncodeError):
            encode_ieee11073_sfloat(value, exponent=exponent)


def test_encode_rejects_bad_timestamps() -> None:
    for ts in [datetime(2020, 1, 1, 0, 0, 0, 500), datetime(1500, 1, 1)]:
        with pytest.raises(FrameEncodeError):
            encode_temperature_measurement(TM(37.0, timestamp=ts))


FLOAT_MANTISSA = st.integers(-8388605, 8388605)
SFLOAT_MANTISSA = st.integers(-2045, 2045)


@given(FLOAT_MANTISSA, st.integers(-128, 127))
def test_float_round_trip_exact(mantissa: int, exponent: int) -> None:
    raw = ((exponent & 0xFF) << 24) | (mantissa & 0xFFFFFF)
    value = decode_ieee11073_float(raw)
    assert value == float(mantissa * Fraction(10) ** exponent)
    assert encode_ieee11073_float(value, exponent=exponent) == raw.to_bytes(4, "little")


@given(SFLOAT_MANTISSA, st.integers(-8, 7))
def test_sfloat_round_trip_exact(mantissa: int, exponent: int) -> None:
    raw = ((exponent & 0xF) << 12) | (mantissa & 0xFFF)
    value = decode_ieee11073_sfloat(raw)
    assert value == float(mantissa * Fraction(10) ** exponent)
    assert encode_ieee11073_sfloat(value, exponent=exponent) == raw.to_bytes(2, "little")


@given(st.floats(-8e3, 8e3, allow_nan=False), st.integers(-1, 3))
def test_float_encoder_error_bounded(value: float, exponent_shift: int) -> None:
    exponent = -exponent_shift
    decoded = decode_ieee11073_float(
        int.from_bytes(encode_ieee11073_float(value, exponent=exponent), "little")
    )
    assert abs(decoded - value) <= 0.5 * 10.0**exponent * (1 + 1e-9)


timestamps = st.datetimes(min_value=datetime(1582, 1, 1), max_value=datetime(9999, 12, 31))


@st.composite
def measurements(draw: st.DrawFn) -> tuple[TemperatureMeasurement, int]:
    exponent = draw(st.integers(-4, 1))
    mantissa = draw(FLOAT_MANTISSA)
    fahrenheit = draw(st.booleans())
    exact = mantissa * Fraction(10) ** exponent  # the value on the wire, exactly
    celsius = float((exact - 32) * 5 / 9 if fahrenheit else exact)
    ts = draw(st.one_of(st.none(), timestamps.map(lambda t: t.replace(microsecond=0))))
    location = draw(st.one_of(st.none(), st.sampled_from(TemperatureType)))
    special = draw(st.one_of(st.none(), st.sampled_from(Ieee11073Special)))
    if special is not None:
        celsius = math.nan
    return TM(celsius, fahrenheit, ts, location, special), exponent


@given(measurements())
def test_measurement_round_trip(case: tuple[TemperatureMeasurement, int]) -> None:
    m, exponent = case
    decoded = decode_temperature_measurement(encode_temperature_measurement(m, exponent=exponent))
    assert fields(decoded) == fields(m)


@given(st.sampled_from(Ieee11073Special), st.booleans(), st.integers(-4, 1))
def test_special_round_trip(special: Ieee11073Special, fahrenheit: bool, exponent: int) -> None:
    m = TM(math.nan, fahrenheit, special=special)
    data = encode_temperature_measurement(m, exponent=exponent)
    # The exponent does not matter: a special is its own exponent-0 word.
    assert ieee11073_float_special(int.from_bytes(data[1:5], "little")) is special
    assert fields(decode_temperature_measurement(data)) == fields(m)


@given(timestamps.map(lambda t: t.replace(microsecond=0)))
def test_date_time_round_trip(ts: datetime) -> None:
    assert decode_date_time(encode_date_time(ts)) == ts


# --- fuzz -----------------------------------------------------------------------------
@given(st.binary(max_size=64))
def test_fuzz_measurement(data: bytes) -> None:
    with contextlib.suppress(FrameDecodeError):
        m = decode_temperature_measurement(data)
        assert m.fahrenheit_sent == bool(data[0] & 1)
        assert math.isfinite(m.celsius) is (m.special is None)


@given(st.binary(max_size=64))
def test_fuzz_date_time_and_type(data: bytes) -> None:
    with contextlib.suppress(FrameDecodeError):
        decode_date_time(data)
    with contextlib.suppress(FrameDecodeError):
        decode_temperature_type(data)


@given(st.integers())
def test_fuzz_floats(raw: int) -> None:
    with contextlib.suppress(FrameDecodeError):
        value = decode_ieee11073_float(raw)
        assert math.isfinite(value) is (ieee11073_float_special(raw) is None)
    with contextlib.suppress(FrameDecodeError):
        value = decode_ieee11073_sfloat(raw)
        assert math.isfinite(value) is (ieee11073_sfloat_special(raw) is None)


# --- frame ----------------------------------------------------------------------------
def test_frame_arrival_without_timestamp() -> None:
    frame = temperature_frame(TM(36.4), device_key="t", received_ns=123)
    assert frame.stream is StreamKind.TEMP
    assert frame.unit is Unit.CELSIUS
    assert frame.timebase is Timebase.ARRIVAL
    assert frame.time_ns == 123
    assert frame.samples.tolist() == [36.4]
    assert frame.offsets_ns is not None
    assert frame.offsets_ns.tolist() == [0]
    assert frame.quality is Quality.NONE


def test_frame_device_time_with_timestamp() -> None:
    ts = datetime(2010, 12, 18, 15, 0, 0)
    frame = temperature_frame(TM(37.0, timestamp=ts), device_key="t", received_ns=123)
    assert frame.timebase is Timebase.DEVICE
    assert frame.time_ns == calendar.timegm(ts.timetuple()) * 1_000_000_000
    old = temperature_frame(TM(37.0, timestamp=datetime(1582, 1, 1)), device_key="t", received_ns=0)
    assert (
        old.time_ns
        == -(datetime(1970, 1, 1) - datetime(1582, 1, 1)) // timedelta(microseconds=1) * 1000
    )


@pytest.mark.parametrize(
    ("special", "quality"),
    [
        (SP.NAN, Quality.DEVICE_ERROR),
        (SP.NRES, Quality.DEVICE_ERROR),
        (SP.RESERVED, Quality.DEVICE_ERROR),
        (SP.POSITIVE_INFINITY, Quality.SATURATED),
        (SP.NEGATIVE_INFINITY, Quality.SATURATED),
    ],
)
def test_frame_quality_for_specials(special: Ieee11073Special, quality: Quality) -> None:
    frame = temperature_frame(TM(math.nan, special=special), device_key="t", received_ns=0)
    assert frame.quality is quality
    assert math.isnan(frame.samples[0])  # never an infinity in a frame
