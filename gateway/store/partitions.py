"""Time partitions of the signal tables: names, bounds, creation ahead and retention.

Role: the pure arithmetic of one-partition-per-UTC-day (``partition_name``,
``day_partitions``, ``ts_of_ns``) and three thin async operations on a connection the
caller owns: ``detect_backend`` (TimescaleDB available or native partitioning),
``ensure_partitions`` (calls the schema's SECURITY DEFINER ``ensure_partitions`` SQL
function, so the INSERT-only ingest roles can create partitions ahead) and
``drop_partitions_before`` (retention: drops whole partitions, run by the owner).

The migrations create natively partitioned tables. Where TimescaleDB is available,
``gateway.store.timescale.apply_timescale`` turns the (still empty) signal tables into
hypertables (chunks, compression, continuous aggregate) and makes ``ensure_partitions`` a
no-op; ``detect_backend`` only reports whether the extension is available.

Must not: open connections, read configuration or clocks, create a default partition,
or drop a partition that still holds times at or after the cutoff.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Literal

import psycopg
from psycopg import sql

from gateway.store import translate_error

__all__ = [
    "MAX_DAYS_PER_CALL",
    "PARTITIONED_TABLES",
    "Backend",
    "PartitionSpan",
    "PartitionedTable",
    "SignalSchema",
    "day_partitions",
    "detect_backend",
    "drop_partitions_before",
    "ensure_partitions",
    "parse_partition_name",
    "partition_name",
    "ts_of_ns",
]

_log = logging.getLogger(__name__)

Backend = Literal["native", "timescaledb"]
SignalSchema = Literal["clinical", "pseudo"]
PartitionedTable = Literal["frames", "gaps", "vitals"]

PARTITIONED_TABLES: Final[tuple[PartitionedTable, ...]] = ("frames", "gaps", "vitals")
#: The SQL function refuses longer ranges; ``ensure_partitions`` splits into such windows.
MAX_DAYS_PER_CALL: Final = 62
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_DAY: Final = timedelta(days=1)
_SUFFIX: Final = re.compile(r"^_p(?P<day>[0-9]{8})$")


@dataclass(frozen=True, slots=True)
class PartitionSpan:
    """One day partition: ``table`` it belongs to, its ``name``, bounds [lower, upper)."""

    table: PartitionedTable
    name: str
    lower: datetime
    upper: datetime


def ts_of_ns(time_ns: int) -> datetime:
    """The ``ts`` column value for a UTC ``time_ns``: truncated to microseconds, exactly
    what the tables' CHECK expects (``time_ns`` must not be negative)."""
    if time_ns < 0:
        raise ValueError("time_ns must not be negative")
    return _EPOCH + timedelta(microseconds=time_ns // 1000)


def partition_name(table: PartitionedTable, day: date) -> str:
    """``frames_p20261122``: the partition of ``table`` holding UTC ``day``."""
    return f"{table}_p{day:%Y%m%d}"


def parse_partition_name(table: PartitionedTable, name: str) -> date | None:
    """The UTC day of a partition named by ``partition_name``; None for any other name."""
    if not name.startswith(table):
        return None
    match = _SUFFIX.match(name[len(table) :])
    if match is None:
        return None
    try:
        return datetime.strptime(match["day"], "%Y%m%d").replace(tzinfo=UTC).date()
    except ValueError:
        return None


def day_partitions(
    table: PartitionedTable, start: datetime, end: datetime
) -> tuple[PartitionSpan, ...]:
    """The day partitions of ``table`` covering ``[start, end)`` (aware datetimes),
    oldest first; empty when ``end <= start``."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    if end <= start:
        return ()
    day = start.astimezone(UTC).date()
    last = (end.astimezone(UTC) - timedelta(microseconds=1)).date()
    spans = []
    while day <= last:
        lower = datetime(day.year, day.month, day.day, tzinfo=UTC)
        spans.append(PartitionSpan(table, partition_name(table, day), lower, lower + _DAY))
        day += _DAY
    return tuple(spans)


async def detect_backend(conn: psycopg.AsyncConnection[Any]) -> Backend:
    """``"timescaledb"`` when the server offers the extension, else ``"native"``."""
    try:
        cur = await conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
        row = await cur.fetchone()
    except psycopg.Error as exc:
        raise translate_error(exc, "partitions.detect_backend") from exc
    return "native" if row is None else "timescaledb"


async def ensure_partitions(
    conn: psycopg.AsyncConnection[Any],
    schema: SignalSchema,
    tables: Sequence[PartitionedTable],
    start: datetime,
    end: datetime,
) -> tuple[str, ...]:
    """Create the missing day partitions of ``schema.tables`` covering ``[start, end)``;
    return the names created (empty when all existed). Idempotent and safe to run
    concurrently; works for the INSERT-only ingest roles (EXECUTE on the function)."""
    if not tables or any(t not in PARTITIONED_TABLES for t in tables):
        raise ValueError(f"tables must be a non-empty subset of {PARTITIONED_TABLES}")
    days = day_partitions(PARTITIONED_TABLES[0], start, end)
    function = sql.Identifier(schema, "ensure_partitions")
    query = sql.SQL("SELECT * FROM {}(%s, %s, %s::text[])").format(function)
    created: list[str] = []
    try:
        for first in range(0, len(days), MAX_DAYS_PER_CALL):
            window = days[first : first + MAX_DAYS_PER_CALL]
            cur = await conn.execute(query, (window[0].lower, window[-1].upper, list(tables)))
            created.extend(str(row[0]) for row in await cur.fetchall())
    except psycopg.Error as exc:
        raise translate_error(exc, f"{schema}.ensure_partitions") from exc
    if created:
        _log.info("created %d partitions in %s", len(created), schema)
    return tuple(created)


async def drop_partitions_before(
    conn: psycopg.AsyncConnection[Any],
    schema: SignalSchema,
    table: PartitionedTable,
    cutoff: datetime,
) -> tuple[str, ...]:
    """Drop every day partition of ``schema.table`` whose upper bound is <= ``cutoff``;
    return their names, oldest first. Partitions not named by ``partition_name`` are
    left alone. Needs the table owner's rights (the retention job, not an ingest role)."""
    if cutoff.tzinfo is None:
        raise ValueError("cutoff must be timezone-aware")
    try:
        cur = await conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = %s::regclass",
            (f"{schema}.{table}",),
        )
        children = [str(row[0]) for row in await cur.fetchall()]
        doomed = sorted(
            name
            for name in children
            if (day := parse_partition_name(table, name)) is not None
            and datetime(day.year, day.month, day.day, tzinfo=UTC) + _DAY <= cutoff
        )
        for name in doomed:
            async with conn.transaction():
                await conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, name)))
    except psycopg.Error as exc:
        raise translate_error(exc, f"{schema}.drop_partitions_before") from exc
    if doomed:
        _log.info("dropped %d partitions of %s.%s", len(doomed), schema, table)
    return tuple(doomed)
