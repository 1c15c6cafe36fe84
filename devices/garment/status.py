"""The garment status value: device time, status flags, streaming and faulty streams.

``GarmentStatus`` is what the status characteristic carries on read and notify; the
simulator encodes it, the gateway decodes it. Byte layout: ``docs/garment-profile.md``.
Pure: no I/O, no Bluetooth stack. Malformed input raises ``FrameDecodeError``;
inconsistent flags, reserved bits or out-of-range times raise ``FrameEncodeError``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from devices.errors import FrameDecodeError, FrameEncodeError
from devices.garment.checks import sorted_unique
from devices.garment.spec import (
    MAX_DEVICE_TIME_US,
    PROTOCOL_VERSION,
    STATUS_FLAGS_RESERVED,
    STREAM_MASK_RESERVED,
    GarmentStream,
    StatusFlags,
)

__all__ = ["GarmentStatus", "decode_status", "encode_status"]

_STAT = "garment.status"
_STATUS = struct.Struct("<BHBBQ")


@dataclass(frozen=True, slots=True)
class GarmentStatus:
    device_time_us: int
    flags: StatusFlags = StatusFlags.NONE
    streaming: tuple[GarmentStream, ...] = ()
    faults: tuple[GarmentStream, ...] = ()
    """Streams whose sensor reports a fault."""


def _mask(streams: Iterable[GarmentStream]) -> int:
    return sum(1 << int(s) for s in set(streams))


def _unmask(mask: int) -> tuple[GarmentStream, ...]:
    return tuple(s for s in GarmentStream if mask >> int(s) & 1)


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
        sorted_unique(group, _STAT)
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
