"""Retention: how long each database keeps each stream, applied by dropping and deleting.

Role: ``apply_retention`` enforces per-stream periods (days, from ``RetentionSettings``)
on one signal schema (``clinical`` in the care database, ``pseudo`` in the research one):

* frames and gaps: whole day partitions older than the LONGEST period are dropped (cheap,
  no dead tuples); a stream with a shorter period has its rows older than that period
  deleted from the younger partitions (``DELETE ... WHERE stream = ... AND ts < ...``,
  pruned to the partitions concerned). Streams not named follow ``default``.
* vitals: partitions older than the ``vitals`` period (or ``default``) are dropped; in
  the care database the alerts (``clinical.alerts``, not partitioned: few rows) older
  than the same period are deleted.

Under TimescaleDB (the tables are hypertables) chunks are dropped instead of partitions,
with the same cutoffs.

Cutoffs are computed from the caller's ``now`` (no clock here). The research database
holds date-shifted times (a secret whole-week shift per subject, up to 26 weeks either
way, unknown to this database), so its cutoffs move back by the largest shift
(``shift_slack``): nobody's data is deleted early, at the price of keeping some up to
52 weeks longer than the period. Runs with the rights of
the tables' owner (DROP), never as an ingest role.

Must not: drop a partition holding any time younger than a period that applies to it,
read configuration, or log row values.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import psycopg
from psycopg import sql

from gateway.store import translate_error
from gateway.store.partitions import PartitionedTable, SignalSchema, drop_partitions_before
from gateway.store.timescale import drop_chunks_before, is_hypertable

__all__ = ["RetentionReport", "apply_retention", "cutoffs"]

logger = logging.getLogger(__name__)

DEFAULT: Final = "default"
VITALS: Final = "vitals"


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What one run did: partitions dropped, and rows deleted per (table, stream)."""

    dropped: tuple[str, ...] = ()
    deleted: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Cutoffs:
    partitions: datetime
    """Frames and gaps: whole partitions ending at or before this go."""
    streams: Mapping[str, datetime]
    """Named streams with a shorter period than the longest: their own cutoff."""
    others: datetime | None
    """Streams not named, when ``default`` is shorter than the longest period."""
    vitals: datetime


def cutoffs(periods: Mapping[str, float], now: datetime) -> _Cutoffs:
    """The cutoffs ``periods`` (days per stream, ``default``, ``vitals``) give at ``now``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if DEFAULT not in periods:
        raise ValueError("periods need a 'default'")
    signal = {k: v for k, v in periods.items() if k != VITALS}
    longest = max(signal.values())

    def at(days: float) -> datetime:
        return now - timedelta(days=days)

    streams = {k: at(v) for k, v in signal.items() if k != DEFAULT and v < longest}
    others = at(signal[DEFAULT]) if signal[DEFAULT] < longest else None
    return _Cutoffs(at(longest), streams, others, at(periods.get(VITALS, periods[DEFAULT])))


async def apply_retention(
    conn: psycopg.AsyncConnection[Any],
    schema: SignalSchema,
    periods: Mapping[str, float],
    *,
    now: datetime,
    shift_slack: timedelta = timedelta(0),
) -> RetentionReport:
    """Enforce ``periods`` on ``schema`` as of ``now``; see the module docstring.
    ``shift_slack``: the stored times are shifted by up to this much either way (the
    research database's per-subject date shift), so every cutoff moves back by it: no
    subject's data goes before its period; some stay up to twice the slack longer."""
    if shift_slack < timedelta(0):
        raise ValueError("shift_slack must not be negative")
    cut = cutoffs(periods, now - shift_slack)
    drop = drop_partitions_before
    if await is_hypertable(conn, schema, "frames"):
        drop = drop_chunks_before
    dropped: list[str] = []
    deleted: dict[str, int] = {}
    tables: tuple[PartitionedTable, ...] = ("frames", "gaps")
    for table in tables:
        dropped += await drop(conn, schema, table, cut.partitions)
        for stream, cutoff in cut.streams.items():
            deleted[f"{table}/{stream}"] = await _delete(
                conn, schema, table, sql.SQL("stream = %s"), (stream, cutoff)
            )
        if cut.others is not None:
            named = [k for k in periods if k not in (DEFAULT, VITALS)]
            deleted[f"{table}/{DEFAULT}"] = await _delete(
                conn, schema, table, sql.SQL("stream <> ALL(%s)"), (named, cut.others)
            )
    dropped += await drop(conn, schema, "vitals", cut.vitals)
    if schema == "clinical":
        deleted["alerts"] = await _delete(conn, schema, "alerts", sql.SQL("TRUE"), (cut.vitals,))
    if dropped or any(deleted.values()):
        logger.info(
            "retention %s: %d partitions dropped, %d rows deleted",
            schema,
            len(dropped),
            sum(deleted.values()),
        )
    return RetentionReport(tuple(dropped), deleted)


async def _delete(
    conn: psycopg.AsyncConnection[Any],
    schema: SignalSchema,
    table: str,
    which: sql.Composable,
    params: tuple[object, datetime] | tuple[datetime],
) -> int:
    query = sql.SQL("DELETE FROM {} WHERE {} AND ts < %s").format(
        sql.Identifier(schema, table), which
    )
    try:
        async with conn.transaction():
            cur = await conn.execute(query, params)
    except psycopg.Error as exc:
        raise translate_error(exc, f"{schema}.retention") from exc
    return max(cur.rowcount, 0)
