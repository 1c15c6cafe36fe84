"""Health Thermometer Service: Temperature Measurement (0x2A1C) and IEEE-11073 floats.

Decodes the Temperature Measurement characteristic (also the layout of Intermediate
Temperature, 0x2A1E) of the Bluetooth SIG Health Thermometer Service, the IEEE-11073-20601
32-bit FLOAT and 16-bit SFLOAT it and other health services use, and encodes them back for
the simulated garments. Wire format (little endian)::

    flags  uint8    bit0 value in Fahrenheit (else Celsius)
                    bit1 Time Stamp present, bit2 Temperature Type present
                    bit3-7 reserved for future use: ignored, as the spec requires
    value  FLOAT    8-bit signed exponent (base 10), 24-bit signed mantissa
    time   7 bytes  if bit1: year uint16, month, day, hours, minutes, seconds
    type   uint8    if bit2: ``TemperatureType``

Decisions (each tested):

- FLOAT special values (NaN, NRes, +INFINITY, -INFINITY, reserved): a measurement's
  ``celsius`` is ``nan`` for every one of them, as the HTS contract says, and its
  ``special`` field (``Ieee11073Special``) says which one it was, so "out of range
  high" is not lost. ``temperature_frame`` flags them: ``DEVICE_ERROR`` for NaN, NRes
  and reserved, ``SATURATED`` for ±INFINITY. The low-level number helpers
  ``decode_ieee11073_float``/``decode_ieee11073_sfloat`` stay IEEE-754 faithful
  (``nan`` for NaN/NRes/reserved, ``±inf`` for ±INFINITY), and
  ``ieee11073_float_special``/``ieee11073_sfloat_special`` classify a raw value.
- Date Time: year, month or day 0 means "not known" in the spec, so such a timestamp
  decodes to ``None``; any other out-of-range field or impossible date (31 April, hour
  24, year outside 1582-9999) raises ``FrameDecodeError``. The timestamp is the
  device's local wall-clock time with no zone, so it is a naive ``datetime``.
- A reserved Temperature Type (0 or 10-255) raises ``FrameDecodeError``; bytes after the
  last field the flags announce raise too.
- Fahrenheit readings are converted exactly, ``(F - 32) * 5 / 9`` on the decimal value,
  rounded once to the nearest float.

Pure: no I/O, no Bluetooth stack, no logging of payloads.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction

import numpy as np

from devices.errors import FrameDecodeError, FrameEncodeError
from devices.frame import Frame, Quality, StreamKind, Timebase, Unit
from devices.registry import uuid16

HEALTH_THERMOMETER_SERVICE_UUID = uuid16(0x1809)
TEMPERATURE_MEASUREMENT_UUID = uuid16(0x2A1C)
TEMPERATURE_TYPE_UUID = uuid16(0x2A1D)
INTERMEDIATE_TEMPERATURE_UUID = uuid16(0x2A1E)
MEASUREMENT_INTERVAL_UUID = uuid16(0x2A21)

_KIND = "hts.measurement"
_FLOAT_KIND = "ieee11073.float"
_SFLOAT_KIND = "ieee11073.sfloat"

_FLAG_FAHRENHEIT = 0x01
_FLAG_TIMESTAMP = 0x02
_FLAG_TYPE = 0x04

# IEEE 11073-20601 special values (exponent 0), FLOAT and SFLOAT.
FLOAT_NAN = 0x007FFFFF
FLOAT_NRES = 0x00800000
FLOAT_POS_INF = 0x007FFFFE
FLOAT_NEG_INF = 0x00800002
FLOAT_RESERVED = 0x00800001
SFLOAT_NAN = 0x07FF
SFLOAT_NRES = 0x0800
SFLOAT_POS_INF = 0x07FE
SFLOAT_NEG_INF = 0x0802
SFLOAT_RESERVED = 0x0801


class Ieee11073Special(enum.StrEnum):
    """The special values of IEEE 11073-20601 FLOAT and SFLOAT (exponent 0 words)."""

    NAN = "nan"  # not a number
    NRES = "nres"  # not at this resolution
    POSITIVE_INFINITY = "positive_infinity"
    NEGATIVE_INFINITY = "negative_infinity"
    RESERVED = "reserved"  # reserved for future use


_S = Ieee11073Special
_FLOAT_SPECIAL_RAW: dict[Ieee11073Special, int] = {
    _S.NAN: FLOAT_NAN,
    _S.NRES: FLOAT_NRES,
    _S.POSITIVE_INFINITY: FLOAT_POS_INF,
    _S.NEGATIVE_INFINITY: FLOAT_NEG_INF,
    _S.RESERVED: FLOAT_RESERVED,
}
_SFLOAT_SPECIAL_RAW: dict[Ieee11073Special, int] = {
    _S.NAN: SFLOAT_NAN,
    _S.NRES: SFLOAT_NRES,
    _S.POSITIVE_INFINITY: SFLOAT_POS_INF,
    _S.NEGATIVE_INFINITY: SFLOAT_NEG_INF,
    _S.RESERVED: SFLOAT_RESERVED,
}
_FLOAT_SPECIALS = {raw: special for special, raw in _FLOAT_SPECIAL_RAW.items()}
_SFLOAT_SPECIALS = {raw: special for special, raw in _SFLOAT_SPECIAL_RAW.items()}
# The IEEE-754 stand-in the low-level number helpers return for each special.
_SPECIAL_FLOATS = {
    _S.NAN: math.nan,
    _S.NRES: math.nan,
    _S.RESERVED: math.nan,
    _S.POSITIVE_INFINITY: math.inf,
    _S.NEGATIVE_INFINITY: -math.inf,
}
_SATURATING = frozenset({_S.POSITIVE_INFINITY, _S.NEGATIVE_INFINITY})
_EPOCH = datetime(1970, 1, 1)
_DATE_TIME_LEN = 7


class TemperatureType(enum.IntEnum):
    """Where the temperature was taken (GATT Specification Supplement, Temperature Type)."""

    ARMPIT = 1
    BODY = 2
    EAR = 3
    FINGER = 4
    GASTROINTESTINAL_TRACT = 5
    MOUTH = 6
    RECTUM = 7
    TOE = 8
    TYMPANUM = 9


@dataclass(frozen=True, slots=True)
class TemperatureMeasurement:
    """One decoded Temperature Measurement.

    ``celsius`` is ``nan`` for every FLOAT special value and finite otherwise;
    ``special`` says which special value was sent (``None`` for an ordinary value).
    Construction enforces that pairing (``ValueError`` otherwise), so an encoded
    measurement decodes back to itself. ``fahrenheit_sent`` records the unit on the
    wire. ``timestamp`` is the device's naive local time, ``None`` when absent or "not
    known". ``location`` is ``None`` when the Temperature Type field is absent.
    """

    celsius: float
    fahrenheit_sent: bool = False
    timestamp: datetime | None = None
    location: TemperatureType | None = None
    special: Ieee11073Special | None = None

    def __post_init__(self) -> None:
        if self.special is None and not math.isfinite(self.celsius):
            raise ValueError("a non-finite celsius needs its Ieee11073Special in special")
        if self.special is not None and not math.isnan(self.celsius):
            raise ValueError("celsius must be nan when special is set")


def _signed(raw: int, bits: int) -> int:
    return raw - (1 << bits) if raw & (1 << (bits - 1)) else raw


def _exact_value(raw: int, *, exp_bits: int, mant_bits: int) -> Fraction:
    mantissa = _signed(raw & ((1 << mant_bits) - 1), mant_bits)
    exponent = _signed(raw >> mant_bits, exp_bits)
    return mantissa * Fraction(10) ** exponent


def _check_raw(raw: int, bits: int, kind: str) -> None:
    if not 0 <= raw < (1 << bits):
        raise FrameDecodeError(kind, "out_of_range", f"raw value needs {bits} bits")


def ieee11073_float_special(raw: int) -> Ieee11073Special | None:
    """Which special value a 32-bit FLOAT word is, ``None`` for an ordinary number.

    ``raw`` outside uint32 raises ``FrameDecodeError``.
    """
    _check_raw(raw, 32, _FLOAT_KIND)
    return _FLOAT_SPECIALS.get(raw)


def ieee11073_sfloat_special(raw: int) -> Ieee11073Special | None:
    """As ``ieee11073_float_special`` for a 16-bit SFLOAT word."""
    _check_raw(raw, 16, _SFLOAT_KIND)
    return _SFLOAT_SPECIALS.get(raw)


def decode_ieee11073_float(raw: int) -> float:
    """A 32-bit IEEE-11073 FLOAT (``raw`` as the little-endian uint32) as the nearest float.

    A low-level number helper: NaN/NRes/reserved give ``nan`` and ±INFINITY give
    ``±inf`` (use ``ieee11073_float_special`` to tell the specials apart); ``raw``
    outside uint32 raises ``FrameDecodeError``.
    """
    special = ieee11073_float_special(raw)
    if special is not None:
        return _SPECIAL_FLOATS[special]
    return float(_exact_value(raw, exp_bits=8, mant_bits=24))


def decode_ieee11073_sfloat(raw: int) -> float:
    """A 16-bit IEEE-11073 SFLOAT (4-bit exponent, 12-bit mantissa), specials as for FLOAT."""
    special = ieee11073_sfloat_special(raw)
    if special is not None:
        return _SPECIAL_FLOATS[special]
    return float(_exact_value(raw, exp_bits=4, mant_bits=12))


def _word(value: Fraction, exponent: int, *, exp_bits: int, mant_bits: int) -> int:
    kind = _FLOAT_KIND if mant_bits == 24 else _SFLOAT_KIND
    if not -(1 << (exp_bits - 1)) <= exponent < (1 << (exp_bits - 1)):
        raise FrameEncodeError(kind, "exponent_out_of_range")
    mantissa = round(value / Fraction(10) ** exponent)
    # The top two and bottom three mantissas are the specials at exponent 0: never used.
    limit = (1 << (mant_bits - 1)) - 3
    if not -limit <= mantissa <= limit:
        raise FrameEncodeError(kind, "mantissa_out_of_range")
    return ((exponent % (1 << exp_bits)) << mant_bits) | (mantissa % (1 << mant_bits))


def _special_word(value: float, *, mant_bits: int) -> int:
    table = _FLOAT_SPECIAL_RAW if mant_bits == 24 else _SFLOAT_SPECIAL_RAW
    if math.isnan(value):
        return table[_S.NAN]
    return table[_S.POSITIVE_INFINITY if value > 0 else _S.NEGATIVE_INFINITY]


def _encode_11073(value: float, exponent: int, *, exp_bits: int, mant_bits: int) -> int:
    if not math.isfinite(value):
        return _special_word(value, mant_bits=mant_bits)
    return _word(Fraction(value), exponent, exp_bits=exp_bits, mant_bits=mant_bits)


def encode_ieee11073_float(value: float, *, exponent: int) -> bytes:
    """``value`` as a little-endian FLOAT with the given base-10 exponent (-128..127).

    The mantissa is ``value / 10**exponent`` rounded half to even, exactly; a value that
    needs more than ±8388605 raises ``FrameEncodeError``. ``nan`` encodes as NaN and
    ``±inf`` as ±INFINITY. Values from ``decode_ieee11073_float`` with the same exponent
    round-trip exactly.
    """
    return _encode_11073(value, exponent, exp_bits=8, mant_bits=24).to_bytes(4, "little")


def encode_ieee11073_sfloat(value: float, *, exponent: int) -> bytes:
    """As ``encode_ieee11073_float`` for the 16-bit SFLOAT (exponent -8..7, ±2045)."""
    return _encode_11073(value, exponent, exp_bits=4, mant_bits=12).to_bytes(2, "little")


def decode_date_time(data: bytes) -> datetime | None:
    """The 7-byte Date Time field as a naive ``datetime``, ``None`` for "not known".

    Raises ``FrameDecodeError`` for a wrong length or an invalid date or time.
    """
    if len(data) != _DATE_TIME_LEN:
        raise FrameDecodeError("date_time", "bad_length", f"{len(data)} bytes, need 7")
    year = data[0] | (data[1] << 8)
    month, day, hours, minutes, seconds = data[2:7]
    if year == 0 or month == 0 or day == 0:
        return None
    if not 1582 <= year <= 9999:
        raise FrameDecodeError("date_time", "bad_timestamp", f"year {year}")
    try:
        return datetime(year, month, day, hours, minutes, seconds)
    except ValueError:
        raise FrameDecodeError("date_time", "bad_timestamp", "invalid date or time") from None


def encode_date_time(timestamp: datetime) -> bytes:
    """A naive ``datetime`` (1582-9999, whole seconds) as the 7-byte Date Time field."""
    if timestamp.tzinfo is not None or timestamp.microsecond or timestamp.year < 1582:
        raise FrameEncodeError("date_time", "unrepresentable_timestamp")
    t = timestamp
    return t.year.to_bytes(2, "little") + bytes([t.month, t.day, t.hour, t.minute, t.second])


def _celsius_from_raw(raw: int, fahrenheit: bool) -> tuple[float, Ieee11073Special | None]:
    special = _FLOAT_SPECIALS.get(raw)
    if special is not None:
        return math.nan, special
    value = _exact_value(raw, exp_bits=8, mant_bits=24)
    return float((value - 32) * 5 / 9 if fahrenheit else value), None


def _temperature_type(value: int, kind: str) -> TemperatureType:
    try:
        return TemperatureType(value)
    except ValueError:
        raise FrameDecodeError(kind, "reserved_temperature_type", str(value)) from None


def decode_temperature_type(data: bytes) -> TemperatureType:
    """Decode a Temperature Type read (0x2A1D): one byte, a defined value."""
    if len(data) != 1:
        raise FrameDecodeError("hts.temperature_type", "bad_length", f"{len(data)} bytes")
    return _temperature_type(data[0], "hts.temperature_type")


def decode_temperature_measurement(data: bytes) -> TemperatureMeasurement:
    """Decode a 0x2A1C (or 0x2A1E) value; raises ``FrameDecodeError`` when malformed."""
    if len(data) < 5:
        raise FrameDecodeError(_KIND, "short", f"{len(data)} bytes, need at least 5")
    flags = data[0]
    fahrenheit = bool(flags & _FLAG_FAHRENHEIT)
    celsius, special = _celsius_from_raw(int.from_bytes(data[1:5], "little"), fahrenheit)
    offset = 5
    timestamp: datetime | None = None
    if flags & _FLAG_TIMESTAMP:
        if offset + _DATE_TIME_LEN > len(data):
            raise FrameDecodeError(_KIND, "short", "time stamp announced but missing")
        timestamp = decode_date_time(data[offset : offset + _DATE_TIME_LEN])
        offset += _DATE_TIME_LEN
    location: TemperatureType | None = None
    if flags & _FLAG_TYPE:
        if offset >= len(data):
            raise FrameDecodeError(_KIND, "short", "temperature type announced but missing")
        location = _temperature_type(data[offset], _KIND)
        offset += 1
    if offset != len(data):
        raise FrameDecodeError(_KIND, "trailing_bytes", f"{len(data) - offset} extra bytes")
    return TemperatureMeasurement(celsius, fahrenheit, timestamp, location, special)


def encode_temperature_measurement(m: TemperatureMeasurement, *, exponent: int = -2) -> bytes:
    """Encode ``m`` (for the simulator) with the value quantised to ``10**exponent``.

    When ``m.fahrenheit_sent`` the value goes out in Fahrenheit, ``C * 9 / 5 + 32``
    computed exactly then rounded to the exponent. A measurement decoded with the same
    exponent round-trips exactly (in Fahrenheit, as long as ``(|F| + 32) / 10**exponent``
    stays below about 1e15, i.e. any realistic exponent); other values come back
    quantised, so the decoded ``celsius`` may differ by up to half a step. A
    measurement with a ``special`` goes out as that special's FLOAT word (any of the
    five, the reserved one included, so the simulator can send it).
    ``timestamp=None`` omits the Time Stamp field.
    """
    flags = _FLAG_FAHRENHEIT if m.fahrenheit_sent else 0
    if m.special is not None:
        word = _FLOAT_SPECIAL_RAW[m.special]
    else:
        # Convert exactly and quantise once (no float in between: no double rounding).
        exact = Fraction(m.celsius) * 9 / 5 + 32 if m.fahrenheit_sent else Fraction(m.celsius)
        word = _word(exact, exponent, exp_bits=8, mant_bits=24)
    out = bytearray(word.to_bytes(4, "little"))
    if m.timestamp is not None:
        flags |= _FLAG_TIMESTAMP
        out += encode_date_time(m.timestamp)
    if m.location is not None:
        flags |= _FLAG_TYPE
        out.append(int(m.location))
    return bytes([flags]) + bytes(out)


def temperature_frame(m: TemperatureMeasurement, *, device_key: str, received_ns: int) -> Frame:
    """One ``StreamKind.TEMP`` sample in degrees Celsius.

    With a time stamp the frame is on ``Timebase.DEVICE``: ``time_ns`` is the device's
    naive local time counted as if it were UTC since 1970 (the device's epoch; the
    gateway's clock model maps it, absorbing the unknown time zone). This keeps stored
    measurements, which thermometers send late, at the time they were taken. Without a
    time stamp the frame is on ``Timebase.ARRIVAL`` at ``received_ns``. A special value
    is a ``nan`` sample, flagged from ``m.special``: ``Quality.SATURATED`` for
    ±INFINITY (out of the sensor's range), ``Quality.DEVICE_ERROR`` for NaN, NRes and
    reserved.
    """
    if m.timestamp is None:
        time_ns, timebase = received_ns, Timebase.ARRIVAL
    else:
        time_ns = (m.timestamp - _EPOCH) // timedelta(microseconds=1) * 1000
        timebase = Timebase.DEVICE
    quality = Quality.NONE
    if m.special in _SATURATING:
        quality = Quality.SATURATED
    elif m.special is not None:
        quality = Quality.DEVICE_ERROR
    return Frame(
        device_key=device_key,
        stream=StreamKind.TEMP,
        time_ns=time_ns,
        timebase=timebase,
        samples=np.array([m.celsius], dtype=np.float64),
        unit=Unit.CELSIUS,
        offsets_ns=np.zeros(1, dtype=np.int64),
        quality=quality,
    )
