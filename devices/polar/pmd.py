"""Polar Measurement Data (PMD) service: UUIDs, measurement types, the feature read.

The PMD service is Polar's vendor GATT service for raw sensor streams (ECG, ACC, PPG,
PPI, gyro, magnetometer, temperature...), as defined by the public Polar BLE SDK
(github.com/polarofficial/polar-ble-sdk: ``BlePMDClient``, ``PmdMeasurementType``).
One control point (write + indicate, also readable: the feature bitmap) and one data
characteristic (notify). Reading the control point gives the feature bitmap
(``PmdMeasurementType.fromByteArray``), decoded here::

    0F  bitmap:u16 LE (bit n = measurement type n; the SDK reads bits 0-14 but 4, 8)  [padding]

The request/response formats live in ``control``, the data frames in ``frames``.

Pure constants and small enums: no I/O, no Bluetooth stack.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Final, Literal

from devices.errors import FrameDecodeError, FrameEncodeError

PMD_SERVICE_UUID: Final = "fb005c80-02e7-f387-1cad-8acd2d8df0c8"
PMD_CONTROL_POINT_UUID: Final = "fb005c81-02e7-f387-1cad-8acd2d8df0c8"
PMD_DATA_UUID: Final = "fb005c82-02e7-f387-1cad-8acd2d8df0c8"

MEASUREMENT_TYPE_MASK: Final = 0x3F
"""Bits 0-5 of a measurement-type byte carry the type (``PmdMeasurementType.fromId``)."""
OFFLINE_RECORDING_BIT: Final = 0x80
FEATURES_CODE: Final = 0x0F
_FEATURES_KIND: Final = "pmd.features"
"""Bit 7 of the measurement byte in a control-point request: offline recording."""

MeasurementName = Literal[
    "ecg",
    "ppg",
    "acc",
    "ppi",
    "gyro",
    "mag",
    "skin_temp",
    "sdk_mode",
    "location",
    "pressure",
    "temperature",
    "offline_recording",
    "offline_hr",
    "offline_temp",
]
"""The measurement of a decoded frame, as a plain string (``PmdFrame.measurement``)."""


class PmdMeasurementType(enum.IntEnum):
    """Measurement type ids on the wire (SDK ``PmdMeasurementType``; 4 and 8 unused)."""

    ECG = 0
    PPG = 1
    ACC = 2
    PPI = 3
    GYRO = 5
    MAG = 6
    SKIN_TEMP = 7
    SDK_MODE = 9
    LOCATION = 10
    PRESSURE = 11
    TEMPERATURE = 12
    OFFLINE_RECORDING = 13
    OFFLINE_HR = 14
    OFFLINE_TEMP = 15

    @property
    def label(self) -> MeasurementName:
        """The lower-case name used in ``PmdFrame.measurement``."""
        return _LABELS[self]

    @classmethod
    def from_id(cls, type_id: int) -> PmdMeasurementType | None:
        """The type for a wire id (bits 0-5), or ``None`` for an id the SDK does not know."""
        return _BY_ID.get(type_id & MEASUREMENT_TYPE_MASK)

    @classmethod
    def coerce(cls, measurement: PmdMeasurementType | str) -> PmdMeasurementType:
        """Accept an enum member or its ``label`` (``"ecg"``); ``ValueError`` otherwise."""
        if isinstance(measurement, PmdMeasurementType):
            return measurement
        for member, label in _LABELS.items():
            if label == measurement:
                return member
        raise ValueError(f"unknown PMD measurement {measurement!r}")


_LABELS: Final[dict[PmdMeasurementType, MeasurementName]] = {
    PmdMeasurementType.ECG: "ecg",
    PmdMeasurementType.PPG: "ppg",
    PmdMeasurementType.ACC: "acc",
    PmdMeasurementType.PPI: "ppi",
    PmdMeasurementType.GYRO: "gyro",
    PmdMeasurementType.MAG: "mag",
    PmdMeasurementType.SKIN_TEMP: "skin_temp",
    PmdMeasurementType.SDK_MODE: "sdk_mode",
    PmdMeasurementType.LOCATION: "location",
    PmdMeasurementType.PRESSURE: "pressure",
    PmdMeasurementType.TEMPERATURE: "temperature",
    PmdMeasurementType.OFFLINE_RECORDING: "offline_recording",
    PmdMeasurementType.OFFLINE_HR: "offline_hr",
    PmdMeasurementType.OFFLINE_TEMP: "offline_temp",
}
_BY_ID: Final[dict[int, PmdMeasurementType]] = {int(m): m for m in PmdMeasurementType}
_FEATURE_TYPES: Final = tuple(
    m for m in PmdMeasurementType if m is not PmdMeasurementType.OFFLINE_TEMP
)


def decode_pmd_features(data: bytes) -> frozenset[PmdMeasurementType]:
    """The control point's read value: which measurements the device supports."""
    if len(data) < 3:
        raise FrameDecodeError(_FEATURES_KIND, "short", f"{len(data)} bytes, need 3")
    if data[0] != FEATURES_CODE:
        raise FrameDecodeError(_FEATURES_KIND, "bad_code", f"code {data[0]:#04x}")
    bitmap = data[1] | (data[2] << 8)
    return frozenset(m for m in _FEATURE_TYPES if bitmap >> int(m) & 1)


def encode_pmd_features(measurements: Iterable[PmdMeasurementType], *, length: int = 17) -> bytes:
    """Feature read value, zero-padded to ``length`` bytes (an H10 answers 17)."""
    bitmap = 0
    for m in measurements:
        if m not in _FEATURE_TYPES:
            raise FrameEncodeError(_FEATURES_KIND, f"no_feature_bit_for_{m.label}")
        bitmap |= 1 << int(m)
    if length < 3:
        raise FrameEncodeError(_FEATURES_KIND, "length_below_3")
    return bytes((FEATURES_CODE, bitmap & 0xFF, bitmap >> 8)).ljust(length, b"\x00")
