"""Ingest writer: one batch of classified items → one committed transaction.

Role: ``SignalWriter.write`` stores a batch (``gateway.ingest.validate.Item``s) in one
transaction on a connection the caller owns, and commits; the caller acknowledges the
broker only after it returns. Built for the INSERT-only ingest roles
(``clinical_ingest_login``, ``research_ingest_login``): it needs INSERT on the tables,
EXECUTE on ``{schema}.ensure_partitions`` and TEMPORARY on the database (slow path only).

* Partitions: before the data transaction, the day partitions of ``frames``, ``gaps`` and
  ``vitals`` (the vitals stage writes the same days later) for every day in the batch,
  and ``partitions_ahead_days`` after the newest, are ensured
  (``partitions.ensure_partitions``, one call per run of consecutive missing days, in its
  own short transaction). Days known to exist are cached per writer; if an insert still
  finds no partition (SQLSTATE 23514, e.g. retention dropped it) the cache is cleared and
  the batch retried once. Skipped when the server has TimescaleDB and ``frames`` is a
  hypertable.
* Frames, fast path: binary COPY straight into ``{schema}.frames`` inside a savepoint.
  If a row is already stored (or repeats within the batch) the COPY fails with a unique
  violation; the savepoint is rolled back and the slow path runs: COPY into a temporary
  staging table (``ON COMMIT DELETE ROWS``, created once per connection), then
  ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``; duplicates = staged - inserted. (The
  staging table's samples are ``STORAGE EXTERNAL``: float64 noise does not compress, and
  pglz trying costs more than the copy.)
* Gaps and dead letters: one ``INSERT ... SELECT FROM unnest(...)`` each (gaps with
  ``ON CONFLICT DO NOTHING``), in the same transaction.

Any database failure rolls the whole batch back and raises the translated ``StoreError``
(``gateway.store.translate_error``); the writer stays usable with a new connection.
Redelivery after an unknown commit outcome is harmless: stored rows count as duplicates.

Must not: open, close or retry connections (the caller reconnects with backoff), commit
anything the caller had open, log row values, topics or payloads, or read clocks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq, sql

from devices.frame import Frame
from gateway.ingest import rows
from gateway.ingest.validate import DAY_NS, DeadLetter, IngestPath, Item
from gateway.router import ClinicalFrame, ClinicalGap, ResearchFrame, ResearchGap
from gateway.store import StoreError, translate_error
from gateway.store.partitions import SignalSchema, ensure_partitions
from gateway.store.timescale import is_hypertable

__all__ = ["SignalWriter", "WriteResult"]

_log = logging.getLogger(__name__)

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_STAGE: Final = "biogw_ingest_frames"
_PARTITIONED: Final = ("frames", "gaps", "vitals")
_CLINICAL_HEAD_TYPES: Final = ("uuid", "uuid")
_RESEARCH_HEAD_TYPES: Final = ("text",)
_FRAME_TAIL_TYPES: Final = (
    "text",
    "bigint",
    "timestamptz",
    "double precision",
    "bigint[]",
    "bigint",
    "integer",
    "text[]",
    "text",
    "integer",
    "bytea",
)
_GAP_TAIL_TYPES: Final = ("text", "bigint", "bigint", "timestamptz", "bigint", "text")


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one committed batch did. ``frames``/``gaps`` were stored now; the
    ``*_duplicates`` were already stored (or repeated within the batch) and skipped."""

    frames: int
    frame_duplicates: int
    gaps: int
    gap_duplicates: int
    dead_letters: int
    """Dead letters stored now (one already stored, redelivered, is not stored again)."""
    samples: int
    """Sample values (``samples.size``) of the frames stored now."""


_EMPTY: Final = WriteResult(0, 0, 0, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class _Batch:
    frames: list[ClinicalFrame] | list[ResearchFrame]
    gaps: list[ClinicalGap] | list[ResearchGap]
    dead: list[DeadLetter]
    days: frozenset[int]


@dataclass(frozen=True, slots=True)
class _Statements:
    copy_frames: sql.Composed
    create_stage: sql.Composed
    copy_stage: sql.Composed
    insert_staged: sql.Composed
    insert_staged_sized: sql.Composed
    insert_gaps: sql.Composed
    insert_dead: sql.Composed


def _statements(path: IngestPath) -> _Statements:
    schema = path.schema
    head = _CLINICAL_HEAD_TYPES if path is IngestPath.CLINICAL else _RESEARCH_HEAD_TYPES
    fcols = rows.frame_columns(path)
    gcols = rows.gap_columns(path)
    ftypes = head + _FRAME_TAIL_TYPES
    gtypes = head + _GAP_TAIL_TYPES
    frame_list = sql.SQL(", ").join(map(sql.Identifier, fcols))
    stage = sql.Identifier("pg_temp", _STAGE)
    frames = sql.Identifier(schema, "frames")
    pairs = zip(fcols, ftypes, strict=True)
    definition = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in pairs
    )

    def unnest(table: str, cols: Sequence[str], types: Sequence[str], tail: str) -> sql.Composed:
        return sql.SQL("INSERT INTO {} ({}) SELECT * FROM unnest({}){}").format(
            sql.Identifier(schema, table),
            sql.SQL(", ").join(map(sql.Identifier, cols)),
            sql.SQL(", ").join(sql.SQL("%s::" + t + "[]") for t in types),
            sql.SQL(tail),
        )

    return _Statements(
        copy_frames=sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(frames, frame_list),
        create_stage=sql.SQL(
            "DO $$ BEGIN IF to_regclass('pg_temp.{}') IS NULL THEN"
            " CREATE TEMP TABLE {} ({}) ON COMMIT DELETE ROWS;"
            " ALTER TABLE {} ALTER COLUMN samples SET STORAGE EXTERNAL;"
            " END IF; END $$"
        ).format(sql.SQL(_STAGE), sql.Identifier(_STAGE), definition, stage),
        copy_stage=sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(stage, frame_list),
        insert_staged=sql.SQL(
            "INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING"
        ).format(frames, frame_list, frame_list, stage),
        insert_staged_sized=sql.SQL(
            "INSERT INTO {} ({}) SELECT {} FROM {} WHERE length(samples) = %s"
            " ON CONFLICT DO NOTHING"
        ).format(frames, frame_list, frame_list, stage),
        insert_gaps=unnest("gaps", gcols, gtypes, " ON CONFLICT DO NOTHING"),
        insert_dead=unnest(
            "dead_letters",
            rows.DEAD_LETTER_COLUMNS,
            ("text", "text", "bytea", "bytea"),
            " ON CONFLICT DO NOTHING",
        ),
    )


def _split(path: IngestPath, items: Sequence[Item]) -> _Batch:
    """Sort the items by table; a value of the other path is a programming error."""
    frames: list[Any] = []
    gaps: list[Any] = []
    dead: list[DeadLetter] = []
    days: set[int] = set()
    clinical = path is IngestPath.CLINICAL
    frame_type = ClinicalFrame if clinical else ResearchFrame
    gap_type = ClinicalGap if clinical else ResearchGap
    for item in items:
        if isinstance(item, frame_type):
            frames.append(item)
            time_ns = item.frame.time_ns if isinstance(item, ClinicalFrame) else item.time_ns
            days.add(time_ns // DAY_NS)
        elif isinstance(item, gap_type):
            gaps.append(item)
            days.add(item.gap.start_ns // DAY_NS)
        elif isinstance(item, DeadLetter):
            dead.append(item)
        else:
            raise TypeError(f"{type(item).__name__} does not belong on the {path} path")
    return _Batch(frames, gaps, dead, frozenset(days))


def _frame_values(
    frames: list[ClinicalFrame] | list[ResearchFrame],
) -> list[Frame | ResearchFrame]:
    return [f.frame if isinstance(f, ClinicalFrame) else f for f in frames]


def _runs(days: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted day numbers → [(first, last)] runs of consecutive days."""
    out: list[tuple[int, int]] = []
    for day in days:
        if out and out[-1][1] == day - 1:
            out[-1] = (out[-1][0], day)
        else:
            out.append((day, day))
    return out


def _day_start(day: int) -> datetime:
    return _EPOCH + timedelta(days=day)


class SignalWriter:
    """Writes batches of one path's items to its database (see the module docstring)."""

    def __init__(self, path: IngestPath, *, partitions_ahead_days: int = 1) -> None:
        if partitions_ahead_days < 0:
            raise ValueError("partitions_ahead_days must not be negative")
        self._path = path
        self._schema: SignalSchema = "clinical" if path is IngestPath.CLINICAL else "pseudo"
        self._ahead = partitions_ahead_days
        self._sql = _statements(path)
        self._known_days: set[int] = set()
        self._managed_by_timescale: bool | None = None

    @property
    def path(self) -> IngestPath:
        return self._path

    async def write(self, conn: psycopg.AsyncConnection[Any], items: Sequence[Item]) -> WriteResult:
        """Store ``items`` in one transaction and commit; ``StoreError`` on any database
        failure, with nothing committed. ``conn`` must not be inside a transaction."""
        operation = f"ingest.{self._schema}.write"
        if conn.info.transaction_status != pq.TransactionStatus.IDLE:
            raise StoreError(operation, None, "connection is not idle (open transaction?)")
        batch = _split(self._path, items)
        if not items:
            return _EMPTY
        for attempt in (1, 2):
            try:
                await self._ensure_partitions(conn, batch.days)
                return await self._transaction(conn, batch)
            except pg_errors.CheckViolation as exc:
                # No partition for a row (retention dropped a cached day) or a CHECK: once
                # more with the partitions re-ensured; a second failure is real.
                self._known_days.clear()
                if attempt == 2:
                    raise translate_error(exc, operation) from exc
                _log.info("%s.frames: missing partition, retrying the batch once", self._schema)
            except psycopg.Error as exc:
                raise translate_error(exc, operation) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _transaction(self, conn: psycopg.AsyncConnection[Any], batch: _Batch) -> WriteResult:
        async with conn.transaction():
            stored, frame_dups, samples = await self._write_frames(conn, batch.frames)
            gaps = 0
            if batch.gaps:
                cur = await conn.execute(self._sql.insert_gaps, rows.gap_params(batch.gaps))
                gaps = max(cur.rowcount, 0)
            dead = 0
            if batch.dead:
                clinical = self._path is IngestPath.CLINICAL
                params = rows.dead_letter_params(batch.dead, clinical=clinical)
                cur = await conn.execute(self._sql.insert_dead, params)
                dead = max(cur.rowcount, 0)
        return WriteResult(stored, frame_dups, gaps, len(batch.gaps) - gaps, dead, samples)

    async def _write_frames(
        self, conn: psycopg.AsyncConnection[Any], frames: list[ClinicalFrame] | list[ResearchFrame]
    ) -> tuple[int, int, int]:
        """(stored, duplicates, sample values stored)."""
        if not frames:
            return 0, 0, 0
        data = rows.frame_copy(frames)
        try:
            async with (
                conn.transaction(),
                conn.cursor() as cur,
                cur.copy(self._sql.copy_frames) as copy,
            ):
                await copy.write(data)
            return len(frames), 0, sum(f.samples.size for f in _frame_values(frames))
        except pg_errors.UniqueViolation:
            _log.debug("%s.frames: duplicates in batch, staging", self._schema)
        await conn.execute(self._sql.create_stage)
        sizes = sorted({f.samples.size for f in _frame_values(frames)})
        inserted = samples = 0
        async with conn.cursor() as cur:
            async with cur.copy(self._sql.copy_stage) as copy:
                await copy.write(data)
            if len(sizes) == 1:  # the usual case: one statement
                await cur.execute(self._sql.insert_staged)
                inserted = max(cur.rowcount, 0)
                samples = inserted * sizes[0]
            else:  # the INSERT-only role cannot read back what it stored: count per size
                for size in sizes:
                    await cur.execute(self._sql.insert_staged_sized, (size * 8,))
                    inserted += max(cur.rowcount, 0)
                    samples += max(cur.rowcount, 0) * size
        return inserted, len(frames) - inserted, samples

    async def _ensure_partitions(
        self, conn: psycopg.AsyncConnection[Any], days: frozenset[int]
    ) -> None:
        if not days:
            return
        if self._managed_by_timescale is None:
            self._managed_by_timescale = await self._timescale(conn)
        if self._managed_by_timescale:
            return
        newest = max(days)
        wanted = days | set(range(newest + 1, newest + 1 + self._ahead))
        missing = sorted(wanted - self._known_days)
        if not missing:
            return
        for first, last in _runs(missing):
            async with conn.transaction():
                await ensure_partitions(
                    conn, self._schema, _PARTITIONED, _day_start(first), _day_start(last + 1)
                )
        self._known_days.update(missing)

    async def _timescale(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        """True when ``{schema}.frames`` is a TimescaleDB hypertable (then TimescaleDB
        makes the chunks and ``ensure_partitions`` is skipped)."""
        return await is_hypertable(conn, self._schema, "frames")
