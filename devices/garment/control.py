"""Control point of the biogw garment profile: requests, responses, request validation.

Requests the gateway writes (start, stop, set/get configuration, get device time) and the
responses the garment indicates back, each with an encoder and a decoder: the simulator
decodes requests and encodes responses, the gateway the reverse. Byte layouts:
``docs/garment-profile.md``. Pure: no I/O, no Bluetooth stack. Malformed input raises
``FrameDecodeError`` (``ControlRequestError`` for requests, carrying the result code the
device answers with); unrepresentable values raise ``FrameEncodeError``. The features and
status values live in ``features`` and ``status``, re-exported here for existing imports.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from devices.errors import FrameDecodeError, FrameEncodeError
from devices.garment.checks import (
    ENCODINGS_BY_ID,
    RATES_BY_ID,
    STREAMS_BY_ID,
    ascending,
    full_scale_ok,
    rate_for,
    sorted_unique,
)
from devices.garment.features import (
    GarmentFeatures,
    StreamFeatures,
    decode_features,
    encode_features,
)
from devices.garment.spec import (
    MAX_DEVICE_TIME_US,
    STREAM_SPECS,
    ControlOpcode,
    GarmentStream,
    ResultCode,
    SampleEncoding,
)
from devices.garment.status import GarmentStatus, decode_status, encode_status

__all__ = [
    "ControlRequest",
    "ControlRequestError",
    "ControlResponse",
    "GarmentFeatures",
    "GarmentStatus",
    "GetConfigRequest",
    "GetTimeRequest",
    "SetConfigRequest",
    "StartRequest",
    "StopRequest",
    "StreamConfig",
    "StreamFeatures",
    "StreamSettings",
    "decode_control_request",
    "decode_control_response",
    "decode_features",
    "decode_status",
    "encode_control_request",
    "encode_control_response",
    "encode_features",
    "encode_get_config_request",
    "encode_get_time_request",
    "encode_set_config_request",
    "encode_start_request",
    "encode_status",
    "encode_stop_request",
    "validate_request",
]

_REQ = "garment.control_request"
_RSP = "garment.control_response"
_RESULTS = {int(r): r for r in ResultCode}
_OPCODES = {int(o): o for o in ControlOpcode if o is not ControlOpcode.RESPONSE}
_CONFIG_ENTRY = struct.Struct("<BBBBH")
_TIME = struct.Struct("<QI")


class ControlRequestError(FrameDecodeError):
    """A control-point write the garment must refuse; ``result`` is its answer."""

    def __init__(self, reason: str, result: ResultCode, opcode: int, stream_id: int = 0) -> None:
        super().__init__(_REQ, reason, f"{result.name}, stream id {stream_id}")
        self.result = result
        self.opcode = opcode
        self.stream_id = stream_id


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """Per-stream settings of SET_CONFIG. ``full_scale`` is the sensor range in g
    (ACCEL) or dps (GYRO); 0 means the device default (the only value for other streams)."""

    encoding: SampleEncoding = SampleEncoding.INT16
    full_scale: int = 0


@dataclass(frozen=True, slots=True)
class StartRequest:
    rates_hz: tuple[tuple[GarmentStream, float], ...]
    opcode: ClassVar[ControlOpcode] = ControlOpcode.START


@dataclass(frozen=True, slots=True)
class StopRequest:
    streams: tuple[GarmentStream, ...] = ()
    """Streams to stop; empty stops every stream."""
    opcode: ClassVar[ControlOpcode] = ControlOpcode.STOP


@dataclass(frozen=True, slots=True)
class SetConfigRequest:
    settings: tuple[tuple[GarmentStream, StreamSettings], ...]
    opcode: ClassVar[ControlOpcode] = ControlOpcode.SET_CONFIG


@dataclass(frozen=True, slots=True)
class GetConfigRequest:
    opcode: ClassVar[ControlOpcode] = ControlOpcode.GET_CONFIG


@dataclass(frozen=True, slots=True)
class GetTimeRequest:
    opcode: ClassVar[ControlOpcode] = ControlOpcode.GET_TIME


ControlRequest = StartRequest | StopRequest | SetConfigRequest | GetConfigRequest | GetTimeRequest


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """One stream's state in a GET_CONFIG response."""

    stream: GarmentStream
    running: bool
    fs_hz: float
    encoding: SampleEncoding
    full_scale: int


@dataclass(frozen=True, slots=True)
class ControlResponse:
    """A control-point indication. ``request_opcode`` is the raw echoed opcode (a
    ``ControlOpcode`` when known). ``failed_stream_id`` is set on failure (0 = none);
    ``config`` on GET_CONFIG success; ``device_time_us``/``boot_id`` on GET_TIME success."""

    request_opcode: int
    result: ResultCode
    failed_stream_id: int = 0
    config: tuple[StreamConfig, ...] = ()
    device_time_us: int | None = None
    boot_id: int | None = None

    @property
    def ok(self) -> bool:
        return self.result is ResultCode.SUCCESS


def encode_start_request(streams: Mapping[GarmentStream, float]) -> bytes:
    """START the given streams at the given rates (Hz)."""
    if not streams:
        raise FrameEncodeError(_REQ, "START lists at least one stream")
    body = bytearray([ControlOpcode.START])
    for stream in sorted_unique(streams, _REQ):
        body += bytes([stream, rate_for(stream, streams[stream], _REQ)])
    return bytes(body)


def encode_stop_request(streams: Iterable[GarmentStream] | None = None) -> bytes:
    """STOP the given streams, or every stream when ``streams`` is None or empty."""
    return bytes([ControlOpcode.STOP, *sorted_unique(streams or (), _REQ)])


def encode_set_config_request(settings: Mapping[GarmentStream, StreamSettings]) -> bytes:
    """SET_CONFIG: encoding and sensor range per stream (streams must be stopped)."""
    if not settings:
        raise FrameEncodeError(_REQ, "SET_CONFIG lists at least one stream")
    body = bytearray([ControlOpcode.SET_CONFIG])
    for stream in sorted_unique(settings, _REQ):
        item = settings[stream]
        if item.encoding not in STREAM_SPECS[stream].encodings:
            raise FrameEncodeError(_REQ, f"{stream.name} has no {item.encoding!r} encoding")
        if not full_scale_ok(stream, item.full_scale):
            raise FrameEncodeError(_REQ, f"{stream.name} full scale {item.full_scale}")
        body += struct.pack("<BBH", stream, item.encoding, item.full_scale)
    return bytes(body)


def encode_get_config_request() -> bytes:
    return bytes([ControlOpcode.GET_CONFIG])


def encode_get_time_request() -> bytes:
    return bytes([ControlOpcode.GET_TIME])


def encode_control_request(request: ControlRequest) -> bytes:
    """Encode any decoded request (the inverse of ``decode_control_request``)."""
    match request:
        case StartRequest(rates_hz=rates):
            if len({s for s, _ in rates}) != len(rates):
                raise FrameEncodeError(_REQ, "a stream is listed twice")
            return encode_start_request(dict(rates))
        case StopRequest(streams=streams):
            return encode_stop_request(streams)
        case SetConfigRequest(settings=settings):
            if len({s for s, _ in settings}) != len(settings):
                raise FrameEncodeError(_REQ, "a stream is listed twice")
            return encode_set_config_request(dict(settings))
        case GetConfigRequest():
            return encode_get_config_request()
        case GetTimeRequest():
            return encode_get_time_request()


def _request_stream(op: int, stream_id: int, seen: set[GarmentStream]) -> GarmentStream:
    stream = STREAMS_BY_ID.get(stream_id)
    if stream is None:
        raise ControlRequestError("unknown_stream", ResultCode.UNSUPPORTED_STREAM, op, stream_id)
    if stream in seen:
        raise ControlRequestError("duplicate_stream", ResultCode.INVALID_PARAMETER, op, stream_id)
    seen.add(stream)
    return stream


def _decode_start(op: int, params: bytes) -> StartRequest:
    if not params or len(params) % 2:
        raise ControlRequestError("bad_length", ResultCode.INVALID_LENGTH, op)
    seen: set[GarmentStream] = set()
    rates: list[tuple[GarmentStream, float]] = []
    for i in range(0, len(params), 2):
        stream = _request_stream(op, params[i], seen)
        code = RATES_BY_ID.get(params[i + 1])
        if code is None or code not in STREAM_SPECS[stream].rates:
            raise ControlRequestError("bad_rate", ResultCode.INVALID_RATE, op, stream)
        rates.append((stream, code.hz))
    return StartRequest(tuple(rates))


def _decode_set_config(op: int, params: bytes) -> SetConfigRequest:
    if not params or len(params) % 4:
        raise ControlRequestError("bad_length", ResultCode.INVALID_LENGTH, op)
    seen: set[GarmentStream] = set()
    settings: list[tuple[GarmentStream, StreamSettings]] = []
    for stream_id, enc_id, full_scale in struct.iter_unpack("<BBH", params):
        stream = _request_stream(op, stream_id, seen)
        encoding = ENCODINGS_BY_ID.get(enc_id)
        if encoding is None or encoding not in STREAM_SPECS[stream].encodings:
            raise ControlRequestError("bad_encoding", ResultCode.UNSUPPORTED_ENCODING, op, stream)
        if not full_scale_ok(stream, full_scale):
            raise ControlRequestError("bad_range", ResultCode.INVALID_RANGE, op, stream)
        settings.append((stream, StreamSettings(encoding, full_scale)))
    return SetConfigRequest(tuple(settings))


def decode_control_request(data: bytes) -> ControlRequest:
    """Decode a control-point write (what a garment does on each write).

    Raises ``ControlRequestError`` (a ``FrameDecodeError``) whose ``result``,
    ``opcode`` and ``stream_id`` are what the garment indicates back.
    """
    if not data:
        raise ControlRequestError("empty", ResultCode.INVALID_LENGTH, 0)
    op, params = data[0], bytes(data[1:])
    opcode = _OPCODES.get(op)
    if opcode is None:
        raise ControlRequestError("unknown_opcode", ResultCode.OPCODE_NOT_SUPPORTED, op)
    if opcode is ControlOpcode.START:
        return _decode_start(op, params)
    if opcode is ControlOpcode.SET_CONFIG:
        return _decode_set_config(op, params)
    if opcode is ControlOpcode.STOP:
        seen: set[GarmentStream] = set()
        return StopRequest(tuple(_request_stream(op, b, seen) for b in params))
    if params:
        raise ControlRequestError("bad_length", ResultCode.INVALID_LENGTH, op)
    return GetConfigRequest() if opcode is ControlOpcode.GET_CONFIG else GetTimeRequest()


def validate_request(request: ControlRequest, features: GarmentFeatures) -> None:
    """Check a decoded request against what one device supports (its features).

    Raises ``ControlRequestError`` with the result the device answers. State checks
    (SET_CONFIG on a running stream) are the device's own.
    """
    op = request.opcode

    def supported(stream: GarmentStream) -> StreamFeatures:
        found = features.for_stream(stream)
        if found is None:
            raise ControlRequestError("unsupported", ResultCode.UNSUPPORTED_STREAM, op, stream)
        return found

    if isinstance(request, StartRequest):
        for stream, fs_hz in request.rates_hz:
            if fs_hz not in supported(stream).rates_hz:
                raise ControlRequestError("bad_rate", ResultCode.INVALID_RATE, op, stream)
    elif isinstance(request, StopRequest):
        for stream in request.streams:
            supported(stream)
    elif isinstance(request, SetConfigRequest):
        for stream, item in request.settings:
            found = supported(stream)
            if item.encoding not in found.encodings:
                raise ControlRequestError(
                    "bad_encoding", ResultCode.UNSUPPORTED_ENCODING, op, stream
                )
            if item.full_scale and item.full_scale not in found.full_scales:
                raise ControlRequestError("bad_range", ResultCode.INVALID_RANGE, op, stream)


def _encode_config(config: tuple[StreamConfig, ...]) -> bytes:
    if not config or not ascending(tuple(c.stream for c in config)):
        raise FrameEncodeError(_RSP, "GET_CONFIG lists each stream once, ascending by id")
    body = bytearray()
    for item in config:
        code = rate_for(item.stream, item.fs_hz, _RSP)
        spec = STREAM_SPECS[item.stream]
        if item.encoding not in spec.encodings or not full_scale_ok(item.stream, item.full_scale):
            raise FrameEncodeError(_RSP, f"{item.stream.name} encoding or full scale")
        entry = (item.stream, int(item.running), code, item.encoding, item.full_scale)
        body += _CONFIG_ENTRY.pack(*entry)
    return bytes(body)


def encode_control_response(response: ControlResponse) -> bytes:
    """Encode a control-point indication (what a garment sends after each write)."""
    op, result = response.request_opcode, response.result
    has_time = response.device_time_us is not None or response.boot_id is not None
    if not 0 <= op <= 0xFF or not 0 <= response.failed_stream_id <= 0xFF:
        raise FrameEncodeError(_RSP, "opcode and stream id are bytes")
    head = bytes([ControlOpcode.RESPONSE, op, result])
    if not response.ok:
        if response.config or has_time:
            raise FrameEncodeError(_RSP, "a failure response carries only a stream id")
        return head + bytes([response.failed_stream_id])
    if response.failed_stream_id:
        raise FrameEncodeError(_RSP, "a success response has no failed stream")
    if op == ControlOpcode.GET_CONFIG and not has_time:
        return head + _encode_config(response.config)
    if op == ControlOpcode.GET_TIME and not response.config:
        time_us, boot_id = response.device_time_us, response.boot_id
        if time_us is None or boot_id is None or not 0 <= time_us <= MAX_DEVICE_TIME_US:
            raise FrameEncodeError(_RSP, "GET_TIME needs device_time_us and boot_id")
        if not 0 <= boot_id <= 0xFFFF_FFFF:
            raise FrameEncodeError(_RSP, "boot_id is a u32")
        return head + _TIME.pack(time_us, boot_id)
    if op in _OPCODES and not response.config and not has_time:
        return head
    raise FrameEncodeError(_RSP, f"fields do not match a success response to {op:#04x}")


def _decode_config(body: bytes) -> tuple[StreamConfig, ...]:
    if not body or len(body) % _CONFIG_ENTRY.size:
        raise FrameDecodeError(_RSP, "length_mismatch", "GET_CONFIG entries")
    config: list[StreamConfig] = []
    for stream_id, running, rate_id, enc_id, full_scale in _CONFIG_ENTRY.iter_unpack(body):
        stream = STREAMS_BY_ID.get(stream_id)
        if stream is None or (config and config[-1].stream >= stream):
            raise FrameDecodeError(_RSP, "bad_stream", str(stream_id))
        spec = STREAM_SPECS[stream]
        code, encoding = RATES_BY_ID.get(rate_id), ENCODINGS_BY_ID.get(enc_id)
        if code is None or code not in spec.rates:
            raise FrameDecodeError(_RSP, "bad_rate", f"{rate_id} for {stream.name}")
        if encoding is None or encoding not in spec.encodings:
            raise FrameDecodeError(_RSP, "bad_encoding", f"{enc_id} for {stream.name}")
        if running > 1 or not full_scale_ok(stream, full_scale):
            raise FrameDecodeError(_RSP, "bad_value", f"{stream.name} state or full scale")
        config.append(StreamConfig(stream, bool(running), code.hz, encoding, full_scale))
    return tuple(config)


def decode_control_response(data: bytes) -> ControlResponse:
    """Decode a control-point indication (what the gateway receives)."""
    if len(data) < 3:
        raise FrameDecodeError(_RSP, "short", f"{len(data)} bytes")
    if data[0] != ControlOpcode.RESPONSE:
        raise FrameDecodeError(_RSP, "not_a_response", f"{data[0]:#04x}")
    op = _OPCODES.get(data[1], data[1])
    result = _RESULTS.get(data[2])
    body = bytes(data[3:])
    if result is None:
        raise FrameDecodeError(_RSP, "unknown_result", str(data[2]))
    if result is not ResultCode.SUCCESS:
        if len(body) != 1:
            raise FrameDecodeError(_RSP, "length_mismatch", "failure carries one byte")
        return ControlResponse(op, result, failed_stream_id=body[0])
    if op == ControlOpcode.GET_CONFIG:
        return ControlResponse(op, result, config=_decode_config(body))
    if op == ControlOpcode.GET_TIME:
        if len(body) != _TIME.size:
            raise FrameDecodeError(_RSP, "length_mismatch", "GET_TIME carries 12 bytes")
        time_us, boot_id = _TIME.unpack(body)
        if time_us > MAX_DEVICE_TIME_US:
            raise FrameDecodeError(_RSP, "bad_time", "device time beyond 2**53 µs")
        return ControlResponse(op, result, device_time_us=time_us, boot_id=boot_id)
    if op not in _OPCODES:
        raise FrameDecodeError(_RSP, "bad_opcode", f"success for unknown {op:#04x}")
    if body:
        raise FrameDecodeError(_RSP, "length_mismatch", "success carries no parameters")
    return ControlResponse(op, result)
