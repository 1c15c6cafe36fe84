"""The binary payload format of what the gateway publishes (docs/wire-format.md).

Role: encode a ``ClinicalFrame``, a ``ResearchFrame``, a ``ClinicalGap`` or a
``ResearchGap`` into one self-checking message (12-byte header: magic, schema version,
kind, flags, body length; the body; a CRC-32 trailer over everything before it), and
decode such a message back into the same frozen value. Samples travel as packed
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

import enum
import math
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from uuid import UUID

import numpy as np
import numpy.typing as npt

from devices.errors import BiogwError, FrameEncodeError
from devices.frame import FloatArray, Frame, Int64Array, Quality, StreamKind, Unit
from gateway.gaps import Gap, GapCause
from gateway.router import ClinicalFrame, ClinicalGap, ResearchFrame, ResearchGap
from gateway.transport.codes import (
    CAUSE_CODES,
    CAUSES,
    STREAM_CODES,
    STREAMS,
    TIMEBASE_CODES,
    TIMEBASES,
    UNIT_CODES,
    UNITS,
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

MAGIC: Final = b"BGWM"
SCHEMA_VERSION: Final = 1
HEADER_SIZE: Final = 12
CRC_SIZE: Final = 4
_HEADER: Final = struct.Struct("<4sBBHI")
_FRAME_FIXED: Final = struct.Struct("<BBBBBqI")  # stream unit quality columns nch time n
_GAP: Final = struct.Struct("<BBqqQ")
_U8: Final = struct.Struct("<B")
_U32: Final = struct.Struct("<I")
_U64: Final = struct.Struct("<Q")
_F64: Final = struct.Struct("<d")
_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1
_E = TypeVar("_E")


class WireFormatError(BiogwError):
    """A payload is not a valid wire message. ``reason`` is a short tag (``"short"``,
    ``"crc"``, ...); ``detail`` says more. The payload itself is never kept."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"wire: {reason} ({detail})" if detail else f"wire: {reason}")


class MessageKind(enum.IntEnum):
    CLINICAL = 1
    RESEARCH = 2
    CLINICAL_GAP = 3
    RESEARCH_GAP = 4


_GAP_KINDS: Final = frozenset({MessageKind.CLINICAL_GAP, MessageKind.RESEARCH_GAP})


class WireFlags(enum.IntFlag):
    """Header flags (frame kinds only; gap messages have flags 0)."""

    NONE = 0
    OFFSETS = 1
    """Irregular stream: per-sample ``offsets_ns`` follow the samples; no ``fs_hz``."""
    SEQUENCE = 2
    """A u64 device sequence number is present."""


_LE_F8: Final = np.dtype("<f8")
_SEQUENCE_FLAG: Final = int(WireFlags.SEQUENCE)  # ints: IntFlag arithmetic is slow
_OFFSETS_FLAG: Final = int(WireFlags.OFFSETS)
_KNOWN_FLAGS: Final = int(WireFlags.OFFSETS | WireFlags.SEQUENCE)
_KNOWN_QUALITY: Final = int(
    Quality.CONTACT_SUPPORTED
    | Quality.NO_CONTACT
    | Quality.LEAD_OFF
    | Quality.SATURATED
    | Quality.DEVICE_ERROR
)


WireMessage = ClinicalFrame | ResearchFrame | ClinicalGap | ResearchGap
"""What ``decode`` returns; the header's kind selects the type."""

# ---------------------------------------------------------------- encoding


def _frame_msg(kind: MessageKind, prefix: bytes, fields: _FrameFields) -> bytes:
    flags, frame_part = _encode_frame_part(kind, fields)
    return _seal(kind, flags, prefix + frame_part)


def _seal(kind: MessageKind, flags: int, body: bytes) -> bytes:
    head = _HEADER.pack(MAGIC, SCHEMA_VERSION, kind, flags, len(body)) + body
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
    if len(f.channels) > 255 or int(f.quality) & ~_KNOWN_QUALITY:
        raise fail("too many channels or unknown quality bits")
    return columns


def _encode_frame_part(kind: MessageKind, f: _FrameFields) -> tuple[int, bytes]:
    columns = _check_frame(kind, f)
    n = int(f.samples.shape[0])
    flags = 0
    parts = [
        _FRAME_FIXED.pack(
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
    return _GAP.pack(*code, gap.start_ns, gap.end_ns, gap.samples_missing)


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


# ---------------------------------------------------------------- decoding


class _Reader:
    """A bounds-checked cursor over a body: every read checks the remaining length."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def take(self, n: int, what: str) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise WireFormatError("short", f"body ends inside {what}")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def unpack(self, st: struct.Struct, what: str) -> tuple[Any, ...]:
        return st.unpack(self.take(st.size, what))

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def text(self, what: str) -> str:
        raw = self.take(self.u8(what), what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WireFormatError("bad_utf8", what) from exc

    def array(self, count: int, dtype: str, what: str) -> npt.NDArray[Any]:
        """``count`` 8-byte little-endian items, as a native read-only array (a copy)."""
        raw = self.take(count * 8, what)
        arr = np.frombuffer(raw, dtype=dtype).astype(dtype[1:])
        arr.flags.writeable = False
        return arr

    def finish(self) -> None:
        if self._pos != len(self._data):
            raise WireFormatError("trailing", f"{len(self._data) - self._pos} bytes after body")


def _code(table: dict[int, _E], code: int, what: str) -> _E:
    try:
        return table[code]
    except KeyError:
        raise WireFormatError(f"unknown_{what}", f"code {code}") from None


def _decode_frame_part(r: _Reader, flags: int) -> _FrameFields:
    stream_c, unit_c, quality, columns, n_ch, time_ns, n = r.unpack(_FRAME_FIXED, "frame")
    stream = _code(STREAMS, stream_c, "stream")
    unit = _code(UNITS, unit_c, "unit")
    if quality & ~_KNOWN_QUALITY:
        raise WireFormatError("bad_quality", f"bits {quality:#x}")
    sequence: int | None = None
    if flags & WireFlags.SEQUENCE:
        sequence = int(r.unpack(_U64, "sequence")[0])
    fs_hz: float | None = None
    if not flags & WireFlags.OFFSETS:
        fs_hz = float(r.unpack(_F64, "fs_hz")[0])
        if not (math.isfinite(fs_hz) and fs_hz > 0):
            raise WireFormatError("bad_rate", "fs_hz must be finite and positive")
    channels = tuple(r.text("channel name") for _ in range(n_ch))
    samples: FloatArray = r.array(n * max(columns, 1), "<f8", "samples")
    if columns:
        samples = samples.reshape(n, columns)
    offsets: Int64Array | None = None
    if flags & WireFlags.OFFSETS:
        offsets = r.array(n, "<i8", "offsets")
    r.finish()
    return _FrameFields(
        stream, time_ns, samples, unit, fs_hz, offsets, sequence, Quality(quality), channels
    )


def _decode_clinical(r: _Reader, flags: int) -> ClinicalFrame:
    subject_id = UUID(bytes=r.take(16, "subject id"))
    record_id = UUID(bytes=r.take(16, "consent record id"))
    timebase = _code(TIMEBASES, r.u8("timebase"), "timebase")
    device_key = r.text("device key")
    f = _decode_frame_part(r, flags)
    try:
        frame = Frame(
            device_key=device_key,
            stream=f.stream,
            time_ns=f.time_ns,
            timebase=timebase,
            samples=f.samples,
            unit=f.unit,
            fs_hz=f.fs_hz,
            offsets_ns=f.offsets_ns,
            sequence=f.sequence,
            quality=f.quality,
            channels=f.channels,
        )
    except ValueError as exc:  # Frame's own invariants; the message is ours, not data
        raise WireFormatError("bad_frame", str(exc)) from exc
    return ClinicalFrame(subject_id=subject_id, frame=frame, consent_record_id=record_id)


def _decode_research(r: _Reader, flags: int) -> ResearchFrame:
    pseudonym = r.text("pseudonym")
    f = _decode_frame_part(r, flags)
    return ResearchFrame(
        pseudonym=pseudonym,
        stream=f.stream,
        time_ns=f.time_ns,
        samples=f.samples,
        unit=f.unit,
        fs_hz=f.fs_hz,
        offsets_ns=f.offsets_ns,
        sequence=f.sequence,
        quality=f.quality,
        channels=f.channels,
    )


def _decode_gap_part(r: _Reader) -> Gap:
    stream_c, cause_c, start_ns, end_ns, missing = r.unpack(_GAP, "gap")
    r.finish()
    if start_ns > end_ns:
        raise WireFormatError("bad_gap", "start_ns after end_ns")
    stream = _code(STREAMS, stream_c, "stream")
    cause = _code(CAUSES, cause_c, "cause")
    return Gap(stream, start_ns, end_ns, missing, cause)


def _decode_clinical_gap(r: _Reader) -> ClinicalGap:
    subject_id = UUID(bytes=r.take(16, "subject id"))
    record_id = UUID(bytes=r.take(16, "consent record id"))
    device_key = r.text("device key")
    return ClinicalGap(subject_id, device_key, _decode_gap_part(r), record_id)


def _decode_research_gap(r: _Reader) -> ResearchGap:
    pseudonym = r.text("pseudonym")
    return ResearchGap(pseudonym, _decode_gap_part(r))


def decode(data: bytes) -> WireMessage:
    """Check and decode one message; ``WireFormatError`` for anything malformed."""
    if len(data) < HEADER_SIZE + CRC_SIZE:
        raise WireFormatError("short", f"{len(data)} bytes, need at least 16")
    magic, version, kind, flags, body_len = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise WireFormatError("bad_magic")
    if version != SCHEMA_VERSION:
        raise WireFormatError("bad_version", f"version {version}")
    if body_len != len(data) - HEADER_SIZE - CRC_SIZE:
        raise WireFormatError("bad_length", f"header says {body_len}, got {len(data)} total")
    end = HEADER_SIZE + body_len
    if zlib.crc32(memoryview(data)[:end]) != _U32.unpack_from(data, end)[0]:
        raise WireFormatError("crc")
    r = _Reader(bytes(data[HEADER_SIZE:end]))
    if kind in _GAP_KINDS:
        if flags:
            raise WireFormatError("bad_flags", f"{flags:#x} on a gap")
        if kind == MessageKind.CLINICAL_GAP:
            return _decode_clinical_gap(r)
        return _decode_research_gap(r)
    if flags & ~_KNOWN_FLAGS:
        raise WireFormatError("bad_flags", f"{flags:#x}")
    if kind == MessageKind.CLINICAL:
        return _decode_clinical(r, flags)
    if kind == MessageKind.RESEARCH:
        return _decode_research(r, flags)
    raise WireFormatError("unknown_kind", f"kind {kind}")
