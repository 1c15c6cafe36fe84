"""Control point, features and status values of the biogw garment profile.

Requests the gateway writes to the control point (start, stop, set/get configuration,
get device time), the responses the garment indicates back, the read-only features
value and the status value. Every value has an encoder and a decoder; the simulator
decodes requests and encodes responses, the gateway does the reverse. Byte layouts:
``docs/garment-profile.md``. Pure: no I/O, no Bluetooth stack. Malformed input raises
``FrameDecodeError`` (``ControlRequestError`` for requests, carrying the result code the
device answers with); unrepresentable values raise ``FrameEncodeError``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import ClassVar

from devices.errors import FrameDecodeError, FrameEncodeError
from devices.garment.spec import (
    CAPABILITIES_RESERVED,
    MAX_DEVICE_TIME_US,
    PROTOCOL_VERSION,
    STATUS_FLAGS_RESERVED,
    STREAM_MASK_RESERVED,
    STREAM_SPECS,
    Capabilities,
    ControlOpcode,
    GarmentStream,
    RateCode,
    ResultCode,
    SampleEncoding,
    StatusFlags,
    rate_code,
)

_REQ = "garment.control_request"
_RSP = "garment.control_response"
_FEAT = "garment.features"
_STAT = "garment.status"
_STREAMS = {int(s): s for s in GarmentStream}
_RATES = {int(c): c for c in RateCode}
_ENCODINGS = {int(e): e for e in SampleEncoding}
_RESULTS = {int(r): r for r in ResultCode}
_OPCODES = {int(o): o for o in ControlOpcode if o is not ControlOpcode.RESPONSE}
_CONFIG_ENTRY = struct.Struct("<BBBBH")
_TIME = struct.Struct("<QI")
_FEATURES_HEAD = struct.Struct("<BBIB")
_FEATURE_ENTRY = struct.Struct("<BBHBB")
_STATUS = struct.Struct("<BHBBQ")


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


@dataclass(frozen=True, slots=True)
class StreamFeatures:
    stream: GarmentStream
    encodings: tuple[SampleEncoding, ...]
    rates_hz: tuple[float, ...]
    default_rate_hz: float
    full_scales: tuple[int, ...] = ()
    """Selectable sensor ranges (g or dps), ascending; empty if not configurable."""


@dataclass(frozen=True, slots=True)
class GarmentFeatures:
    protocol_version: int
    capabilities: Capabilities
    boot_id: int
    """Random per device boot: a new value means the device clock and sequences restarted."""
    streams: tuple[StreamFeatures, ...]

    def for_stream(self, stream: GarmentStream) -> StreamFeatures | None:
        return next((s for s in self.streams if s.stream is stream), None)


@dataclass(frozen=True, slots=True)
class GarmentStatus:
    device_time_us: int
    flags: StatusFlags = StatusFlags.NONE
    streaming: tuple[GarmentStream, ...] = ()
    faults: tuple[GarmentStream, ...] = ()
    """Streams whose sensor reports a fault."""


def _rate_for(stream: GarmentStream, fs_hz: float, kind: str) -> RateCode:
    code = rate_code(fs_hz)
    if code is None or code not in STREAM_SPECS[stream].rates:
        raise FrameEncodeError(kind, f"{stream.name} has no rate {fs_hz!r} Hz")
    return code


def _full_scale_ok(stream: GarmentStream, full_scale: int) -> bool:
    return 0 <= full_scale <= STREAM_SPECS[stream].max_full_scale


def _mask(streams: Iterable[GarmentStream]) -> int:
    return sum(1 << int(s) for s in set(streams))


def _unmask(mask: int) -> tuple[GarmentStream, ...]:
    return tuple(s for s in GarmentStream if mask >> int(s) & 1)


def _sorted_unique(streams: Iterable[GarmentStream], kind: str) -> tuple[GarmentStream, ...]:
    items = tuple(GarmentStream(s) for s in streams)
    if len(set(items)) != len(items):
        raise FrameEncodeError(kind, "a stream is listed twice")
    return tuple(sorted(items))


def encode_start_request(streams: Mapping[GarmentStream, float]) -> bytes:
    """START the given streams at the given rates (Hz)."""
    if not streams:
        raise FrameEncodeError(_REQ, "START lists at least one stream")
    body = bytearray([ControlOpcode.START])
    for stream in _sorted_unique(streams, _REQ):
        body += bytes([stream, _rate_for(stream, streams[stream], _REQ)])
    return bytes(body)


def encode_stop_request(streams: Iterable[GarmentStream] | None = None) -> bytes:
    """STOP the given streams, or every stream when ``streams`` is None or empty."""
    return bytes([ControlOpcode.STOP, *_sorted_unique(streams or (), _REQ)])


def encode_set_config_request(settings: Mapping[GarmentStream, StreamSettings]) -> bytes:
    """SET_CONFIG: encoding and sensor range per stream (streams must be stopped)."""
    if not settings:
        raise FrameEncodeError(_REQ, "SET_CONFIG lists at least one stream")
    body = bytearray([ControlOpcode.SET_CONFIG])
    for stream in _sorted_unique(settings, _REQ):
        item = settings[stream]
        if item.encoding not in STREAM_SPECS[stream].encodings:
            raise FrameEncodeError(_REQ, f"{stream.name} has no {item.encoding!r} encoding")
        if not _full_scale_ok(stream, item.full_scale):
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
    stream = _STREAMS.get(stream_id)
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
        code = _RATES.get(params[i + 1])
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
        encoding = _ENCODINGS.get(enc_id)
        if encoding is None or encoding not in STREAM_SPECS[stream].encodings:
            raise ControlRequestError("bad_encoding", ResultCode.UNSUPPORTED_ENCODING, op, stream)
        if not _full_scale_ok(stream, full_scale):
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
    if not config or not _ascending(tuple(c.stream for c in config)):
        raise FrameEncodeError(_RSP, "GET_CONFIG lists each stream once, ascending by id")
    body = bytearray()
    for item in config:
        code = _rate_for(item.stream, item.fs_hz, _RSP)
        spec = STREAM_SPECS[item.stream]
        if item.encoding not in spec.encodings or not _full_scale_ok(item.stream, item.full_scale):
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
        stream = _STREAMS.get(stream_id)
        if stream is None or (config and config[-1].stream >= stream):
            raise FrameDecodeError(_RSP, "bad_stream", str(stream_id))
        spec = STREAM_SPECS[stream]
        code, encoding = _RATES.get(rate_id), _ENCODINGS.get(enc_id)
        if code is None or code not in spec.rates:
            raise FrameDecodeError(_RSP, "bad_rate", f"{rate_id} for {stream.name}")
        if encoding is None or encoding not in spec.encodings:
            raise FrameDecodeError(_RSP, "bad_encoding", f"{enc_id} for {stream.name}")
        if running > 1 or not _full_scale_ok(stream, full_scale):
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


def _ascending(values: tuple[float, ...] | tuple[int, ...]) -> bool:
    return all(a < b for a, b in pairwise(values))


def _encode_stream_features(item: StreamFeatures) -> bytes:
    spec = STREAM_SPECS[item.stream]
    codes = [_rate_for(item.stream, fs, _FEAT) for fs in item.rates_hz]
    default = _rate_for(item.stream, item.default_rate_hz, _FEAT)
    ok = (
        item.encodings
        and set(item.encodings) <= set(spec.encodings)
        and _ascending(tuple(item.encodings))
        and codes
        and _ascending(item.rates_hz)
        and default in codes
        and _ascending(item.full_scales)
        and all(0 < fs <= spec.max_full_scale for fs in item.full_scales)
    )
    if not ok or len(item.full_scales) > 0xFF:
        raise FrameEncodeError(_FEAT, f"{item.stream.name} features are not canonical")
    enc_mask = sum(1 << int(e) for e in item.encodings)
    rate_mask = sum(1 << int(c) for c in codes)
    head = _FEATURE_ENTRY.pack(item.stream, enc_mask, rate_mask, default, len(item.full_scales))
    return head + struct.pack(f"<{len(item.full_scales)}H", *item.full_scales)


def encode_features(features: GarmentFeatures) -> bytes:
    """Encode the features value (read-only characteristic)."""
    streams = tuple(s.stream for s in features.streams)
    if features.protocol_version != PROTOCOL_VERSION:
        raise FrameEncodeError(_FEAT, "only protocol version 1 is defined")
    if not streams or not _ascending(streams):
        raise FrameEncodeError(_FEAT, "streams must be listed once each, ascending by id")
    caps = int(features.capabilities)
    if caps & ~0xFF or caps & CAPABILITIES_RESERVED or not 0 <= features.boot_id <= 0xFFFF_FFFF:
        raise FrameEncodeError(_FEAT, "reserved capability bits or boot_id out of u32")
    head = _FEATURES_HEAD.pack(PROTOCOL_VERSION, caps, features.boot_id, len(streams))
    return head + b"".join(_encode_stream_features(s) for s in features.streams)


def _decode_stream_features(data: bytes, offset: int) -> tuple[StreamFeatures, int]:
    if len(data) < offset + _FEATURE_ENTRY.size:
        raise FrameDecodeError(_FEAT, "short", "stream entry")
    stream_id, enc_mask, rate_mask, default_id, n_fs = _FEATURE_ENTRY.unpack_from(data, offset)
    offset += _FEATURE_ENTRY.size
    stream = _STREAMS.get(stream_id)
    if stream is None:
        raise FrameDecodeError(_FEAT, "unknown_stream", str(stream_id))
    spec = STREAM_SPECS[stream]
    encodings = tuple(e for e in spec.encodings if enc_mask >> int(e) & 1)
    codes = tuple(c for c in spec.rates if rate_mask >> int(c) & 1)
    if not encodings or enc_mask != sum(1 << int(e) for e in encodings):
        raise FrameDecodeError(_FEAT, "bad_encodings", f"{stream.name} mask {enc_mask:#04x}")
    if not codes or rate_mask != sum(1 << int(c) for c in codes) or default_id not in codes:
        raise FrameDecodeError(_FEAT, "bad_rates", f"{stream.name} mask {rate_mask:#06x}")
    if len(data) < offset + 2 * n_fs:
        raise FrameDecodeError(_FEAT, "short", "full-scale list")
    full_scales = struct.unpack_from(f"<{n_fs}H", data, offset)
    if not _ascending(full_scales) or not all(0 < f <= spec.max_full_scale for f in full_scales):
        raise FrameDecodeError(_FEAT, "bad_full_scale", stream.name)
    rates = tuple(c.hz for c in codes)
    item = StreamFeatures(stream, encodings, rates, _RATES[default_id].hz, full_scales)
    return item, offset + 2 * n_fs


def decode_features(data: bytes) -> GarmentFeatures:
    """Decode the features value."""
    if len(data) < _FEATURES_HEAD.size:
        raise FrameDecodeError(_FEAT, "short", f"{len(data)} bytes")
    version, caps, boot_id, n_streams = _FEATURES_HEAD.unpack_from(data)
    if version != PROTOCOL_VERSION:
        raise FrameDecodeError(_FEAT, "unsupported_version", str(version))
    if caps & CAPABILITIES_RESERVED:
        raise FrameDecodeError(_FEAT, "bad_flags", f"{caps:#04x}")
    streams: list[StreamFeatures] = []
    offset = _FEATURES_HEAD.size
    for _ in range(n_streams):
        item, offset = _decode_stream_features(data, offset)
        streams.append(item)
    ids = tuple(s.stream for s in streams)
    if not ids or not _ascending(ids):
        raise FrameDecodeError(_FEAT, "bad_streams", "streams once each, ascending")
    if offset != len(data):
        raise FrameDecodeError(_FEAT, "length_mismatch", f"{len(data) - offset} extra bytes")
    return GarmentFeatures(version, Capabilities(caps), boot_id, tuple(streams))


def _status_flags_error(flags: int) -> str | None:
    if flags & STATUS_FLAGS_RESERVED:
        return "reserved bits"
    if flags & StatusFlags.SKIN_CONTACT and not flags & StatusFlags.CONTACT_SUPPORTED:
        return "contact without contact support"
    if flags & StatusFlags.CHARGING and not flags & StatusFlags.EXTERNAL_POWER:
        return "charging without external power"
    return None


def encode_status(status: GarmentStatus) -> bytes:
    """Encode the status value (read and notify)."""
    flags = int(status.flags)
    problem = "flags out of u16" if flags & ~0xFFFF else _status_flags_error(flags)
    if problem is not None:
        raise FrameEncodeError(_STAT, problem)
    if not 0 <= status.device_time_us <= MAX_DEVICE_TIME_US:
        raise FrameEncodeError(_STAT, "device_time_us out of range")
    for group in (status.streaming, status.faults):
        _sorted_unique(group, _STAT)
    streaming, faults = _mask(status.streaming), _mask(status.faults)
    return _STATUS.pack(PROTOCOL_VERSION, flags, streaming, faults, status.device_time_us)


def decode_status(data: bytes) -> GarmentStatus:
    """Decode a status read or notification."""
    if len(data) != _STATUS.size:
        raise FrameDecodeError(_STAT, "length_mismatch", f"{len(data)} bytes, expected 13")
    version, flags, streaming, faults, time_us = _STATUS.unpack(data)
    if version != PROTOCOL_VERSION:
        raise FrameDecodeError(_STAT, "unsupported_version", str(version))
    problem = _status_flags_error(flags)
    if problem is not None:
        raise FrameDecodeError(_STAT, "bad_flags", problem)
    if (streaming | faults) & STREAM_MASK_RESERVED:
        raise FrameDecodeError(_STAT, "bad_mask", "reserved stream bits")
    if time_us > MAX_DEVICE_TIME_US:
        raise FrameDecodeError(_STAT, "bad_time", "device time beyond 2**53 µs")
    return GarmentStatus(time_us, StatusFlags(flags), _unmask(streaming), _unmask(faults))
