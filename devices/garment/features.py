"""The garment features value: what one device supports (read-only characteristic).

``GarmentFeatures`` lists, per stream, the sample encodings, rates, default rate and
selectable sensor ranges, plus the protocol version, capability bits and boot id. The
simulator encodes it, the gateway decodes it and ``control.validate_request`` checks
requests against it. Byte layout: ``docs/garment-profile.md``. Pure: no I/O, no Bluetooth
stack. Malformed input raises ``FrameDecodeError``; values that are not canonical (not
ascending, unsupported by the stream's spec, reserved bits) raise ``FrameEncodeError``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from devices.errors import FrameDecodeError, FrameEncodeError
from devices.garment.checks import RATES_BY_ID, STREAMS_BY_ID, ascending, rate_for
from devices.garment.spec import (
    CAPABILITIES_RESERVED,
    PROTOCOL_VERSION,
    STREAM_SPECS,
    Capabilities,
    GarmentStream,
    SampleEncoding,
)

__all__ = ["GarmentFeatures", "StreamFeatures", "decode_features", "encode_features"]

_FEAT = "garment.features"
_FEATURES_HEAD = struct.Struct("<BBIB")
_FEATURE_ENTRY = struct.Struct("<BBHBB")


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


def _encode_stream_features(item: StreamFeatures) -> bytes:
    spec = STREAM_SPECS[item.stream]
    codes = [rate_for(item.stream, fs, _FEAT) for fs in item.rates_hz]
    default = rate_for(item.stream, item.default_rate_hz, _FEAT)
    ok = (
        item.encodings
        and set(item.encodings) <= set(spec.encodings)
        and ascending(tuple(item.encodings))
        and codes
        and ascending(item.rates_hz)
        and default in codes
        and ascending(item.full_scales)
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
    if not streams or not ascending(streams):
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
    stream = STREAMS_BY_ID.get(stream_id)
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
    if not ascending(full_scales) or not all(0 < f <= spec.max_full_scale for f in full_scales):
        raise FrameDecodeError(_FEAT, "bad_full_scale", stream.name)
    rates = tuple(c.hz for c in codes)
    item = StreamFeatures(stream, encodings, rates, RATES_BY_ID[default_id].hz, full_scales)
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
    if not ids or not ascending(ids):
        raise FrameDecodeError(_FEAT, "bad_streams", "streams once each, ascending")
    if offset != len(data):
        raise FrameDecodeError(_FEAT, "length_mismatch", f"{len(data) - offset} extra bytes")
    return GarmentFeatures(version, Capabilities(caps), boot_id, tuple(streams))
