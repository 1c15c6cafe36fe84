"""The TimescaleDB layout of the signal tables, when the server offers the extension.

Role: ``apply_timescale`` turns a schema's (still empty) natively partitioned ``frames``,
``gaps`` and ``vitals`` (migrations care/0005, research/0001) into hypertables with
compression and a compression policy, and replaces the plain ``vitals_1m`` view
(care/0006, research/0002) by a continuous aggregate of the same name and columns with a
refresh policy, so readers use one name on either backend. ``drop_chunks_before`` is the
retention step of this layout, next to ``partitions.drop_partitions_before`` (same
contract). On the native backend ``apply_timescale`` returns False and changes nothing.

Conversion: a hypertable cannot be a partitioned table, so each table is recreated as a
plain table ``(LIKE old INCLUDING ALL)`` (columns, defaults, CHECKs, indexes, comments),
the old one dropped, its index and constraint names and its table privileges put back,
then ``create_hypertable`` on ``ts`` (no default index: the migrations' indexes stay). A
table holding rows is refused (``TimescaleError`` ``not_empty``): moving data is a
separate, deliberate job. The schema's ``ensure_partitions`` function becomes a no-op
returning no rows (chunks are created on insert), so ingesters keep calling it unchanged.
Everything runs in one transaction: a failure leaves the native layout as it was.

Compression: segment by the key (``subject_id``/``pseudonym``), ``device_key`` where it
exists, and ``stream`` (``kind`` for vitals); order by ``ts`` and the remaining columns of
the table's unique key, because TimescaleDB wants every unique-key column in segmentby or
orderby (older versions refuse, newer ones warn).

Must not: open connections, read configuration or clocks, move or delete rows (other than
``drop_chunks_before``'s whole chunks), or log keys and values above DEBUG.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import psycopg
from psycopg import sql

from gateway.errors import BiogwError
from gateway.store import translate_error
from gateway.store.partitions import (
    PARTITIONED_TABLES,
    PartitionedTable,
    SignalSchema,
    detect_backend,
)

__all__ = ["TimescaleError", "apply_timescale", "drop_chunks_before", "is_hypertable"]

_log = logging.getLogger(__name__)


class TimescaleError(BiogwError):
    """The TimescaleDB layout could not be applied. ``reason``: ``"not_empty"`` (a table
    holds rows), ``"not_available"`` (the extension is missing where it is required);
    ``table`` names the table concerned."""

    def __init__(self, reason: str, table: str | None = None, detail: str = "") -> None:
        self.reason = reason
        self.table = table
        self.detail = detail
        text = f"timescale.{reason}" + (f" ({table})" if table else "")
        super().__init__(f"{text}: {detail}" if detail else text)


@dataclass(frozen=True, slots=True)
class _Layout:
    key: str
    segment_by: dict[PartitionedTable, tuple[str, ...]]
    order_by: dict[PartitionedTable, tuple[str, ...]]


_LAYOUTS: Final[dict[str, _Layout]] = {
    "clinical": _Layout(
        "subject_id",
        {
            "frames": ("subject_id", "device_key", "stream"),
            "gaps": ("subject_id", "device_key", "stream"),
            "vitals": ("subject_id", "kind"),
        },
        {
            "frames": ("ts", "time_ns", "sequence"),
            "gaps": ("ts", "start_ns", "end_ns"),
            "vitals": ("ts", "window_s"),
        },
    ),
    "pseudo": _Layout(
        "pseudonym",
        {
            "frames": ("pseudonym", "stream"),
            "gaps": ("pseudonym", "stream"),
            "vitals": ("pseudonym", "kind"),
        },
        {
            "frames": ("ts", "time_ns", "sequence"),
            "gaps": ("ts", "start_ns", "end_ns"),
            "vitals": ("ts", "window_s"),
        },
    ),
}

_NOOP_ENSURE = """
CREATE OR REPLACE FUNCTION {fn}(
    start timestamptz,
    stop timestamptz,
    tables text[] DEFAULT ARRAY['frames', 'gaps', 'vitals']
)
RETURNS SETOF text
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT NULL::text WHERE false $$
"""

_CAGG = """
CREATE MATERIALIZED VIEW {view} WITH (timescaledb.continuous) AS
SELECT time_bucket(interval '1 minute', ts) AS bucket,
       {key},
       kind,
       avg(value) AS value_avg,
       min(value) AS value_min,
       max(value) AS value_max,
       count(*) AS n
FROM {vitals}
GROUP BY bucket, {key}, kind
WITH NO DATA
"""


async def apply_timescale(
    conn: psycopg.AsyncConnection[Any],
    schema: SignalSchema,
    *,
    compress_after: timedelta,
    chunk_interval: timedelta = timedelta(days=1),
    refresh_lookback: timedelta = timedelta(days=1),
) -> bool:
    """Apply the TimescaleDB layout to ``schema`` (see the module docstring); True when
    applied (or already in place), False on the native backend, where nothing changes.
    ``refresh_lookback`` is how far back each refresh of ``vitals_1m`` recomputes (late
    vitals older than that stay out of the aggregate until a manual refresh). Needs the
    schema owner's rights; ``conn`` must not be inside a transaction."""
    if compress_after <= timedelta(0) or chunk_interval <= timedelta(0):
        raise ValueError("compress_after and chunk_interval must be positive")
    if refresh_lookback < timedelta(minutes=2):
        raise ValueError("refresh_lookback must cover at least two buckets")
    if await detect_backend(conn) == "native":
        return False
    layout = _LAYOUTS[schema]
    try:
        async with conn.transaction():
            await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            pending = [t for t in PARTITIONED_TABLES if not await is_hypertable(conn, schema, t)]
            for table in pending:
                await _refuse_rows(conn, schema, table)
            view_acl = await _drop_plain_view(conn, schema)
            for table in PARTITIONED_TABLES:
                if table in pending:
                    await _convert(conn, schema, table, chunk_interval)
                await _compress(conn, schema, table, layout, compress_after)
            await conn.execute(
                sql.SQL(_NOOP_ENSURE).format(fn=sql.Identifier(schema, "ensure_partitions"))
            )
            await _continuous_aggregate(conn, schema, layout, view_acl, refresh_lookback)
    except psycopg.Error as exc:
        raise translate_error(exc, f"{schema}.apply_timescale") from exc
    _log.info("TimescaleDB layout in place for schema %s", schema)
    return True


async def drop_chunks_before(
    conn: psycopg.AsyncConnection[Any],
    schema: SignalSchema,
    table: PartitionedTable,
    cutoff: datetime,
) -> tuple[str, ...]:
    """Drop every chunk of the hypertable ``schema.table`` whose upper bound is <=
    ``cutoff``; return their names, sorted. Same contract as
    ``partitions.drop_partitions_before`` (the retention job, with the owner's rights)."""
    if cutoff.tzinfo is None:
        raise ValueError("cutoff must be timezone-aware")
    if table not in PARTITIONED_TABLES:
        raise ValueError(f"table must be one of {PARTITIONED_TABLES}")
    try:
        async with conn.transaction():
            cur = await conn.execute(
                "SELECT drop_chunks(%s::regclass, older_than => %s)",
                (f"{schema}.{table}", cutoff),
            )
            dropped = sorted(str(row[0]) for row in await cur.fetchall())
    except psycopg.Error as exc:
        raise translate_error(exc, f"{schema}.drop_chunks_before") from exc
    if dropped:
        _log.info("dropped %d chunks of %s.%s", len(dropped), schema, table)
    return tuple(dropped)


async def is_hypertable(conn: psycopg.AsyncConnection[Any], schema: str, table: str) -> bool:
    """True when ``schema.table`` is a TimescaleDB hypertable; False when it is not or
    TimescaleDB is not installed in this database (or its catalog is not readable)."""
    try:
        async with conn.transaction():
            cur = await conn.execute(
                "SELECT to_regclass('timescaledb_information.hypertables') IS NOT NULL"
            )
            row = await cur.fetchone()
            if row is None or not row[0]:
                return False
            cur = await conn.execute(
                "SELECT 1 FROM timescaledb_information.hypertables"
                " WHERE hypertable_schema = %s AND hypertable_name = %s",
                (schema, table),
            )
            return await cur.fetchone() is not None
    except psycopg.errors.InsufficientPrivilege:
        return False


@dataclass(frozen=True, slots=True)
class _Grant:
    privilege: str
    grantee: str | None  # None: PUBLIC
    grantable: bool


async def _grants(conn: psycopg.AsyncConnection[Any], relation: str) -> list[_Grant]:
    """``relation``'s ACL entries (the owner's own aside), to put back on a new relation."""
    cur = await conn.execute(
        "SELECT a.privilege_type, r.rolname, a.is_grantable"
        " FROM pg_class c, LATERAL aclexplode(c.relacl) a"
        " LEFT JOIN pg_roles r ON r.oid = a.grantee"
        " WHERE c.oid = %s::regclass AND a.grantee <> c.relowner"
        " ORDER BY 2, 1",
        (relation,),
    )
    return [
        _Grant(str(privilege), None if rolname is None else str(rolname), bool(grantable))
        for privilege, rolname, grantable in await cur.fetchall()
    ]


async def _regrant(
    conn: psycopg.AsyncConnection[Any], grants: list[_Grant], target: sql.Composable
) -> None:
    for grant in grants:
        who = sql.SQL("PUBLIC") if grant.grantee is None else sql.Identifier(grant.grantee)
        option = sql.SQL(" WITH GRANT OPTION" if grant.grantable else "")
        statement = sql.SQL("GRANT {} ON {} TO {}{}")
        await conn.execute(statement.format(sql.SQL(grant.privilege), target, who, option))


async def _refuse_rows(conn: psycopg.AsyncConnection[Any], schema: str, table: str) -> None:
    target = sql.Identifier(schema, table)
    cur = await conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(target))
    row = await cur.fetchone()
    if row is not None and row[0]:
        raise TimescaleError("not_empty", f"{schema}.{table}", "move or drop its rows first")


async def _convert(
    conn: psycopg.AsyncConnection[Any], schema: str, table: str, chunk_interval: timedelta
) -> None:
    target = sql.Identifier(schema, table)
    old_name = f"{table}_native"
    old = sql.Identifier(schema, old_name)
    await _refuse_rows(conn, schema, table)
    grants = await _grants(conn, f"{schema}.{table}")
    names = await _index_names(conn, f"{schema}.{table}")
    rename = sql.SQL("ALTER TABLE {} RENAME TO {}")
    await conn.execute(rename.format(target, sql.Identifier(old_name)))
    await conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(target, old))
    copies = await _index_names(conn, f"{schema}.{table}")
    await conn.execute(sql.SQL("DROP TABLE {}").format(old))
    for shape, (name, constraint) in copies.items():
        wanted = names.get(shape)
        if wanted is None or wanted[0] == name:
            continue
        new, old_index = sql.Identifier(wanted[0]), sql.Identifier(name)
        if constraint:
            statement = sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}")
            await conn.execute(statement.format(target, old_index, new))
        else:
            statement = sql.SQL("ALTER INDEX {} RENAME TO {}")
            await conn.execute(statement.format(sql.Identifier(schema, name), new))
    await _regrant(conn, grants, target)
    await conn.execute(
        "SELECT create_hypertable(%s::regclass, 'ts', chunk_time_interval => %s,"
        " create_default_indexes => false)",
        (f"{schema}.{table}", chunk_interval),
    )


async def _index_names(
    conn: psycopg.AsyncConnection[Any], relation: str
) -> dict[str, tuple[str, bool]]:
    """Index shape (its definition after ``USING``, plus uniqueness) -> (index or
    constraint name, whether it backs a constraint)."""
    cur = await conn.execute(
        "SELECT ci.relname, i.indisunique,"
        " substring(pg_get_indexdef(i.indexrelid) FROM ' USING .*$'),"
        " coalesce(con.conname, '')"
        " FROM pg_index i JOIN pg_class ci ON ci.oid = i.indexrelid"
        " LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid"
        " WHERE i.indrelid = %s::regclass",
        (relation,),
    )
    shapes: dict[str, tuple[str, bool]] = {}
    for name, unique, shape, constraint in await cur.fetchall():
        key = f"{'unique ' if unique else ''}{shape}"
        shapes[key] = (constraint or name, bool(constraint))
    return shapes


async def _compress(
    conn: psycopg.AsyncConnection[Any],
    schema: str,
    table: PartitionedTable,
    layout: _Layout,
    compress_after: timedelta,
) -> None:
    cur = await conn.execute(
        "SELECT compression_enabled FROM timescaledb_information.hypertables"
        " WHERE hypertable_schema = %s AND hypertable_name = %s",
        (schema, table),
    )
    row = await cur.fetchone()
    target = sql.Identifier(schema, table)
    if row is None or not row[0]:
        await conn.execute(
            sql.SQL(
                "ALTER TABLE {} SET (timescaledb.compress,"
                " timescaledb.compress_segmentby = {}, timescaledb.compress_orderby = {})"
            ).format(
                target,
                sql.Literal(", ".join(layout.segment_by[table])),
                sql.Literal(", ".join(layout.order_by[table])),
            )
        )
    await conn.execute(
        "SELECT add_compression_policy(%s::regclass, compress_after => %s, if_not_exists => true)",
        (f"{schema}.{table}", compress_after),
    )


async def _drop_plain_view(conn: psycopg.AsyncConnection[Any], schema: str) -> list[_Grant]:
    """Drop the migrations' plain ``vitals_1m`` view (not a continuous aggregate); return
    the GRANTs it carried (empty when there is none to drop)."""
    cur = await conn.execute(
        "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = 'vitals_1m'",
        (schema,),
    )
    row = await cur.fetchone()
    if row is None or row[0] != "v" or await _is_cagg(conn, schema):
        return []
    grants = await _grants(conn, f"{schema}.vitals_1m")
    await conn.execute(sql.SQL("DROP VIEW {}").format(sql.Identifier(schema, "vitals_1m")))
    return grants


async def _is_cagg(conn: psycopg.AsyncConnection[Any], schema: str) -> bool:
    cur = await conn.execute(
        "SELECT 1 FROM timescaledb_information.continuous_aggregates"
        " WHERE view_schema = %s AND view_name = 'vitals_1m'",
        (schema,),
    )
    return await cur.fetchone() is not None


async def _continuous_aggregate(
    conn: psycopg.AsyncConnection[Any],
    schema: str,
    layout: _Layout,
    grants: list[_Grant],
    refresh_lookback: timedelta,
) -> None:
    view = sql.Identifier(schema, "vitals_1m")
    if not await _is_cagg(conn, schema):
        await conn.execute(
            sql.SQL(_CAGG).format(
                view=view, key=sql.Identifier(layout.key), vitals=sql.Identifier(schema, "vitals")
            )
        )
        await conn.execute(sql.SQL("REVOKE ALL ON {} FROM PUBLIC").format(view))
        await _regrant(conn, grants, view)
    await conn.execute(
        "SELECT add_continuous_aggregate_policy(%s::regclass, start_offset => %s,"
        " end_offset => interval '1 minute', schedule_interval => interval '1 minute',"
        " if_not_exists => true)",
        (f"{schema}.vitals_1m", refresh_lookback),
    )
