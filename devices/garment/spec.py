"""The biogw garment profile as constants: UUIDs, stream ids, encodings, rates, codes.

This module is the single source of the numbers in ``docs/garment-profile.md``; the
codec and control modules and the simulator read them from here. It holds values and
small lookups only: no encoding, no decoding, no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from devices.frame import StreamKind, Unit
from devices.registry import uuid16

PROTOCOL_VERSION: Final = 1
"""Version byte at the start of every data frame, features and status value."""

UUID_BASE: Final = "ef06xxxx-7f18-4270-b023-f1f830254322"
"""Random 128-bit base; ``xxxx`` is replaced by a 16-bit slot per attribute."""


def _garment_uuid(slot: int) -> str:
    return UUID_BASE.replace("xxxx", f"{slot:04x}")


GARMENT_SERVICE_UUID: Final = _garment_uuid(0x0001)
DATA_CHARACTERISTIC_UUID: Final = _garment_uuid(0x0002)
CONTROL_POINT_UUID: Final = _garment_uuid(0x0003)
FEATURES_UUID: Final = _garment_uuid(0x0004)
STATUS_UUID: Final = _garment_uuid(0x0005)

BATTERY_SERVICE_UUID: Final = uuid16(0x180F)
BATTERY_LEVEL_UUID: Final = uuid16(0x2A19)
DEVICE_INFORMATION_SERVICE_UUID: Final = uuid16(0x180A)
"""Standard services a garment also exposes (decoded in ``devices.info``)."""

ATT_MTU: Final = 247
"""The ATT MTU a garment negotiates; one notification then carries MTU - 3 bytes."""
MAX_PAYLOAD_BYTES: Final = 244
"""Largest data frame in protocol version 1, whatever the MTU."""
HEADER_FORMAT: Final = "<BBBBBBIQ"
"""version, stream, encoding, rate code, flags, sample count, sequence, device time (µs)."""
HEADER_SIZE: Final = 18
MAX_SEQUENCE: Final = 0xFFFF_FFFF
MAX_DEVICE_TIME_US: Final = (1 << 53) - 1
"""Largest valid device time: 285 years of uptime, exact in float64 and in int64 ns."""
MAX_FRAME_DURATION_US: Final = 400_000
"""A device puts at most this much signal into one frame (latency bound)."""


class GarmentStream(enum.IntEnum):
    """Stream id, byte 1 of every data frame."""

    ECG = 0x01
    RESP = 0x02
    TEMP = 0x03
    ACCEL = 0x04
    GYRO = 0x05


class SampleEncoding(enum.IntEnum):
    """Sample format code, byte 2 of a data frame: signed little-endian integers."""

    INT16 = 0x01
    INT24 = 0x02

    @property
    def n_bytes(self) -> int:
        return 2 if self is SampleEncoding.INT16 else 3

    @property
    def min_count(self) -> int:
        return -(1 << (8 * self.n_bytes - 1))

    @property
    def max_count(self) -> int:
        return (1 << (8 * self.n_bytes - 1)) - 1


class RateCode(enum.IntEnum):
    """Sample rate code, byte 3 of a data frame; every period is a whole number of µs."""

    HZ_0_1 = 0x01
    HZ_1 = 0x02
    HZ_12_5 = 0x03
    HZ_25 = 0x04
    HZ_50 = 0x05
    HZ_100 = 0x06
    HZ_125 = 0x07
    HZ_200 = 0x08
    HZ_250 = 0x09
    HZ_500 = 0x0A
    HZ_1000 = 0x0B

    @property
    def hz(self) -> float:
        return _RATE_HZ[self]

    @property
    def period_us(self) -> int:
        return _RATE_PERIOD_US[self]

    @property
    def millihertz(self) -> int:
        return 1_000_000_000 // _RATE_PERIOD_US[self]


_RATE_PERIOD_US: Final[Mapping[RateCode, int]] = MappingProxyType(
    {
        RateCode.HZ_0_1: 10_000_000,
        RateCode.HZ_1: 1_000_000,
        RateCode.HZ_12_5: 80_000,
        RateCode.HZ_25: 40_000,
        RateCode.HZ_50: 20_000,
        RateCode.HZ_100: 10_000,
        RateCode.HZ_125: 8_000,
        RateCode.HZ_200: 5_000,
        RateCode.HZ_250: 4_000,
        RateCode.HZ_500: 2_000,
        RateCode.HZ_1000: 1_000,
    }
)
_RATE_HZ: Final[Mapping[RateCode, float]] = MappingProxyType(
    {code: 1e6 / period for code, period in _RATE_PERIOD_US.items()}
)
_RATE_BY_HZ: Final[Mapping[float, RateCode]] = MappingProxyType(
    {hz: code for code, hz in _RATE_HZ.items()}
)


def rate_code(fs_hz: float) -> RateCode | None:
    """The code of a sample rate, or ``None`` if the protocol has no code for it."""
    return _RATE_BY_HZ.get(fs_hz)


class FrameFlags(enum.IntFlag):
    """Flags byte (byte 4) of a data frame; bits 5-7 are reserved and must be 0."""

    NONE = 0x00
    CONTACT_SUPPORTED = 0x01
    SKIN_CONTACT = 0x02
    """Skin contact detected; only valid with CONTACT_SUPPORTED."""
    LEAD_OFF = 0x04
    SATURATED = 0x08
    SENSOR_FAULT = 0x10


FRAME_FLAGS_RESERVED: Final = 0xE0


class ControlOpcode(enum.IntEnum):
    """First byte of a control-point write (and of its indicated response)."""

    START = 0x01
    STOP = 0x02
    SET_CONFIG = 0x03
    GET_CONFIG = 0x04
    GET_TIME = 0x05
    RESPONSE = 0x80


class ResultCode(enum.IntEnum):
    """Third byte of a control-point response."""

    SUCCESS = 0x01
    OPCODE_NOT_SUPPORTED = 0x02
    INVALID_LENGTH = 0x03
    UNSUPPORTED_STREAM = 0x04
    INVALID_RATE = 0x05
    UNSUPPORTED_ENCODING = 0x06
    INVALID_RANGE = 0x07
    INVALID_PARAMETER = 0x08
    INVALID_STATE = 0x09
    MTU_TOO_SMALL = 0x0A
    OPERATION_FAILED = 0x0B


class Capabilities(enum.IntFlag):
    """Capability byte of the features value; bits 3-7 reserved."""

    NONE = 0x00
    CONTACT_DETECTION = 0x01
    LEAD_OFF_DETECTION = 0x02
    CHARGING_STATUS = 0x04


CAPABILITIES_RESERVED: Final = 0xF8


class StatusFlags(enum.IntFlag):
    """Flags (u16) of the status value; bits 6-15 reserved."""

    NONE = 0x0000
    CONTACT_SUPPORTED = 0x0001
    SKIN_CONTACT = 0x0002
    LEAD_OFF = 0x0004
    CHARGING = 0x0008
    """Battery charging; only valid with EXTERNAL_POWER."""
    EXTERNAL_POWER = 0x0010
    BATTERY_LOW = 0x0020


STATUS_FLAGS_RESERVED: Final = 0xFFC0
STREAM_MASK_RESERVED: Final = 0xC1
"""Bits of a per-stream bit mask (bit n = stream id n) that must be 0."""


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """What the protocol allows for one stream (a device supports a subset)."""

    stream: GarmentStream
    kind: StreamKind
    unit: Unit
    lsb: float
    """Physical units per count, the same for every encoding of the stream."""
    encodings: tuple[SampleEncoding, ...]
    rates: tuple[RateCode, ...]
    default_rate: RateCode
    max_full_scale: int
    """Largest configurable sensor range (g or dps); 0 if the range is not configurable."""
    channels: tuple[str, ...] = ()

    @property
    def n_channels(self) -> int:
        return max(1, len(self.channels))


_XYZ: Final = ("x", "y", "z")
_BOTH: Final = (SampleEncoding.INT16, SampleEncoding.INT24)
_INT16: Final = (SampleEncoding.INT16,)

STREAM_SPECS: Final[Mapping[GarmentStream, StreamSpec]] = MappingProxyType(
    {
        GarmentStream.ECG: StreamSpec(
            GarmentStream.ECG,
            StreamKind.ECG,
            Unit.MICROVOLT,
            1.0,
            _BOTH,
            (RateCode.HZ_125, RateCode.HZ_250, RateCode.HZ_500, RateCode.HZ_1000),
            RateCode.HZ_250,
            0,
        ),
        GarmentStream.RESP: StreamSpec(
            GarmentStream.RESP,
            StreamKind.RESP,
            Unit.RESP_AU,
            1.0,
            _BOTH,
            (RateCode.HZ_25, RateCode.HZ_50, RateCode.HZ_100),
            RateCode.HZ_25,
            0,
        ),
        GarmentStream.TEMP: StreamSpec(
            GarmentStream.TEMP,
            StreamKind.TEMP,
            Unit.CELSIUS,
            0.01,
            _INT16,
            (RateCode.HZ_0_1, RateCode.HZ_1),
            RateCode.HZ_1,
            0,
        ),
        GarmentStream.ACCEL: StreamSpec(
            GarmentStream.ACCEL,
            StreamKind.ACCEL,
            Unit.MILLI_G,
            1.0,
            _INT16,
            (RateCode.HZ_12_5, RateCode.HZ_25, RateCode.HZ_50, RateCode.HZ_100, RateCode.HZ_200),
            RateCode.HZ_50,
            32,
            _XYZ,
        ),
        GarmentStream.GYRO: StreamSpec(
            GarmentStream.GYRO,
            StreamKind.GYRO,
            Unit.DEG_PER_S,
            0.1,
            _INT16,
            (RateCode.HZ_25, RateCode.HZ_50, RateCode.HZ_100, RateCode.HZ_200),
            RateCode.HZ_50,
            3276,
            _XYZ,
        ),
    }
)

SUPPORTED_RATES_HZ: Final[Mapping[GarmentStream, tuple[float, ...]]] = MappingProxyType(
    {stream: tuple(code.hz for code in spec.rates) for stream, spec in STREAM_SPECS.items()}
)

DEFAULT_RATES_HZ: Final[Mapping[GarmentStream, float]] = MappingProxyType(
    {
        GarmentStream.ECG: 250.0,
        GarmentStream.RESP: 25.0,
        GarmentStream.TEMP: 1.0,
        GarmentStream.ACCEL: 50.0,
    }
)
"""Streams and rates a gateway starts by default. The gyroscope is optional hardware,
so it is left out (its default rate is ``STREAM_SPECS[GYRO].default_rate``)."""

STREAM_CHARACTERISTICS: Final[Mapping[GarmentStream, str]] = MappingProxyType(
    {stream: DATA_CHARACTERISTIC_UUID for stream in GarmentStream}
)
"""Every stream is multiplexed on the one data characteristic."""
