"""Reads of stored signal frames and vitals, for the dashboard and exports.

Role: ``read_signal`` (care database, by subject id) and ``read_pseudo_signal`` (research
database, by pseudonym) fetch the frames of one stream overlapping ``[start_ns, end_ns)``
and reassemble them, in time order, into one ``SignalSeries`` with per-sample UTC times,
the stored gaps and the discontinuities no stored gap explains. ``latest_vitals`` and
``latest_pseudo_vitals`` return the newest value per key and vital kind. One private core
serves both schemas (``_CLINICAL``, ``_PSEUDO`` say which key column and table).

Reassembly rules (all deterministic):

* Lookback: a frame starting before ``start_ns`` can overlap it, so besides the frames
  starting in the range the last 4 frames starting in ``[start - max_frame_span_ns,
  start)`` are read (default span 10 s; garment frames are 400 ms, Polar PMD frames under
  1 s). They give the samples that reach into the range and tell whether the range opens
  with a hole. Missed: a frame longer than the span, or one followed by 4 or more frames
  that still start before the range (several sources with tiny frames).
* Several sources (two devices of one wearer streaming the same kind): the source with
  the most samples in the range is primary and all its frames are kept; a frame of
  another source is kept only if its span overlaps no frame already kept (sources taken
  in order of samples, then device key). The research schema has no device key: all its
  frames are one source. Then, in time order, a sample at or before the last kept
  sample's time is dropped (an overlap); ``overlap_samples`` counts what was dropped
  among the frames read (including those of the lookback).
* Discontinuities between consecutive kept frames are found the way ``gateway.gaps``
  counts them: regular streams by time (later than expected by more than half a period:
  ``samples_missing = round((t_next - t_prev) * fs / 1e9) - n_prev``, placed on the
  previous frame's grid), irregular streams by a forward sequence jump of one source
  (bounds: the last sample before and the first after; estimated count). One that no
  stored gap overlaps is reported with cause ``"unrecorded"``.
* A frame whose bytes do not match ``n_samples x channels`` float64 is not used: its
  span is reported as a gap with cause ``"unreadable"`` and counted in
  ``unreadable_frames``.
* Mixed layouts are refused, not guessed: frames of different ``fs_hz``, of both regular
  and irregular timing, or of different units or channels in one range raise
  ``SignalReadError`` (``mixed_rate``, ``mixed_timing``, ``mixed_layout``) with the time
  of the first frame that differs; the caller reads the two sides separately. Lookback
  frames that end before the range and differ from the first frame reaching it are
  dropped instead (a change just before the range does not refuse it).

Must not: open connections or transactions (the caller owns the connection, its role and
the audit record of the read), log subject ids or pseudonyms above DEBUG, or write.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from uuid import UUID

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql

from devices.frame import StreamKind
from gateway.errors import BiogwError
from gateway.store import translate_error
from gateway.store.partitions import ts_of_ns

__all__ = [
    "DEFAULT_MAX_FRAME_SPAN_NS",
    "DEFAULT_MAX_GAP_SPAN_NS",
    "DEFAULT_VITALS_WINDOW",
    "UNREADABLE",
    "UNRECORDED",
    "SignalGap",
    "SignalReadError",
    "SignalSeries",
    "Vital",
    "latest_pseudo_vitals",
    "latest_vitals",
    "read_pseudo_signal",
    "read_signal",
]

_log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
Int64Array = npt.NDArray[np.int64]

#: Frames starting this long before the range are still looked at (see the docstring).
DEFAULT_MAX_FRAME_SPAN_NS: Final = 10 * 1_000_000_000
#: Stored gaps starting this long before the range are still reported.
DEFAULT_MAX_GAP_SPAN_NS: Final = 86_400 * 1_000_000_000
#: How far back ``latest_vitals`` looks by default.
DEFAULT_VITALS_WINDOW: Final = timedelta(hours=24)
#: Cause of a discontinuity between frames that no stored gap explains.
UNRECORDED: Final = "unrecorded"
#: Cause reported for the span of a stored frame whose bytes could not be used.
UNREADABLE: Final = "unreadable"
_NS_PER_S: Final = 1_000_000_000
#: Frames starting before the range that are looked at (the latest ones).
_BEFORE: Final = 4


class SignalReadError(BiogwError):
    """A range could not be read as one series. ``reason``: ``"bad_range"``,
    ``"mixed_rate"``, ``"mixed_timing"``, ``"mixed_layout"`` or ``"irregular"``
    (``to_grid`` on an irregular stream); ``at_ns`` is the start of the first frame that
    differs (None otherwise)."""

    def __init__(self, reason: str, at_ns: int | None = None, detail: str = "") -> None:
        self.reason = reason
        self.at_ns = at_ns
        self.detail = detail
        text = f"signals.{reason}"
        super().__init__(f"{text}: {detail}" if detail else text)


@dataclass(frozen=True, slots=True)
class SignalGap:
    """Samples missing in ``[start_ns, end_ns]`` (inclusive, UTC ns, not clipped to the
    range), ``samples_missing`` of them (an estimate for irregular streams), and why:
    a stored cause (``gateway.gaps.GapCause`` values), ``UNRECORDED`` or ``UNREADABLE``."""

    start_ns: int
    end_ns: int
    samples_missing: int
    cause: str


@dataclass(frozen=True, slots=True)
class SignalSeries:
    """One stream of one key over a range, as one array.

    ``samples`` is ``(n,)`` without channels and ``(n, len(channels))`` with them;
    ``times_ns`` holds each sample's UTC time (shifted time on the research path); both
    arrays are read-only. ``fs_hz`` is None for irregular streams; ``unit``, ``channels``
    and ``fs_hz`` are None/empty when no frame was found near the range. ``gaps`` are
    sorted by start."""

    stream: StreamKind
    unit: str | None
    channels: tuple[str, ...]
    fs_hz: float | None
    times_ns: Int64Array
    samples: FloatArray
    gaps: tuple[SignalGap, ...]
    overlap_samples: int = 0
    unreadable_frames: int = 0

    def to_grid(self) -> tuple[int, FloatArray]:
        """(first sample time, values on the regular grid ``first + round(k * 1e9 / fs)``)
        with NaN where no sample landed. Samples are placed by their UTC time: a device
        whose real rate is off nominal by d (relative) leaves a NaN or overwrites a slot
        (the later sample wins) about every 1 / (d * fs) s. Regular streams only."""
        if self.fs_hz is None and self.times_ns.size:
            raise SignalReadError("irregular", None, "to_grid needs a regular stream")
        if self.fs_hz is None or not self.times_ns.size:
            return 0, np.empty((0, *self.samples.shape[1:]), dtype=np.float64)
        first = int(self.times_ns[0])
        slots = np.rint((self.times_ns - first) * (self.fs_hz / _NS_PER_S)).astype(np.int64)
        grid = np.full((int(slots[-1]) + 1, *self.samples.shape[1:]), np.nan)
        grid[slots] = self.samples
        return first, grid


@dataclass(frozen=True, slots=True)
class Vital:
    """One stored vital value, as the ingester wrote it (``ts`` with its ``window_s``)."""

    ts: datetime
    kind: str
    value: float
    window_s: float
    quality: int


@dataclass(frozen=True, slots=True)
class _Table:
    schema: str
    key: str
    device: sql.Composable


_CLINICAL: Final = _Table("clinical", "subject_id", sql.Identifier("device_key"))
_PSEUDO: Final = _Table("pseudo", "pseudonym", sql.SQL("NULL::uuid"))

# Frames starting in the range, plus the last few starting before it (within the
# lookback): one of those may overlap the range's start, and the last one tells whether
# the range opens with a hole. Both are index range scans on (key, stream, ts) in the
# partitions the ts bounds leave; the second reads only _BEFORE rows, however dense.
_FRAMES = """
(SELECT {device}, time_ns, fs_hz, offsets_ns, sequence, n_samples, channels, unit, samples
 FROM {frames}
 WHERE {key} = %(key)s AND stream = %(stream)s AND ts >= %(from)s AND ts <= %(hi)s
   AND time_ns < %(end)s)
UNION ALL
(SELECT {device}, time_ns, fs_hz, offsets_ns, sequence, n_samples, channels, unit, samples
 FROM {frames}
 WHERE {key} = %(key)s AND stream = %(stream)s AND ts >= %(lo)s AND ts < %(from)s
 ORDER BY ts DESC LIMIT %(before)s)
"""
_GAPS = """
SELECT start_ns, end_ns, samples_missing, cause FROM {gaps}
WHERE {key} = %(key)s AND stream = %(stream)s AND ts >= %(glo)s AND ts <= %(hi)s
  AND start_ns < %(end)s AND end_ns >= %(start)s
ORDER BY start_ns, end_ns, cause
"""


@dataclass(frozen=True, slots=True)
class _Frame:
    source: UUID | None
    time_ns: int
    fs_hz: float | None
    sequence: int | None
    channels: tuple[str, ...]
    unit: str
    times_ns: Int64Array
    samples: FloatArray | None  # None: unreadable

    @property
    def last_ns(self) -> int:
        return int(self.times_ns[-1]) if self.times_ns.size else self.time_ns


async def read_signal(
    conn: psycopg.AsyncConnection[Any],
    subject_id: UUID,
    stream: StreamKind,
    start_ns: int,
    end_ns: int,
    *,
    max_frame_span_ns: int = DEFAULT_MAX_FRAME_SPAN_NS,
) -> SignalSeries:
    """Frames of ``subject_id``'s ``stream`` overlapping ``[start_ns, end_ns)`` in the care
    database, as one series trimmed to the range (see the module docstring)."""
    return await _read(conn, _CLINICAL, subject_id, stream, start_ns, end_ns, max_frame_span_ns)


async def read_pseudo_signal(
    conn: psycopg.AsyncConnection[Any],
    pseudonym: str,
    stream: StreamKind,
    start_ns: int,
    end_ns: int,
    *,
    max_frame_span_ns: int = DEFAULT_MAX_FRAME_SPAN_NS,
) -> SignalSeries:
    """``read_signal`` for the research database: ``pseudonym``, shifted times."""
    return await _read(conn, _PSEUDO, pseudonym, stream, start_ns, end_ns, max_frame_span_ns)


async def _read(
    conn: psycopg.AsyncConnection[Any],
    table: _Table,
    key: UUID | str,
    stream: StreamKind,
    start_ns: int,
    end_ns: int,
    max_frame_span_ns: int,
) -> SignalSeries:
    if start_ns < 0 or end_ns < start_ns or max_frame_span_ns < 0:
        raise SignalReadError("bad_range", None, "need 0 <= start_ns <= end_ns")
    if end_ns == start_ns:
        return _empty(stream, ())
    params = {
        "key": key,
        "stream": str(stream),
        "start": start_ns,
        "end": end_ns,
        "from": ts_of_ns(start_ns),
        "lo": ts_of_ns(max(0, start_ns - max_frame_span_ns)),
        "before": _BEFORE,
        "glo": ts_of_ns(max(0, start_ns - DEFAULT_MAX_GAP_SPAN_NS)),
        "hi": ts_of_ns(end_ns - 1),
    }
    names = {"key": sql.Identifier(table.key), "device": table.device}
    frames_q = sql.SQL(_FRAMES).format(frames=sql.Identifier(table.schema, "frames"), **names)
    gaps_q = sql.SQL(_GAPS).format(gaps=sql.Identifier(table.schema, "gaps"), **names)
    try:
        cur = await conn.execute(frames_q, params)
        rows = await cur.fetchall()
        cur = await conn.execute(gaps_q, params)
        gap_rows = await cur.fetchall()
    except psycopg.Error as exc:
        raise translate_error(exc, f"{table.schema}.read_signal") from exc
    stored = tuple(SignalGap(int(a), int(b), int(n), str(c)) for a, b, n, c in gap_rows)
    frames = sorted(
        (_decode(row) for row in rows),
        key=lambda f: (f.time_ns, "" if f.source is None else str(f.source), f.sequence or 0),
    )
    _log.debug("read %d frames, %d gaps of %s for %s", len(frames), len(stored), stream, key)
    frames = _drop_stale_context(frames, start_ns)
    if not frames:
        return _empty(stream, stored)
    _check_layout(frames)
    return _assemble(stream, frames, stored, start_ns, end_ns)


def _empty(stream: StreamKind, gaps: tuple[SignalGap, ...]) -> SignalSeries:
    return SignalSeries(
        stream,
        None,
        (),
        None,
        np.empty(0, dtype=np.int64),
        np.empty(0, dtype=np.float64),
        gaps,
    )


def _decode(row: Sequence[Any]) -> _Frame:
    source, time_ns, fs_hz, offsets_ns, sequence, n, channels, unit, data = row
    channels = tuple(channels)
    width = max(1, len(channels))
    time_ns, n = int(time_ns), int(n)
    if fs_hz is not None:
        steps = np.arange(n, dtype=np.float64) * (_NS_PER_S / float(fs_hz))
        times = time_ns + np.rint(steps).astype(np.int64)
    else:
        times = time_ns + np.asarray(offsets_ns, dtype=np.int64)
    samples: FloatArray | None = None
    if len(data) == 8 * n * width:
        samples = np.frombuffer(data, dtype="<f8").astype(np.float64)
        if channels:
            samples = samples.reshape(n, width)
    return _Frame(
        source,
        time_ns,
        None if fs_hz is None else float(fs_hz),
        None if sequence is None else int(sequence),
        channels,
        str(unit),
        times,
        samples,
    )


def _layout(frame: _Frame) -> tuple[float | None, str, tuple[str, ...]]:
    return frame.fs_hz, frame.unit, frame.channels


def _drop_stale_context(frames: list[_Frame], start_ns: int) -> list[_Frame]:
    """Frames ending before the range only give context (overlap, a hole at the start):
    those of another layout than the first frame reaching the range are dropped, so a
    rate change just before the range does not refuse it. With no frame reaching the
    range, the last one is kept."""
    reach = next((i for i, f in enumerate(frames) if f.last_ns >= start_ns), None)
    if reach is None:
        return frames[-1:]
    ref = _layout(frames[reach])
    return [f for f in frames[:reach] if _layout(f) == ref] + frames[reach:]


def _check_layout(frames: Sequence[_Frame]) -> None:
    first = frames[0]
    for frame in frames[1:]:
        if (frame.fs_hz is None) != (first.fs_hz is None):
            raise SignalReadError("mixed_timing", frame.time_ns, "regular and irregular frames")
        if frame.fs_hz != first.fs_hz:
            raise SignalReadError("mixed_rate", frame.time_ns, f"{first.fs_hz} -> {frame.fs_hz}")
        if (frame.unit, frame.channels) != (first.unit, first.channels):
            raise SignalReadError("mixed_layout", frame.time_ns, "unit or channels change")


def _choose(frames: Sequence[_Frame], start_ns: int, end_ns: int) -> list[_Frame]:
    """The frames kept when several sources overlap (module docstring), in time order."""
    sources: dict[UUID | None, int] = {}
    for frame in frames:
        inside = np.count_nonzero((frame.times_ns >= start_ns) & (frame.times_ns < end_ns))
        sources[frame.source] = sources.get(frame.source, 0) + int(inside)
    if len(sources) == 1:
        return list(frames)
    ranked = sorted(sources, key=lambda s: (-sources[s], "" if s is None else str(s)))
    kept: list[_Frame] = []
    for source in ranked:
        mine = [f for f in frames if f.source == source]
        if kept:
            starts = np.array([f.time_ns for f in kept], dtype=np.int64)
            order = np.argsort(starts, kind="stable")
            starts = starts[order]
            reach = np.maximum.accumulate(np.array([kept[i].last_ns for i in order]))
            lo = np.array([f.time_ns for f in mine], dtype=np.int64)
            hi = np.array([f.last_ns for f in mine], dtype=np.int64)
            idx = np.searchsorted(starts, hi, side="right")
            clash = (idx > 0) & (reach[np.maximum(idx - 1, 0)] >= lo)
            mine = [f for f, c in zip(mine, clash, strict=True) if not c]
        kept.extend(mine)
    kept.sort(key=lambda f: (f.time_ns, "" if f.source is None else str(f.source)))
    return kept


def _discontinuity(prev: _Frame, frame: _Frame) -> SignalGap | None:
    """The hole between two consecutive kept frames, as ``gateway.gaps`` would place it."""
    if prev.fs_hz is not None:
        n_prev = prev.times_ns.size
        expected = prev.time_ns + n_prev * _NS_PER_S / prev.fs_hz
        if frame.time_ns - expected <= 0.5 * _NS_PER_S / prev.fs_hz:
            return None
        missing = round((frame.time_ns - prev.time_ns) * prev.fs_hz / _NS_PER_S) - n_prev
        if missing < 1:
            return None
        start = prev.time_ns + round(n_prev * _NS_PER_S / prev.fs_hz)
        end = start + round((missing - 1) * _NS_PER_S / prev.fs_hz)
        return SignalGap(start, end, missing, UNRECORDED)
    if prev.source != frame.source or prev.sequence is None or frame.sequence is None:
        return None
    step = frame.sequence - prev.sequence
    if step <= 1:
        return None
    missing = (step - 1) * prev.times_ns.size
    return SignalGap(prev.last_ns, frame.time_ns, missing, UNRECORDED)


def _explained(gap: SignalGap, stored: Sequence[SignalGap]) -> bool:
    return any(s.start_ns <= gap.end_ns and s.end_ns >= gap.start_ns for s in stored)


def _assemble(
    stream: StreamKind,
    frames: Sequence[_Frame],
    stored: tuple[SignalGap, ...],
    start_ns: int,
    end_ns: int,
) -> SignalSeries:
    kept = _choose(frames, start_ns, end_ns)
    found: list[SignalGap] = []
    times: list[Int64Array] = []
    values: list[FloatArray] = []
    overlap = 0
    last = -1
    prev: _Frame | None = None
    for frame in kept:
        if frame.samples is None:
            found.append(SignalGap(frame.time_ns, frame.last_ns, frame.times_ns.size, UNREADABLE))
            continue
        if prev is not None:
            hole = _discontinuity(prev, frame)
            if hole is not None and not _explained(hole, (*stored, *found)):
                found.append(hole)
        fresh = frame.times_ns > last
        overlap += int(frame.times_ns.size - np.count_nonzero(fresh))
        times.append(frame.times_ns[fresh])
        values.append(frame.samples[fresh])
        last = max(last, frame.last_ns)
        prev = frame
    first = kept[0]
    width = (len(first.channels),) if first.channels else ()
    all_times = np.concatenate(times) if times else np.empty(0, dtype=np.int64)
    all_values = np.concatenate(values) if values else np.empty((0, *width), dtype=np.float64)
    inside = (all_times >= start_ns) & (all_times < end_ns)
    times_out, values_out = all_times[inside], all_values[inside]
    times_out.flags.writeable = False
    values_out.flags.writeable = False
    in_range = [g for g in found if g.start_ns < end_ns and g.end_ns >= start_ns]
    gaps = tuple(sorted((*stored, *in_range), key=lambda g: (g.start_ns, g.end_ns, g.cause)))
    return SignalSeries(
        stream=stream,
        unit=first.unit,
        channels=first.channels,
        fs_hz=first.fs_hz,
        times_ns=times_out,
        samples=values_out,
        gaps=gaps,
        overlap_samples=overlap,
        unreadable_frames=sum(1 for g in in_range if g.cause == UNREADABLE),
    )


# --- vitals -------------------------------------------------------------------------
# A backward skip scan on the (key, kind, ts) index (migrations care/0006, research/0002):
# each step's first row in (key, kind, ts) descending order below the previous pair is
# the newest value of the next pair, so one index probe per (key, kind) pair, in the
# partitions the window leaves; the cost grows with pairs, not with rows.

_ROW = "{key} AS k, kind, ts, value, window_s, quality"
_LATEST_ALL = f"""
WITH RECURSIVE latest AS (
    (SELECT {_ROW} FROM {{vitals}} WHERE ts >= {{since}}
     ORDER BY {{key}} DESC, kind DESC, ts DESC, window_s LIMIT 1)
    UNION ALL
    SELECT n.* FROM latest p CROSS JOIN LATERAL (
        SELECT {_ROW} FROM {{vitals}}
        WHERE ({{key}}, kind) < (p.k, p.kind) AND ts >= {{since}}
        ORDER BY {{key}} DESC, kind DESC, ts DESC, window_s LIMIT 1
    ) n
)
SELECT k, kind, ts, value, window_s, quality FROM latest
"""
_LATEST_FOR = f"""
WITH RECURSIVE latest AS (
    SELECT f.* FROM unnest(%(keys)s::{{keytype}}[]) AS s(key) CROSS JOIN LATERAL (
        SELECT {_ROW} FROM {{vitals}} WHERE {{key}} = s.key AND ts >= {{since}}
        ORDER BY kind DESC, ts DESC, window_s LIMIT 1
    ) f
    UNION ALL
    SELECT n.* FROM latest p CROSS JOIN LATERAL (
        SELECT {_ROW} FROM {{vitals}}
        WHERE {{key}} = p.k AND kind < p.kind AND ts >= {{since}}
        ORDER BY kind DESC, ts DESC, window_s LIMIT 1
    ) n
)
SELECT k, kind, ts, value, window_s, quality FROM latest
"""


async def latest_vitals(
    conn: psycopg.AsyncConnection[Any],
    subject_ids: Sequence[UUID] | None = None,
    *,
    window: timedelta = DEFAULT_VITALS_WINDOW,
    now: datetime | None = None,
) -> dict[UUID, dict[str, Vital]]:
    """Newest vital per subject and kind with ``ts >= now - window`` (care database), for
    ``subject_ids`` or every subject with a value in the window. ``now`` defaults to the
    server's ``now()``; the window bounds the search (partition pruning). Subjects without
    a value in the window are absent. On equal times the shortest ``window_s`` wins."""
    found = await _latest(conn, _CLINICAL, "uuid", subject_ids, window, now)
    return {k if isinstance(k, UUID) else UUID(str(k)): v for k, v in found.items()}


async def latest_pseudo_vitals(
    conn: psycopg.AsyncConnection[Any],
    pseudonyms: Sequence[str] | None = None,
    *,
    window: timedelta = DEFAULT_VITALS_WINDOW,
    now: datetime | None = None,
) -> dict[str, dict[str, Vital]]:
    """``latest_vitals`` for the research database, keyed by pseudonym. Its times are
    shifted per pseudonym, so pass ``now`` on the shifted timeline when it matters."""
    found = await _latest(conn, _PSEUDO, "text", pseudonyms, window, now)
    return {str(k): v for k, v in found.items()}


async def _latest(
    conn: psycopg.AsyncConnection[Any],
    table: _Table,
    keytype: str,
    keys: Sequence[Any] | None,
    window: timedelta,
    now: datetime | None,
) -> dict[Any, dict[str, Vital]]:
    if (now is not None and now.tzinfo is None) or window <= timedelta(0):
        raise SignalReadError("bad_range", None, "need an aware now and a positive window")
    if keys is not None and not keys:
        return {}
    names = {
        "key": sql.Identifier(table.key),
        "vitals": sql.Identifier(table.schema, "vitals"),
        "keytype": sql.SQL(keytype),
        "since": sql.SQL("coalesce(%(since)s::timestamptz, now() - %(window)s::interval)"),
    }
    query = sql.SQL(_LATEST_ALL if keys is None else _LATEST_FOR).format(**names)
    params = {
        "since": None if now is None else now - window,
        "window": window,
        "keys": None if keys is None else list(keys),
    }
    try:
        cur = await conn.execute(query, params)
        rows = await cur.fetchall()
    except psycopg.Error as exc:
        raise translate_error(exc, f"{table.schema}.latest_vitals") from exc
    out: dict[Any, dict[str, Vital]] = {}
    for k, kind, ts, value, window_s, quality in rows:
        out.setdefault(k, {})[str(kind)] = Vital(
            ts, str(kind), float(value), float(window_s), int(quality)
        )
    return out
