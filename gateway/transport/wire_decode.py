"""Decoding of the MQTT payload format (docs/wire-format.md): bytes → a frozen message.

Role: hold the format's fixed parts that encoder and decoder share (magic, version,
header layout, ``MessageKind``, ``WireFlags``, ``WireFormatError``) and ``decode``, which
``gateway.transport.wire`` re-exports. ``decode`` is on the ingester's hot path (one call
per MQTT message), so a well-formed frame message takes a fast path: a few precompiled
``struct`` reads at absolute offsets, code tables and ``Quality`` looked up in
precomputed tables, subject and consent record ids from a small bounded cache, samples as
read-only numpy views of an immutable slice of the payload, and the ``Frame`` built by a
trusted constructor (``_trusted_frame``) that skips the re-check of invariants the fast
path has just verified. Whenever the fast path meets anything it does not accept, it
hands the message to the reference reader (``_Reader``, the original bounds-checked
cursor), which raises the same ``WireFormatError`` reason and detail as always; gap
messages always take the reference reader (they are rare).

This module must not do I/O (sockets, files, MQTT), log payloads, or read clocks.
"""

from __future__ import annotations

import enum
import math
import struct
import sys
import zlib
from functools import lru_cache
from typing import Any, Final, TypeVar
from uuid import UUID

import numpy as np
import numpy.typing as npt

from devices.errors import BiogwError
from devices.frame import FloatArray, Frame, Int64Array, Quality, StreamKind, Timebase, Unit
from gateway.gaps import Gap
from gateway.router import ClinicalFrame, ClinicalGap, ResearchFrame, ResearchGap
from gateway.transport.codes import CAUSES, STREAMS, TIMEBASES, UNITS

__all__ = [
    "CRC_SIZE",
    "FRAME_FIXED",
    "GAP",
    "HEADER",
    "HEADER_SIZE",
    "KNOWN_QUALITY",
    "MAGIC",
    "SCHEMA_VERSION",
    "MessageKind",
    "WireFlags",
    "WireFormatError",
    "WireMessage",
    "decode",
]

MAGIC: Final = b"BGWM"
SCHEMA_VERSION: Final = 1
HEADER_SIZE: Final = 12
CRC_SIZE: Final = 4
HEADER: Final = struct.Struct("<4sBBHI")
FRAME_FIXED: Final = struct.Struct("<BBBBBqI")  # stream unit quality columns nch time n
GAP: Final = struct.Struct("<BBqqQ")
_SEQ_RATE: Final = struct.Struct("<BBBBBqIQd")  # FRAME_FIXED, sequence, fs_hz: the hot case
_CLINICAL_IDS: Final = struct.Struct("<16s16sBB")  # subject, record, timebase, key length
_FIXED_SIZE: Final = FRAME_FIXED.size
_SEQ_RATE_SIZE: Final = _SEQ_RATE.size
_IDS_END: Final = HEADER_SIZE + _CLINICAL_IDS.size
"""Where a clinical message's device key starts."""
_CRC_RESIDUE: Final = 0x2144DF1C
"""``zlib.crc32`` of any message whose trailer is the CRC-32 of what precedes it. For a
given header and body exactly one 4-byte trailer gives this value (appending 4 bytes maps
the CRC register one-to-one), so comparing with it is the trailer check without slicing."""
_U64: Final = struct.Struct("<Q")
_F64: Final = struct.Struct("<d")
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


class WireFlags(enum.IntFlag):
    """Header flags (frame kinds only; gap messages have flags 0)."""

    NONE = 0
    OFFSETS = 1
    """Irregular stream: per-sample ``offsets_ns`` follow the samples; no ``fs_hz``."""
    SEQUENCE = 2
    """A u64 device sequence number is present."""


WireMessage = ClinicalFrame | ResearchFrame | ClinicalGap | ResearchGap
"""What ``decode`` returns; the header's kind selects the type."""

# Plain ints: IntFlag/IntEnum arithmetic and comparison cost ~0.5 µs each on this path.
_CLINICAL: Final = int(MessageKind.CLINICAL)
_RESEARCH: Final = int(MessageKind.RESEARCH)
_CLINICAL_GAP: Final = int(MessageKind.CLINICAL_GAP)
_RESEARCH_GAP: Final = int(MessageKind.RESEARCH_GAP)
_OFFSETS: Final = int(WireFlags.OFFSETS)
_SEQUENCE: Final = int(WireFlags.SEQUENCE)
_KNOWN_FLAGS: Final = _OFFSETS | _SEQUENCE
KNOWN_QUALITY: Final = int(
    Quality.CONTACT_SUPPORTED
    | Quality.NO_CONTACT
    | Quality.LEAD_OFF
    | Quality.SATURATED
    | Quality.DEVICE_ERROR
)
_QUALITIES: Final = tuple(Quality(q) for q in range(KNOWN_QUALITY + 1))
"""``Quality(q)`` for every valid quality byte (the same, cached, flag objects)."""
_FAST: Final = sys.byteorder == "little"
"""The fast path views the payload's little-endian arrays in place: native order only."""
_F8: Final = np.dtype(np.float64)
_I8: Final = np.dtype(np.int64)
_INF: Final = math.inf

# ---------------------------------------------------------------- the reference reader


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


@lru_cache(maxsize=4096)
def _uuid(raw: bytes) -> UUID:
    """``UUID(bytes=raw)``, cached: subject and consent record ids repeat message after
    message, and a UUID is immutable, so sharing one is safe."""
    return UUID(bytes=raw)


_Fields = tuple[
    StreamKind, int, FloatArray, Unit, float | None, Int64Array | None, int | None, Quality,
    tuple[str, ...],
]  # fmt: skip
"""A frame section: stream, time_ns, samples, unit, fs_hz, offsets_ns, sequence, quality,
channels (the order of ``ResearchFrame``'s fields after the pseudonym)."""


def _read_frame_part(r: _Reader, flags: int) -> _Fields:
    stream_c, unit_c, quality, columns, n_ch, time_ns, n = r.unpack(FRAME_FIXED, "frame")
    stream = _code(STREAMS, stream_c, "stream")
    unit = _code(UNITS, unit_c, "unit")
    if quality & ~KNOWN_QUALITY:
        raise WireFormatError("bad_quality", f"bits {quality:#x}")
    sequence: int | None = None
    if flags & _SEQUENCE:
        sequence = int(r.unpack(_U64, "sequence")[0])
    fs_hz: float | None = None
    if not flags & _OFFSETS:
        fs_hz = float(r.unpack(_F64, "fs_hz")[0])
        if not (math.isfinite(fs_hz) and fs_hz > 0):
            raise WireFormatError("bad_rate", "fs_hz must be finite and positive")
    channels = tuple(r.text("channel name") for _ in range(n_ch))
    samples: FloatArray = r.array(n * max(columns, 1), "<f8", "samples")
    if columns:
        samples = samples.reshape(n, columns)
    offsets: Int64Array | None = None
    if flags & _OFFSETS:
        offsets = r.array(n, "<i8", "offsets")
    r.finish()
    return stream, time_ns, samples, unit, fs_hz, offsets, sequence, Quality(quality), channels


def _read_clinical(r: _Reader, flags: int) -> ClinicalFrame:
    subject_id = _uuid(r.take(16, "subject id"))
    record_id = _uuid(r.take(16, "consent record id"))
    timebase = _code(TIMEBASES, r.u8("timebase"), "timebase")
    device_key = r.text("device key")
    f = _read_frame_part(r, flags)
    stream, time_ns, samples, unit, fs_hz, offsets, sequence, quality, channels = f
    try:
        frame = Frame(
            device_key=device_key,
            stream=stream,
            time_ns=time_ns,
            timebase=timebase,
            samples=samples,
            unit=unit,
            fs_hz=fs_hz,
            offsets_ns=offsets,
            sequence=sequence,
            quality=quality,
            channels=channels,
        )
    except ValueError as exc:  # Frame's own invariants; the message is ours, not data
        raise WireFormatError("bad_frame", str(exc)) from exc
    return ClinicalFrame(subject_id=subject_id, frame=frame, consent_record_id=record_id)


def _read_research(r: _Reader, flags: int) -> ResearchFrame:
    pseudonym = r.text("pseudonym")
    return ResearchFrame(pseudonym, *_read_frame_part(r, flags))


def _read_gap_part(r: _Reader) -> Gap:
    stream_c, cause_c, start_ns, end_ns, missing = r.unpack(GAP, "gap")
    r.finish()
    if start_ns > end_ns:
        raise WireFormatError("bad_gap", "start_ns after end_ns")
    stream = _code(STREAMS, stream_c, "stream")
    cause = _code(CAUSES, cause_c, "cause")
    return Gap(stream, start_ns, end_ns, missing, cause)


def _read_clinical_gap(r: _Reader) -> ClinicalGap:
    subject_id = _uuid(r.take(16, "subject id"))
    record_id = _uuid(r.take(16, "consent record id"))
    device_key = r.text("device key")
    return ClinicalGap(subject_id, device_key, _read_gap_part(r), record_id)


def _read_research_gap(r: _Reader) -> ResearchGap:
    pseudonym = r.text("pseudonym")
    return ResearchGap(pseudonym, _read_gap_part(r))


# ---------------------------------------------------------------- the fast path

_FRAME_FIELDS: Final = (
    "device_key", "stream", "time_ns", "timebase", "samples", "unit", "fs_hz",
    "offsets_ns", "sequence", "quality", "channels",
)  # fmt: skip
"""``Frame``'s fields in order; a test holds this equal to ``dataclasses.fields(Frame)``."""
_SET_FRAME: Final = tuple(Frame.__dict__[name].__set__ for name in _FRAME_FIELDS)
_RESEARCH_FIELDS: Final = (
    "pseudonym", "stream", "time_ns", "samples", "unit", "fs_hz", "offsets_ns", "sequence",
    "quality", "channels",
)  # fmt: skip
_SET_RESEARCH: Final = tuple(ResearchFrame.__dict__[name].__set__ for name in _RESEARCH_FIELDS)
_CLINICAL_FIELDS: Final = ("subject_id", "frame", "consent_record_id")
_SET_CLINICAL: Final = tuple(ClinicalFrame.__dict__[name].__set__ for name in _CLINICAL_FIELDS)
_new: Final = object.__new__


def _trusted_frame(device_key: str, timebase: Timebase, f: _Fields) -> Frame:
    """The ``Frame`` that ``Frame(...)`` would build from these values, without running
    ``Frame.__post_init__`` again. Only for the fast path, which has already verified
    every invariant that method checks: exactly one of ``fs_hz`` (finite, > 0) and
    ``offsets_ns``; samples of shape ``(n,)`` or ``(n, c)``; ``n`` offsets; both arrays
    read-only (so ``_readonly`` would return them unchanged). Slots are set through the
    class's own slot descriptors, as the dataclass ``__init__`` does."""
    stream, time_ns, samples, unit, fs_hz, offsets, sequence, quality, channels = f
    s_key, s_stream, s_time, s_tb, s_samples, s_unit, s_fs, s_off, s_seq, s_q, s_ch = _SET_FRAME
    frame: Frame = _new(Frame)
    s_key(frame, device_key)
    s_stream(frame, stream)
    s_time(frame, time_ns)
    s_tb(frame, timebase)
    s_samples(frame, samples)
    s_unit(frame, unit)
    s_fs(frame, fs_hz)
    s_off(frame, offsets)
    s_seq(frame, sequence)
    s_q(frame, quality)
    s_ch(frame, channels)
    return frame


def _research_frame(pseudonym: str, f: _Fields) -> ResearchFrame:
    """``ResearchFrame(pseudonym, *f)`` (a dataclass with no ``__post_init__``), slot by
    slot like its ``__init__``, without the keyword-argument call."""
    stream, time_ns, samples, unit, fs_hz, offsets, sequence, quality, channels = f
    s_ps, s_stream, s_time, s_samples, s_unit, s_fs, s_off, s_seq, s_q, s_ch = _SET_RESEARCH
    value: ResearchFrame = _new(ResearchFrame)
    s_ps(value, pseudonym)
    s_stream(value, stream)
    s_time(value, time_ns)
    s_samples(value, samples)
    s_unit(value, unit)
    s_fs(value, fs_hz)
    s_off(value, offsets)
    s_seq(value, sequence)
    s_q(value, quality)
    s_ch(value, channels)
    return value


def _fast_frame_part(data: bytes, pos: int, end: int, flags: int) -> _Fields | None:
    """The frame section at ``data[pos:end]``, or ``None`` if anything is off (the
    reference reader then says what). ``data`` is immutable ``bytes``: arrays are views
    of slices of it, read-only by construction."""
    if flags == _SEQUENCE:  # the hot case: a regular stream with a sequence number
        if pos + _SEQ_RATE_SIZE > end:
            return None
        stream_c, unit_c, quality, columns, n_ch, time_ns, n, sequence, fs_hz = (
            _SEQ_RATE.unpack_from(data, pos)
        )
        pos += _SEQ_RATE_SIZE
    else:
        if pos + _FIXED_SIZE > end:
            return None
        stream_c, unit_c, quality, columns, n_ch, time_ns, n = FRAME_FIXED.unpack_from(data, pos)
        pos += _FIXED_SIZE
        sequence = fs_hz = None
        if flags & _SEQUENCE:
            if pos + 8 > end:
                return None
            sequence = _U64.unpack_from(data, pos)[0]
            pos += 8
        if not flags & _OFFSETS:
            if pos + 8 > end:
                return None
            fs_hz = _F64.unpack_from(data, pos)[0]
            pos += 8
    stream = STREAMS.get(stream_c)
    unit = UNITS.get(unit_c)
    if stream is None or unit is None or quality & ~KNOWN_QUALITY:
        return None
    if fs_hz is not None and not 0.0 < fs_hz < _INF:  # False for NaN too
        return None
    channels: tuple[str, ...] = ()
    if n_ch:
        names = []
        for _ in range(n_ch):
            if pos >= end:
                return None
            stop = pos + 1 + data[pos]
            if stop > end:
                return None
            try:
                names.append(data[pos + 1 : stop].decode("utf-8"))
            except UnicodeDecodeError:
                return None
            pos = stop
        channels = tuple(names)
    stop = pos + 8 * n * (columns or 1)
    if stop > end:
        return None
    samples: FloatArray = np.frombuffer(data[pos:stop], _F8)
    if columns:
        samples = samples.reshape(n, columns)
    pos = stop
    offsets: Int64Array | None = None
    if flags & _OFFSETS:
        stop = pos + 8 * n
        if stop > end:
            return None
        offsets = np.frombuffer(data[pos:stop], _I8)
        pos = stop
    if pos != end:
        return None
    return stream, time_ns, samples, unit, fs_hz, offsets, sequence, _QUALITIES[quality], channels


def _fast_clinical(data: bytes, end: int, flags: int) -> ClinicalFrame | None:
    if end < _IDS_END:
        return None
    subject_raw, record_raw, timebase_c, key_len = _CLINICAL_IDS.unpack_from(data, HEADER_SIZE)
    timebase = TIMEBASES.get(timebase_c)
    pos = _IDS_END + key_len
    if timebase is None or pos > end:
        return None
    try:
        device_key = data[_IDS_END:pos].decode("utf-8")
    except UnicodeDecodeError:
        return None
    f = _fast_frame_part(data, pos, end, flags)
    if f is None:
        return None
    s_subject, s_frame, s_record = _SET_CLINICAL  # ClinicalFrame(...), slot by slot
    value: ClinicalFrame = _new(ClinicalFrame)
    s_subject(value, _uuid(subject_raw))
    s_frame(value, _trusted_frame(device_key, timebase, f))
    s_record(value, _uuid(record_raw))
    return value


def _fast_research(data: bytes, end: int, flags: int) -> ResearchFrame | None:
    pos = HEADER_SIZE + 1 + data[HEADER_SIZE]  # the CRC check left >= 16 bytes
    if pos > end:
        return None
    try:
        pseudonym = data[HEADER_SIZE + 1 : pos].decode("utf-8")
    except UnicodeDecodeError:
        return None
    f = _fast_frame_part(data, pos, end, flags)
    return None if f is None else _research_frame(pseudonym, f)


# ---------------------------------------------------------------- decode


def decode(data: bytes) -> WireMessage:
    """Check and decode one message; ``WireFormatError`` for anything malformed."""
    if len(data) < HEADER_SIZE + CRC_SIZE:
        raise WireFormatError("short", f"{len(data)} bytes, need at least 16")
    magic, version, kind, flags, body_len = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise WireFormatError("bad_magic")
    if version != SCHEMA_VERSION:
        raise WireFormatError("bad_version", f"version {version}")
    if body_len != len(data) - HEADER_SIZE - CRC_SIZE:
        raise WireFormatError("bad_length", f"header says {body_len}, got {len(data)} total")
    end = HEADER_SIZE + body_len
    if zlib.crc32(data) != _CRC_RESIDUE:  # the same test as crc32(data[:end]) == trailer
        raise WireFormatError("crc")
    if kind in (_CLINICAL_GAP, _RESEARCH_GAP):
        if flags:
            raise WireFormatError("bad_flags", f"{flags:#x} on a gap")
        r = _Reader(bytes(data[HEADER_SIZE:end]))
        return _read_clinical_gap(r) if kind == _CLINICAL_GAP else _read_research_gap(r)
    if flags & ~_KNOWN_FLAGS:
        raise WireFormatError("bad_flags", f"{flags:#x}")
    raw = data if type(data) is bytes else bytes(data)  # views need immutable bytes
    if kind == _CLINICAL:
        clinical = _fast_clinical(raw, end, flags) if _FAST else None
        if clinical is None:  # malformed (or not little-endian): the reference reader
            clinical = _read_clinical(_Reader(raw[HEADER_SIZE:end]), flags)
        return clinical
    if kind == _RESEARCH:
        research = _fast_research(raw, end, flags) if _FAST else None
        if research is None:
            research = _read_research(_Reader(raw[HEADER_SIZE:end]), flags)
        return research
    raise WireFormatError("unknown_kind", f"kind {kind}")
