"""Ingest rows: frames as PostgreSQL binary COPY data, gaps and dead letters as arrays.

Role: the pure encoding half of the writer. ``frame_copy`` turns clinical or research
frames into one complete ``COPY ... FROM STDIN (FORMAT BINARY)`` stream (header, tuples,
trailer) for the columns ``frame_columns(path)`` names, built with ``struct`` and numpy
(no per-sample Python work):

* ``samples`` (bytea) is exactly the frame's samples as packed little-endian float64,
  row-major: the bytes the wire carried, so a reader gets them back bit for bit;
* ``ts`` is ``time_ns`` truncated to microseconds (``partitions.ts_of_ns``), as the tables'
  CHECK demands; ``n_samples`` is the number of rows (``len(samples)``);
* ``offsets_ns`` (bigint[]) and ``channels`` (text[]) in PostgreSQL's binary array format;
  ``fs_hz``, ``offsets_ns`` and ``sequence`` are NULL when the frame has none.

``gap_params`` and ``dead_letter_params`` give column arrays for an ``unnest`` INSERT.
Values are assumed validated (``gateway.ingest.validate``): UUID device keys, bigint
sequence numbers, no NUL in text, non-negative times.

Must not: do I/O, log, or keep what it encodes.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final
from uuid import UUID

import numpy as np

from devices.frame import Frame, StreamKind, Unit
from gateway.ingest.validate import DeadLetter, IngestPath
from gateway.router import ClinicalFrame, ClinicalGap, ResearchFrame, ResearchGap
from gateway.store.partitions import ts_of_ns

__all__ = [
    "COPY_HEADER",
    "COPY_TRAILER",
    "DEAD_LETTER_COLUMNS",
    "dead_letter_params",
    "frame_columns",
    "frame_copy",
    "gap_columns",
    "gap_params",
    "ts_micros",
]

COPY_HEADER: Final = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER: Final = struct.pack(">h", -1)
_PG_EPOCH_US: Final = 946_684_800_000_000
"""2000-01-01 (PostgreSQL's timestamp epoch) in µs since 1970."""
_INT8_OID: Final = 20
_TEXT_OID: Final = 25
_LE_F8: Final = np.dtype("<f8")
_OFFSET_ITEM: Final = np.dtype([("len", ">i4"), ("value", ">i8")])

_FRAME_TAIL: Final = (
    "stream",
    "time_ns",
    "ts",
    "fs_hz",
    "offsets_ns",
    "sequence",
    "n_samples",
    "channels",
    "unit",
    "quality",
    "samples",
)
_GAP_TAIL: Final = ("stream", "start_ns", "end_ns", "ts", "samples_missing", "cause")
DEAD_LETTER_COLUMNS: Final = ("topic_class", "reason", "payload", "digest")

_NULL: Final = struct.pack(">i", -1)
_TIMES: Final = struct.Struct(">iqiq")  # time_ns, ts
_REGULAR: Final = struct.Struct(">iqiqidiiqii")  # time_ns, ts, fs_hz, NULL offsets, seq, n
_F8: Final = struct.Struct(">id")
_I8: Final = struct.Struct(">iq")
_I4: Final = struct.Struct(">ii")
_LEN: Final = struct.Struct(">i")
_QUALITY_LEN: Final = struct.Struct(">iii")  # quality field, then the samples length
_ARRAY1: Final = struct.Struct(">iiiii")  # ndim 1, no nulls, element oid, length, lower bound


def frame_columns(path: IngestPath) -> tuple[str, ...]:
    """The columns of ``{schema}.frames`` that ``frame_copy`` fills, in order."""
    head = ("subject_id", "device_key") if path is IngestPath.CLINICAL else ("pseudonym",)
    return head + _FRAME_TAIL


def gap_columns(path: IngestPath) -> tuple[str, ...]:
    """The columns of ``{schema}.gaps`` that ``gap_params`` fills, in order."""
    head = ("subject_id", "device_key") if path is IngestPath.CLINICAL else ("pseudonym",)
    return head + _GAP_TAIL


def ts_micros(time_ns: int) -> int:
    """The ``ts`` value in PostgreSQL's binary form: µs since 2000-01-01 (truncated)."""
    return time_ns // 1000 - _PG_EPOCH_US


def _text(value: str) -> bytes:
    raw = value.encode("utf-8")
    return _LEN.pack(len(raw)) + raw


@functools.lru_cache(maxsize=65_536)
def _clinical_head(subject_id: UUID, device_key: str, stream: StreamKind) -> bytes:
    """Field count, subject_id, device_key and stream of a clinical row."""
    return (
        struct.pack(">hi", 13, 16)
        + subject_id.bytes
        + _LEN.pack(16)
        + UUID(device_key).bytes
        + _text(stream.value)
    )


@functools.lru_cache(maxsize=65_536)
def _research_head(pseudonym: str, stream: StreamKind) -> bytes:
    """Field count, pseudonym and stream of a research row."""
    return struct.pack(">h", 12) + _text(pseudonym) + _text(stream.value)


@functools.lru_cache(maxsize=4_096)
def _channels_unit(channels: tuple[str, ...], unit: Unit) -> bytes:
    """The ``channels`` text[] and ``unit`` fields (they repeat per stream)."""
    if channels:
        items = b"".join(_text(name) for name in channels)
        array = _ARRAY1.pack(1, 0, _TEXT_OID, len(channels), 1) + items
    else:
        array = struct.pack(">iii", 0, 0, _TEXT_OID)
    return _LEN.pack(len(array)) + array + _text(unit.value)


def _offsets(offsets: np.ndarray[Any, Any]) -> bytes:
    n = len(offsets)
    if n == 0:
        array = struct.pack(">iii", 0, 0, _INT8_OID)
    else:
        items = np.empty(n, dtype=_OFFSET_ITEM)
        items["len"] = 8
        items["value"] = offsets
        array = _ARRAY1.pack(1, 0, _INT8_OID, n, 1) + items.tobytes()
    return _LEN.pack(len(array)) + array


def _frame_fields(out: list[bytes | memoryview], frame: Frame | ResearchFrame) -> None:
    """Append the fields after the stream: times, rate/offsets, sequence, ..., samples."""
    time_ns = frame.time_ns
    ts = time_ns // 1000 - _PG_EPOCH_US
    samples = frame.samples
    fs_hz, sequence = frame.fs_hz, frame.sequence
    if fs_hz is not None and sequence is not None:  # the usual frame: one pack
        out.append(_REGULAR.pack(8, time_ns, 8, ts, 8, fs_hz, -1, 8, sequence, 4, len(samples)))
    else:
        out.append(_TIMES.pack(8, time_ns, 8, ts))
        if fs_hz is not None:
            out.append(_F8.pack(8, fs_hz) + _NULL)
        else:
            assert frame.offsets_ns is not None  # a frame has exactly one of the two
            out.append(_NULL + _offsets(frame.offsets_ns))
        out.append(_NULL if sequence is None else _I8.pack(8, sequence))
        out.append(_I4.pack(4, len(samples)))
    if samples.dtype != _LE_F8 or not samples.flags.c_contiguous:
        samples = np.ascontiguousarray(samples, dtype=_LE_F8)
    out.append(_channels_unit(frame.channels, frame.unit))
    out.append(_QUALITY_LEN.pack(4, int(frame.quality), samples.nbytes))
    out.append(samples.reshape(-1).data)  # the bytes themselves: join copies them once


def frame_copy(frames: Sequence[ClinicalFrame] | Sequence[ResearchFrame]) -> bytes:
    """One binary COPY stream of ``frames`` (all of one path) for ``frame_columns``."""
    out: list[bytes | memoryview] = [COPY_HEADER]
    for value in frames:
        if isinstance(value, ClinicalFrame):
            frame: Frame | ResearchFrame = value.frame
            out.append(_clinical_head(value.subject_id, value.frame.device_key, frame.stream))
        else:
            frame = value
            out.append(_research_head(value.pseudonym, value.stream))
        _frame_fields(out, frame)
    out.append(COPY_TRAILER)
    return b"".join(out)


def gap_params(gaps: Sequence[ClinicalGap] | Sequence[ResearchGap]) -> list[list[Any]]:
    """Column arrays for ``gap_columns`` (one list per column, all of one path)."""
    heads: list[list[Any]] = []
    if gaps and isinstance(gaps[0], ClinicalGap):
        heads = [
            [g.subject_id for g in gaps if isinstance(g, ClinicalGap)],
            [UUID(g.device_key) for g in gaps if isinstance(g, ClinicalGap)],
        ]
    else:
        heads = [[g.pseudonym for g in gaps if isinstance(g, ResearchGap)]]
    starts: list[datetime] = [ts_of_ns(g.gap.start_ns) for g in gaps]
    return [
        *heads,
        [g.gap.stream.value for g in gaps],
        [g.gap.start_ns for g in gaps],
        [g.gap.end_ns for g in gaps],
        starts,
        [g.gap.samples_missing for g in gaps],
        [g.gap.cause.value for g in gaps],
    ]


def dead_letter_params(letters: Sequence[DeadLetter], *, clinical: bool) -> list[list[Any]]:
    """Column arrays for ``DEAD_LETTER_COLUMNS``. The clinical table's payload is NOT
    NULL: a clinical letter without payload stores empty bytes."""
    if clinical:
        payloads: list[bytes | None] = [d.payload or b"" for d in letters]
    else:
        payloads = [d.payload for d in letters]
    digests = [d.digest for d in letters]
    return [[d.topic_class for d in letters], [d.reason for d in letters], payloads, digests]
