"""PMD control point: requests and responses (settings in ``settings``, features in ``pmd``).

Byte formats follow the public Polar BLE SDK (``BlePMDClient``, ``PmdControlPointCommand``,
``PmdControlPointResponse``)::

    request   op:u8  [measurement:u8 (bits 0-5 type, bit 7 offline)]  [settings...]
    response  F0  op:u8  measurement:u8  error:u8  [more:u8  parameters...]
    stopped   01  measurement:u8 *   (device-initiated "online measurement stopped")

The settings blocks are encoded and decoded by ``settings``; ``PmdSettings``,
``PmdSettingType``, ``PmdSecurityStrategy``, ``encode_settings``, ``decode_settings`` and
``factor_bits`` are re-exported here for existing imports.

Decisions: a start response whose parameters are a single byte carries no settings (SDK
``parsePmdSettingsData``); error responses carry no parameters (the SDK ignores bytes
after the error code).

Pure: no I/O, no Bluetooth stack, no logging of payloads.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from devices.errors import FrameDecodeError, FrameEncodeError
from devices.polar.pmd import OFFLINE_RECORDING_BIT, PmdMeasurementType
from devices.polar.settings import (
    PmdSecurityStrategy,
    PmdSettings,
    PmdSettingType,
    decode_settings,
    encode_settings,
    factor_bits,
)

__all__ = [
    "RESPONSE_CODE",
    "STOPPED_CODE",
    "PmdControlRequest",
    "PmdControlResponse",
    "PmdErrorCode",
    "PmdMeasurementStopped",
    "PmdOpCode",
    "PmdSecurityStrategy",
    "PmdSettingType",
    "PmdSettings",
    "decode_control_point_notification",
    "decode_control_request",
    "decode_control_response",
    "decode_settings",
    "encode_control_response",
    "encode_get_sdk_mode_settings_request",
    "encode_get_settings_request",
    "encode_measurement_status_request",
    "encode_measurement_stopped",
    "encode_settings",
    "encode_start_request",
    "encode_stop_request",
    "factor_bits",
]

_KIND: Final = "pmd.control"
RESPONSE_CODE: Final = 0xF0
STOPPED_CODE: Final = 0x01


class PmdOpCode(enum.IntEnum):
    """Client-to-service op codes (SDK ``PmdControlPointCommandClientToService``)."""

    NULL_ITEM = 0
    GET_MEASUREMENT_SETTINGS = 1
    REQUEST_MEASUREMENT_START = 2
    STOP_MEASUREMENT = 3
    GET_SDK_MODE_SETTINGS = 4
    GET_MEASUREMENT_STATUS = 5
    GET_SDK_MODE_STATUS = 6
    GET_OFFLINE_RECORDING_TRIGGER_STATUS = 7
    SET_OFFLINE_RECORDING_TRIGGER_MODE = 8
    SET_OFFLINE_RECORDING_TRIGGER_SETTINGS = 9


class PmdErrorCode(enum.IntEnum):
    """Response error codes (SDK ``PmdControlPointResponseCode``)."""

    SUCCESS = 0
    INVALID_OP_CODE = 1
    INVALID_MEASUREMENT_TYPE = 2
    NOT_SUPPORTED = 3
    INVALID_LENGTH = 4
    INVALID_PARAMETER = 5
    ALREADY_IN_STATE = 6
    INVALID_RESOLUTION = 7
    INVALID_SAMPLE_RATE = 8
    INVALID_RANGE = 9
    INVALID_MTU = 10
    INVALID_NUMBER_OF_CHANNELS = 11
    INVALID_STATE = 12
    DEVICE_IN_CHARGER = 13
    DISK_FULL = 14


def _measurement_byte(measurement: PmdMeasurementType | str, offline: bool) -> int:
    return int(PmdMeasurementType.coerce(measurement)) | (OFFLINE_RECORDING_BIT if offline else 0)


def encode_get_settings_request(
    measurement: PmdMeasurementType | str, *, offline: bool = False
) -> bytes:
    return bytes((PmdOpCode.GET_MEASUREMENT_SETTINGS, _measurement_byte(measurement, offline)))


def encode_get_sdk_mode_settings_request(
    measurement: PmdMeasurementType | str, *, offline: bool = False
) -> bytes:
    return bytes((PmdOpCode.GET_SDK_MODE_SETTINGS, _measurement_byte(measurement, offline)))


def encode_start_request(
    measurement: PmdMeasurementType | str, settings: PmdSettings, *, offline: bool = False
) -> bytes:
    """Start request; FACTOR is never sent (SDK ``serializeSelected`` skips it)."""
    sent = PmdSettings(tuple(e for e in settings.entries if e[0] is not PmdSettingType.FACTOR))
    if any(len(v) != 1 for k, v in sent.entries if k is not PmdSettingType.SECURITY):
        raise FrameEncodeError(_KIND, "start_needs_one_value_per_setting")
    head = (PmdOpCode.REQUEST_MEASUREMENT_START, _measurement_byte(measurement, offline))
    return bytes(head) + encode_settings(sent)


def encode_stop_request(measurement: PmdMeasurementType | str) -> bytes:
    return bytes((PmdOpCode.STOP_MEASUREMENT, _measurement_byte(measurement, False)))


def encode_measurement_status_request() -> bytes:
    return bytes((PmdOpCode.GET_MEASUREMENT_STATUS,))


@dataclass(frozen=True, slots=True)
class PmdControlRequest:
    """A decoded control-point write (what the simulated device receives).

    ``measurement_id`` is the type id (bits 0-5) for ops that carry one, so a device can
    answer ``INVALID_MEASUREMENT_TYPE`` for ids it does not know; ``settings`` is set for
    start requests; ``parameters`` is everything after the op code, as sent.
    """

    op_code: PmdOpCode
    measurement_id: int | None = None
    offline: bool = False
    settings: PmdSettings | None = None
    parameters: bytes = b""

    @property
    def measurement(self) -> PmdMeasurementType | None:
        return (
            None if self.measurement_id is None else PmdMeasurementType.from_id(self.measurement_id)
        )


_WITH_MEASUREMENT: Final = frozenset(
    {
        PmdOpCode.GET_MEASUREMENT_SETTINGS,
        PmdOpCode.REQUEST_MEASUREMENT_START,
        PmdOpCode.STOP_MEASUREMENT,
        PmdOpCode.GET_SDK_MODE_SETTINGS,
    }
)
_PARAMETERLESS: Final = frozenset(
    {
        PmdOpCode.GET_MEASUREMENT_STATUS,
        PmdOpCode.GET_SDK_MODE_STATUS,
        PmdOpCode.GET_OFFLINE_RECORDING_TRIGGER_STATUS,
    }
)


def decode_control_request(data: bytes) -> PmdControlRequest:
    """Decode a control-point write. Unknown op codes raise ``FrameDecodeError`` with
    reason ``"unknown_op_code"`` (a device answers ``INVALID_OP_CODE`` from ``data[0]``)."""
    if not data:
        raise FrameDecodeError(_KIND, "short", "empty request")
    try:
        op = PmdOpCode(data[0])
    except ValueError:
        raise FrameDecodeError(_KIND, "unknown_op_code", f"op {data[0]}") from None
    params = bytes(data[1:])
    if op in _WITH_MEASUREMENT:
        if not params:
            raise FrameDecodeError(_KIND, "short", f"{op.name} needs a measurement byte")
        if op is not PmdOpCode.REQUEST_MEASUREMENT_START and len(params) != 1:
            raise FrameDecodeError(_KIND, "bad_length", f"{op.name} takes one byte")
        settings = (
            decode_settings(params[1:]) if op is PmdOpCode.REQUEST_MEASUREMENT_START else None
        )
        return PmdControlRequest(
            op,
            measurement_id=params[0] & 0x3F,
            offline=bool(params[0] & OFFLINE_RECORDING_BIT),
            settings=settings,
            parameters=params,
        )
    if op in _PARAMETERLESS and params:
        raise FrameDecodeError(_KIND, "bad_length", f"{op.name} takes no parameters")
    if op is PmdOpCode.SET_OFFLINE_RECORDING_TRIGGER_MODE and len(params) != 1:
        raise FrameDecodeError(_KIND, "bad_length", f"{op.name} takes one byte")
    if op is PmdOpCode.SET_OFFLINE_RECORDING_TRIGGER_SETTINGS:
        return _decode_trigger_settings(params)
    return PmdControlRequest(op, parameters=params)


def _decode_trigger_settings(params: bytes) -> PmdControlRequest:
    # status:u8 measurement:u8 [length:u8 settings...] (SDK setOfflineRecordingTriggerSetting)
    op = PmdOpCode.SET_OFFLINE_RECORDING_TRIGGER_SETTINGS
    if len(params) < 2:
        raise FrameDecodeError(_KIND, "truncated", f"need 2 bytes, have {len(params)}")
    settings = None
    if len(params) > 2:
        length = params[2]
        if len(params) != 3 + length:
            raise FrameDecodeError(_KIND, "bad_length", "trigger settings length mismatch")
        settings = decode_settings(params[3:])
    return PmdControlRequest(
        op, measurement_id=params[1] & 0x3F, settings=settings, parameters=params
    )


@dataclass(frozen=True, slots=True)
class PmdControlResponse:
    """A control-point response indication (``F0 op measurement error [more params]``)."""

    op_code: PmdOpCode
    measurement_id: int
    """Byte 2 as sent (the SDK keeps it raw); see ``measurement``."""
    error: PmdErrorCode
    more: bool = False
    parameters: bytes = b""

    @property
    def ok(self) -> bool:
        return self.error is PmdErrorCode.SUCCESS

    @property
    def measurement(self) -> PmdMeasurementType | None:
        return PmdMeasurementType.from_id(self.measurement_id)

    def settings(self) -> PmdSettings:
        """Parameters parsed as settings (get-settings lists, start-response factor)."""
        return decode_settings(self.parameters, single_byte_is_empty=True)


@dataclass(frozen=True, slots=True)
class PmdMeasurementStopped:
    """Device-initiated "online measurement stopped" (``01 type...``)."""

    measurement_ids: tuple[int, ...]


def encode_control_response(
    op_code: PmdOpCode | int,
    measurement: PmdMeasurementType | int,
    error: PmdErrorCode = PmdErrorCode.SUCCESS,
    *,
    more: bool = False,
    parameters: bytes = b"",
) -> bytes:
    """``F0 op measurement error more parameters``. An error response is ``F0 op
    measurement error 00``: ``more`` is 0 and no parameters follow, as a real H10 sends
    it (``f0 02 00 05 00``); asking for ``more`` or parameters with an error raises."""
    if error is not PmdErrorCode.SUCCESS and (more or parameters):
        raise FrameEncodeError(_KIND, "error_response_with_parameters")
    if not 0 <= int(op_code) <= 0xFF or not 0 <= int(measurement) <= 0xFF:
        raise FrameEncodeError(_KIND, "byte_out_of_range")
    head = (RESPONSE_CODE, int(op_code), int(measurement), int(error), int(more))
    return bytes(head) + bytes(parameters)


def decode_control_response(data: bytes) -> PmdControlResponse:
    if len(data) < 4:
        raise FrameDecodeError(_KIND, "short", f"{len(data)} bytes, need 4")
    if data[0] != RESPONSE_CODE:
        raise FrameDecodeError(_KIND, "not_a_response", f"code {data[0]:#04x}")
    try:
        op = PmdOpCode(data[1])
    except ValueError:
        raise FrameDecodeError(_KIND, "unknown_op_code", f"op {data[1]}") from None
    try:
        error = PmdErrorCode(data[3])
    except ValueError:
        raise FrameDecodeError(_KIND, "unknown_error_code", f"error {data[3]}") from None
    if error is not PmdErrorCode.SUCCESS:
        return PmdControlResponse(op, data[2], error)
    more = len(data) > 4 and data[4] != 0
    return PmdControlResponse(op, data[2], error, more, bytes(data[5:]))


def encode_measurement_stopped(measurements: Iterable[PmdMeasurementType | int]) -> bytes:
    return bytes((STOPPED_CODE, *(int(m) for m in measurements)))


def decode_control_point_notification(data: bytes) -> PmdControlResponse | PmdMeasurementStopped:
    """Any indication on the control point: a response or a device-initiated stop."""
    if not data:
        raise FrameDecodeError(_KIND, "short", "empty indication")
    if data[0] == STOPPED_CODE:
        return PmdMeasurementStopped(tuple(b & 0x3F for b in data[1:]))
    return decode_control_response(data)
