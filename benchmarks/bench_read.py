"""Read latency of ``gateway.store.signals.read_signal`` on a day of ECG for 100 people.

The fill: 24 h of 250 Hz ECG for 100 subjects in ``clinical.frames`` of a dedicated care
database (``biogw_bench_read`` on the server named by ``BIOGW_BENCH_DSN``, default
``postgresql://postgres@127.0.0.1:5432/postgres``): one row per frame of 100 samples
(400 ms, what the garment simulator sends at 250 Hz: ``codec.samples_per_frame``), so
216,000 frames a subject, 21.6 M rows, 2.16e9 samples of float64 (~17 GB of samples).
Rows are built server-side (``INSERT ... SELECT`` over ``generate_series``); the sample
bytes come from a table of 1,000 random blocks of real size, picked per row by sequence
number. A marker table records the fill's parameters and which subjects are done, so a
later run reuses the database (and an interrupted fill resumes); ``--refill`` redoes it.

The reads: ``--reads`` calls of ``read_signal`` for 10 s of ECG of a random subject, half
for the latest 10 s of the fill (the dashboard's "now") and half ending at a random time
within the filled day; p50/p95/p99/max in ms per kind. Target: p99 <= 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from devices.frame import StreamKind
from devices.garment.codec import samples_per_frame
from devices.garment.spec import GarmentStream
from gateway.store import MigrationError
from gateway.store.migrate import load_migrations, migrate
from gateway.store.partitions import ensure_partitions
from gateway.store.signals import read_signal

Conn = psycopg.AsyncConnection[Any]
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_DATABASE = "biogw_bench_read"
FS_HZ = 250.0
SPF = samples_per_frame(GarmentStream.ECG, FS_HZ)  # 100 samples = 400 ms
FRAME_NS = round(SPF * 1e9 / FS_HZ)
BLOCKS = 1000
_NS_PER_S = 1_000_000_000
_NAMESPACE = uuid.UUID("6f1c2b0e-5b8e-4c1a-9f7d-3a2b1c0d9e8f")

CHUNK_S = 900  # one fill transaction: 15 min of every subject, time-major
LAYOUT = "time-major"

_SETUP = """
CREATE SCHEMA IF NOT EXISTS bench;
CREATE TABLE IF NOT EXISTS bench.fill (params jsonb NOT NULL);
CREATE TABLE IF NOT EXISTS bench.chunks (
    chunk integer PRIMARY KEY, n_rows bigint NOT NULL, seconds double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS bench.blocks (i integer PRIMARY KEY, b bytea NOT NULL);
"""

# Frames in time order, every subject's frame of one instant next to the others, as a
# live ingester interleaves them: one subject's 10 s lie on ~25 different heap pages.
_INSERT = """
INSERT INTO clinical.frames (subject_id, device_key, stream, time_ns, ts, fs_hz, sequence,
    n_samples, channels, unit, quality, samples)
SELECT (%(subjects)s::uuid[])[t.k + 1], (%(devices)s::uuid[])[t.k + 1], 'ecg', t.ns,
    timestamptz 'epoch' + (t.ns / 1000) * interval '1 microsecond',
    %(fs)s, t.seq, %(spf)s, '{}', 'uV', 1, b.b
FROM (SELECT i / %(n)s AS seq, (i %% %(n)s)::integer AS k,
             %(start)s::bigint + (i / %(n)s) * %(frame_ns)s::bigint AS ns
      FROM generate_series(%(first)s::bigint * %(n)s, (%(last)s::bigint + 1) * %(n)s - 1) AS i
     ) AS t
CROSS JOIN LATERAL (
    SELECT blocks.b FROM bench.blocks WHERE blocks.i = (t.seq * 7 + t.k) %% %(blocks)s
) AS b
"""


@dataclass(frozen=True, slots=True)
class FillParams:
    subjects: int
    hours: int
    fs_hz: float
    samples_per_frame: int
    end_ns: int
    layout: str = LAYOUT

    @property
    def start_ns(self) -> int:
        return self.end_ns - self.hours * 3600 * _NS_PER_S

    @property
    def frames_per_subject(self) -> int:
        return self.hours * 3600 * _NS_PER_S // FRAME_NS

    @property
    def chunks(self) -> int:
        return -(-self.hours * 3600 // CHUNK_S)

    def same_fill(self, other: FillParams) -> bool:
        """Equal but for the end time (each run proposes its own "now")."""
        return (self.subjects, self.hours, self.fs_hz, self.samples_per_frame, self.layout) == (
            other.subjects,
            other.hours,
            other.fs_hz,
            other.samples_per_frame,
            other.layout,
        )

    def as_json(self) -> str:
        return json.dumps(
            {
                "subjects": self.subjects,
                "hours": self.hours,
                "fs_hz": self.fs_hz,
                "samples_per_frame": self.samples_per_frame,
                "end_ns": self.end_ns,
                "layout": self.layout,
            },
            sort_keys=True,
        )


def subject_id(k: int) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"subject-{k}")


def _device_key(k: int) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"device-{k}")


def _at(ns: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)


async def _ensure_database(server_dsn: str, name: str) -> str:
    async with await psycopg.AsyncConnection.connect(server_dsn, autocommit=True) as conn:
        cur = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if await cur.fetchone() is None:
            await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_conninfo(server_dsn, dbname=name)


async def _drop_database(server_dsn: str, name: str) -> None:
    async with await psycopg.AsyncConnection.connect(server_dsn, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


async def _stored_params(conn: Conn) -> tuple[FillParams | None, int, int]:
    """The stored fill (None if none or of an older layout), chunks done, rows stored."""
    cur = await conn.execute("SELECT params::text FROM bench.fill")
    row = await cur.fetchone()
    cur = await conn.execute("SELECT count(*), coalesce(sum(n_rows), 0) FROM bench.chunks")
    done = await cur.fetchone()
    assert done is not None
    stored = None
    if row is not None:
        values = json.loads(row[0])
        if values.get("layout") == LAYOUT:
            stored = FillParams(**values)
    return stored, int(done[0]), int(done[1])


async def _reset(conn: Conn, params: FillParams) -> None:
    """Empty the frames and the marker, then record ``params`` and fresh blocks."""
    await conn.execute("TRUNCATE clinical.frames, bench.fill, bench.chunks, bench.blocks")
    rng = np.random.default_rng(20261122)
    async with conn.cursor() as cur, cur.copy("COPY bench.blocks (i, b) FROM STDIN") as copy:
        for i in range(BLOCKS):
            ecg_uv = np.rint(rng.normal(0.0, 300.0, params.samples_per_frame)) * 0.5
            await copy.write_row((i, ecg_uv.astype("<f8").tobytes()))
    await conn.execute("INSERT INTO bench.fill (params) VALUES (%s::jsonb)", (params.as_json(),))


async def _fill_worker(dsn: str, params: FillParams, todo: asyncio.Queue[int]) -> None:
    frames_per_chunk = CHUNK_S * _NS_PER_S // FRAME_NS
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while not todo.empty():
            chunk = todo.get_nowait()
            first = chunk * frames_per_chunk
            last = min(params.frames_per_subject, first + frames_per_chunk) - 1
            began = time.perf_counter()
            async with conn.transaction():
                await conn.execute("SET LOCAL synchronous_commit = off")
                cur = await conn.execute(
                    _INSERT,
                    {
                        "subjects": [subject_id(k) for k in range(params.subjects)],
                        "devices": [_device_key(k) for k in range(params.subjects)],
                        "n": params.subjects,
                        "fs": params.fs_hz,
                        "spf": params.samples_per_frame,
                        "start": params.start_ns,
                        "frame_ns": FRAME_NS,
                        "first": first,
                        "last": last,
                        "blocks": BLOCKS,
                    },
                )
                seconds = time.perf_counter() - began
                await conn.execute(
                    "INSERT INTO bench.chunks (chunk, n_rows, seconds) VALUES (%s, %s, %s)",
                    (chunk, cur.rowcount, seconds),
                )
            print(f"  chunk {chunk:3d}: {cur.rowcount:,} rows in {seconds:5.1f} s", flush=True)


async def vacuum(dsn: str) -> None:
    """What autovacuum does to an insert-only table, done now: hint bits and the
    visibility map set, statistics fresh, so reads do not pay for the load."""
    began = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("VACUUM (ANALYZE) clinical.frames")
    print(f"== VACUUM (ANALYZE) clinical.frames took {time.perf_counter() - began:,.0f} s")


async def fill(dsn: str, params: FillParams, *, refill: bool, workers: int) -> FillParams:
    """Fill (or resume filling) ``params``; return the fill the database holds."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        stored, _, _ = await _stored_params(conn)
        if refill or stored is None:
            await _reset(conn, params)
        elif not stored.same_fill(params):
            raise SystemExit(
                f"the database holds a fill of {stored.subjects} subjects x {stored.hours} h;"
                " pass --refill to replace it"
            )
        else:
            params = stored
        await ensure_partitions(
            conn, "clinical", ("frames",), _at(params.start_ns), _at(params.end_ns)
        )
        cur = await conn.execute("SELECT chunk FROM bench.chunks")
        filled = {int(r[0]) for r in await cur.fetchall()}
    todo: asyncio.Queue[int] = asyncio.Queue()
    for chunk in range(params.chunks):
        if chunk not in filled:
            todo.put_nowait(chunk)
    if todo.empty():
        return params
    print(f"== filling {todo.qsize()} chunks of {CHUNK_S} s x {params.subjects} subjects")
    began = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for w in range(workers):
            group.create_task(_fill_worker(dsn, params, todo), name=f"bench.fill[{w}]")
    print(f"== fill took {time.perf_counter() - began:,.0f} s")
    await vacuum(dsn)
    return params


async def _report_fill(dsn: str, params: FillParams) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        _, done, rows = await _stored_params(conn)
        if done < params.chunks:
            raise SystemExit(f"fill incomplete: {done}/{params.chunks} chunks")
        cur = await conn.execute(
            "SELECT (SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits"
            "  WHERE inhparent = 'clinical.frames'::regclass),"
            " (SELECT sum(seconds) FROM bench.chunks)"
        )
        row = await cur.fetchone()
        assert row is not None
        size, seconds = row
    print(
        f"== fill ({params.layout}): {rows:,} rows, {rows * params.samples_per_frame:,} samples,"
        f" {int(size) / 1e9:.1f} GB on disk (pg_total_relation_size of the partitions),"
        f" {float(seconds):,.0f} s of INSERT time summed over chunks"
    )


def _percentiles(label: str, ms: Sequence[float]) -> None:
    a = np.asarray(ms)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    print(
        f"{label:<24}{len(a):>7}{p50:>9.2f}{p95:>9.2f}{p99:>9.2f}{a.max():>9.2f}"
        f"  {'ok' if p99 <= 20.0 else 'OVER 20 ms'}"
    )


async def reads(dsn: str, params: FillParams, n: int, seed: int) -> None:
    rng = random.Random(seed)
    window = 10 * _NS_PER_S
    latest: list[float] = []
    anywhere: list[float] = []
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        for i in range(n + 50):
            k = rng.randrange(params.subjects)
            end = params.end_ns if i % 2 else rng.randrange(params.start_ns + window, params.end_ns)
            began = time.perf_counter()
            series = await read_signal(conn, subject_id(k), StreamKind.ECG, end - window, end)
            elapsed = (time.perf_counter() - began) * 1000
            assert series.samples.shape[0] in (2499, 2500, 2501), series.samples.shape
            if i < 50:
                continue  # warm-up: connection, prepared statements, cache
            (latest if i % 2 else anywhere).append(elapsed)
    print(f"== read_signal, 10 s of ECG (2,500 samples), {n} reads after 50 warm-up")
    print(f"{'case':<24}{'reads':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    _percentiles("latest 10 s ('now')", latest)
    _percentiles("random 10 s in the day", anywhere)
    _percentiles("all", latest + anywhere)


async def run(args: argparse.Namespace) -> None:
    server = os.environ.get("BIOGW_BENCH_DSN", DEFAULT_DSN)
    dsn = await _ensure_database(server, args.database)
    host = conninfo_to_dict(dsn).get("host", "?")
    print(f"== database {args.database} on {host}")
    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await migrate(conn, load_migrations())
    except MigrationError as exc:  # the kept fill predates a migration: start afresh
        print(f"== the stored fill has an older schema ({exc.reason}): dropping it")
        await _drop_database(server, args.database)
        dsn = await _ensure_database(server, args.database)
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await migrate(conn, load_migrations())
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(_SETUP)
    now_ns = time.time_ns() // _NS_PER_S * _NS_PER_S
    wanted = FillParams(args.subjects, args.hours, FS_HZ, SPF, now_ns)
    params = await fill(dsn, wanted, refill=args.refill, workers=args.workers)
    if args.vacuum:
        await vacuum(dsn)
    await _report_fill(dsn, params)
    if not args.fill_only:
        await reads(dsn, params, args.reads, args.seed)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_read")
    parser.add_argument("--subjects", type=int, default=100)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--reads", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="concurrent fill connections")
    parser.add_argument("--database", default=DEFAULT_DATABASE, help="kept between runs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--refill", action="store_true", help="drop the stored fill, redo it")
    parser.add_argument("--fill-only", action="store_true")
    parser.add_argument("--vacuum", action="store_true", help="VACUUM (ANALYZE) the frames again")
    args = parser.parse_args(argv)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
