"""The binary payload format of what the gateway publishes (docs/wire-format.md).

Role: encode a ``ClinicalFrame``, a ``ResearchFrame``, a ``ClinicalGap`` or a
``ResearchGap`` into one self-checking message (12-byte header: magic, schema version,
kind, flags, body length; the body; a CRC-32 trailer over everything before it), and
decode such a message back into the same frozen value (``decode`` and the format's fixed
parts live in ``wire_decode`` and are re-exported here). Samples travel as packed
little-endian float64 arrays, so decoded samples are bit-identical to the encoded ones
(NaN payloads and -0.0 included).

``decode`` raises ``WireFormatError`` (never another exception) for anything malformed:
wrong magic or version, unknown kind or flag bits, a length that disagrees with the
header, a CRC mismatch, unknown enum codes, bad UTF-8, trailing bytes, or values a frame
may not hold. Encoders raise ``FrameEncodeError`` for values the format cannot carry.
A research message (frame or gap) has no field for a subject id, device key or consent
record id. The code tables live in ``codes`` (re-exported here); ``Gap`` and ``GapCause``
in ``gateway.gaps`` (re-exported here).

This module must not do I/O (sockets, files, MQTT), log payloads, or read clocks.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from typing import Final

import numpy as np

from devices.errors import FrameEncodeError
from devices.frame import FloatArray, Int64Array, Quality, StreamKind, Unit
from gateway.gaps import Gap, GapCause
from gateway.router import ClinicalFrame, ClinicalGap, ResearchFrame, ResearchGap
from gateway.transport.codes import CAUSE_CODES, STREAM_CODES, TIMEBASE_CODES, UNIT_CODES
from gateway.transport.wire_decode import (
    CRC_SIZE,
    FRAME_FIXED,
    GAP,
    HEADER,
    HEADER_SIZE,
    KNOWN_QUALITY,
    MAGIC,
    SCHEMA_VERSION,
    MessageKind,
    WireFlags,
    WireFormatError,
    WireMessage,
    decode,
)

__all__ = [
    "CAUSE_CODES",
    "CRC_SIZE",
    "HEADER_SIZE",
    "MAGIC",
    "SCHEMA_VERSION",
    "STREAM_CODES",
    "TIMEBASE_CODES",
    "UNIT_CODES",
    "Gap",
    "GapCause",
    "MessageKind",
    "WireFlags",
    "WireFormatError",
    "WireMessage",
    "decode",
    "encode_clinical",
    "encode_clinical_gap",
    "encode_gap",
    "encode_research",
    "encode_research_gap",
]

_U8: Final = struct.Struct("<B")
_U32: Final = struct.Struct("<I")
_U64: Final = struct.Struct("<Q")
_F64: Final = struct.Struct("<d")
_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1
_LE_F8: Final = np.dtype("<f8")
_SEQUENCE_FLAG: Final = int(WireFlags.SEQUENCE)  # ints: IntFlag arithmetic is slow
_OFFSETS_FLAG: Final = int(WireFlags.OFFSETS)


# ---------------------------------------------------------------- encoding


def _frame_msg(kind: MessageKind, prefix: bytes, fields: _FrameFields) -> bytes:
    flags, frame_part = _encode_frame_part(kind, fields)
    return _seal(kind, flags, prefix + frame_part)


def _seal(kind: MessageKind, flags: int, body: bytes) -> bytes:
    head = HEADER.pack(MAGIC, SCHEMA_VERSION, kind, flags, len(body)) + body
    return head + _U32.pack(zlib.crc32(head))


def _short_str(kind: MessageKind, text: str, what: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 255:
        raise FrameEncodeError(f"wire.{kind.name.lower()}", f"{what} longer than 255 bytes")
    return _U8.pack(len(raw)) + raw


@dataclass(frozen=True, slots=True)
class _FrameFields:
    stream: StreamKind
    time_ns: int
    samples: FloatArray
    unit: Unit
    fs_hz: float | None
    offsets_ns: Int64Array | None
    sequence: int | None
    quality: Quality
    channels: tuple[str, ...]


def _check_frame(kind: MessageKind, f: _FrameFields) -> int:
    """Raise ``FrameEncodeError`` unless the format can carry ``f``; return ``columns``."""

    def fail(reason: str) -> FrameEncodeError:
        return FrameEncodeError(f"wire.{kind.name.lower()}", reason)

    samples = f.samples
    if samples.ndim == 1:
        columns = 0
    elif samples.ndim == 2 and 1 <= samples.shape[1] <= 255:
        columns = int(samples.shape[1])
    else:
        raise fail("samples must be (n,) or (n, c) with 1 <= c <= 255")
    if samples.shape[0] > 0xFFFFFFFF or not _I64_MIN <= f.time_ns <= _I64_MAX:
        raise fail("sample count or time_ns out of range")
    if (f.fs_hz is None) == (f.offsets_ns is None):
        raise fail("exactly one of fs_hz and offsets_ns")
    if f.fs_hz is not None and not (math.isfinite(f.fs_hz) and f.fs_hz > 0):
        raise fail("fs_hz must be finite and positive")
    if f.offsets_ns is not None and f.offsets_ns.shape != (samples.shape[0],):
        raise fail("offsets_ns must have one entry per sample")
    if f.sequence is not None and not 0 <= f.sequence <= 0xFFFFFFFFFFFFFFFF:
        raise fail("sequence out of u64 range")
    if len(f.channels) > 255 or int(f.quality) & ~KNOWN_QUALITY:
        raise fail("too many channels or unknown quality bits")
    return columns


def _encode_frame_part(kind: MessageKind, f: _FrameFields) -> tuple[int, bytes]:
    columns = _check_frame(kind, f)
    n = int(f.samples.shape[0])
    flags = 0
    parts = [
        FRAME_FIXED.pack(
            STREAM_CODES[f.stream],
            UNIT_CODES[f.unit],
            int(f.quality),
            columns,
            len(f.channels),
            f.time_ns,
            n,
        )
    ]
    if f.sequence is not None:
        flags |= _SEQUENCE_FLAG
        parts.append(_U64.pack(f.sequence))
    if f.fs_hz is not None:
        parts.append(_F64.pack(f.fs_hz))
    if f.channels:
        parts.extend([_short_str(kind, ch, "channel name") for ch in f.channels])
    samples = f.samples
    if samples.dtype != _LE_F8 or not samples.flags.c_contiguous:
        samples = np.ascontiguousarray(samples, dtype=_LE_F8)
    parts.append(samples.tobytes())
    if f.offsets_ns is not None:
        flags |= _OFFSETS_FLAG
        parts.append(np.ascontiguousarray(f.offsets_ns, dtype="<i8").tobytes())
    return flags, b"".join(parts)


def encode_clinical(value: ClinicalFrame) -> bytes:
    """One clinical message: subject id, consent record id, timebase, device key, frame."""
    fr = value.frame
    prefix = (
        value.subject_id.bytes
        + value.consent_record_id.bytes
        + _U8.pack(TIMEBASE_CODES[fr.timebase])
        + _short_str(MessageKind.CLINICAL, fr.device_key, "device key")
    )
    fields = _FrameFields(
        fr.stream,
        fr.time_ns,
        fr.samples,
        fr.unit,
        fr.fs_hz,
        fr.offsets_ns,
        fr.sequence,
        fr.quality,
        fr.channels,
    )
    return _frame_msg(MessageKind.CLINICAL, prefix, fields)


def encode_research(value: ResearchFrame) -> bytes:
    """One research message: pseudonym and frame. No subject id or device key field."""
    prefix = _short_str(MessageKind.RESEARCH, value.pseudonym, "pseudonym")
    fields = _FrameFields(
        value.stream,
        value.time_ns,
        value.samples,
        value.unit,
        value.fs_hz,
        value.offsets_ns,
        value.sequence,
        value.quality,
        value.channels,
    )
    return _frame_msg(MessageKind.RESEARCH, prefix, fields)


def _gap_part(kind: MessageKind, gap: Gap) -> bytes:
    if not (_I64_MIN <= gap.start_ns <= gap.end_ns <= _I64_MAX):
        raise FrameEncodeError(f"wire.{kind.name.lower()}", "need start_ns <= end_ns in int64")
    if not 0 <= gap.samples_missing <= 0xFFFFFFFFFFFFFFFF:
        raise FrameEncodeError(f"wire.{kind.name.lower()}", "samples_missing out of u64 range")
    code = STREAM_CODES[gap.stream], CAUSE_CODES[gap.cause]
    return GAP.pack(*code, gap.start_ns, gap.end_ns, gap.samples_missing)


def encode_clinical_gap(value: ClinicalGap) -> bytes:
    """One clinical gap message: subject id, consent record id, device key, gap."""
    kind = MessageKind.CLINICAL_GAP
    prefix = (
        value.subject_id.bytes
        + value.consent_record_id.bytes
        + _short_str(kind, value.device_key, "device key")
    )
    return _seal(kind, 0, prefix + _gap_part(kind, value.gap))


def encode_research_gap(value: ResearchGap) -> bytes:
    """One research gap message: pseudonym and (shifted) gap. No subject or device field."""
    kind = MessageKind.RESEARCH_GAP
    return _seal(
        kind, 0, _short_str(kind, value.pseudonym, "pseudonym") + _gap_part(kind, value.gap)
    )


def encode_gap(value: ClinicalGap | ResearchGap) -> bytes:
    """``encode_clinical_gap`` or ``encode_research_gap``, by the value's type."""
    if isinstance(value, ClinicalGap):
        return encode_clinical_gap(value)
    return encode_research_gap(value)
