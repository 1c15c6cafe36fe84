"""Ingest throughput: classify + write + commit into PostgreSQL, next to a raw COPY ceiling.

Input: realistic garment ECG at 250 Hz, 100 samples a frame (what ``samples_per_frame``
gives the simulator's 247-byte ATT MTU: 400 ms a notification), from many subjects, each
frame encoded as the clinical (or research) wire payload the gateway publishes. Payloads
are built before timing. Then, on a fresh database (created and dropped here):

* ``ingest``: ``classify`` every message and ``SignalWriter.write`` batches of
  ``--batch`` messages (the ingester's batch: up to N messages or 1 s), one committed
  transaction each, as the INSERT-only ingest login role;
* ``ingest pipelined``: the same with the next batch classified while the previous
  write waits on the server (one thread: asyncio only), as ``PathIngester`` does (its
  committer task takes one batch while the collector classifies the next): the
  ingester's figure;
* ``raw COPY``: the same rows, pre-encoded binary COPY buffers (no decode, no checks),
  COPYed batch by batch into the same table with a commit per batch: the ceiling;
* ``duplicates``: the same batches written again (every frame already stored: the slow
  path through the staging table), frames/s.

Figures: samples/s, rows/s and ingest/raw ratio. The benchmark process is one thread;
PostgreSQL works in its own server process (on this 2-core machine, the other core).
Server: ``BIOGW_BENCH_DSN`` or ``postgresql://postgres@127.0.0.1:5432/postgres`` (a
superuser: it creates and drops ``biogw_bench_<random>`` and the migration roles).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from devices.frame import Frame, Quality, StreamKind, Timebase, Unit
from devices.garment.codec import samples_per_frame
from devices.garment.spec import GarmentStream
from gateway.ingest import IngestPath, Item, SignalWriter, classify
from gateway.ingest import rows as ingest_rows
from gateway.router import ClinicalFrame, ResearchFrame
from gateway.store.migrate import load_migrations, migrate
from gateway.transport import wire
from gateway.transport.topics import TopicLayout

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
FS_HZ = 250.0
LAYOUT = TopicLayout()
_YIELD_EVERY = 50
"""Pipelined mode: messages classified between two turns of the event loop."""
Message = tuple[str, bytes]
Conn = psycopg.AsyncConnection[Any]


def _pseudonym(i: int) -> str:
    """A well-formed pseudonym (``ps1.<domain>.e<epoch>.<32 base32 characters>``)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    digest = "".join(alphabet[(i >> (5 * k)) & 31] for k in range(32))
    return f"ps1.bench.e1.{digest}"


def messages(
    path: IngestPath, *, frames: int, subjects: int, samples: int, now_ns: int
) -> list[Message]:
    """``frames`` wire messages, round-robin over ``subjects`` (ECG, 250 Hz, sequences and
    times contiguous per subject, ending before ``now_ns``)."""
    rng = np.random.default_rng(7)
    period_ns = round(samples * 1e9 / FS_HZ)
    per_subject = -(-frames // subjects)
    start = now_ns - per_subject * period_ns
    ids = [
        uuid.UUID(int=(int(rng.integers(1, 2**62)) << 64) | i, version=4) for i in range(subjects)
    ]
    devices = [str(uuid.UUID(int=(i + 1) << 32, version=4)) for i in range(subjects)]
    ecg = np.round(rng.normal(0.0, 300.0, size=(64, samples)) / 2.44) * 2.44
    out: list[Message] = []
    for n in range(frames):
        s, k = n % subjects, n // subjects
        values = ecg[n % len(ecg)]
        time_ns = start + k * period_ns + s * 1_000
        if path is IngestPath.CLINICAL:
            frame = Frame(
                devices[s], StreamKind.ECG, time_ns, Timebase.UTC, values, Unit.MICROVOLT,
                fs_hz=FS_HZ, sequence=k, quality=Quality.CONTACT_SUPPORTED,
            )  # fmt: skip
            payload = wire.encode_clinical(ClinicalFrame(ids[s], frame, ids[s]))
            out.append((LAYOUT.clinical(ids[s], StreamKind.ECG), payload))
        else:
            value = ResearchFrame(
                _pseudonym(s), StreamKind.ECG, time_ns, values, Unit.MICROVOLT, FS_HZ, None, k,
                Quality.CONTACT_SUPPORTED, (),
            )  # fmt: skip
            out.append((LAYOUT.research(StreamKind.ECG), wire.encode_research(value)))
    return out


@dataclass(frozen=True, slots=True)
class Run:
    name: str
    rows: int
    samples: int
    seconds: float

    def line(self, ceiling: Run | None = None) -> str:
        ratio = (
            f"  {self.seconds and ceiling.seconds / self.seconds:6.1%} of raw" if ceiling else ""
        )
        rate = (
            f"{self.samples / self.seconds / 1e6:6.2f} M samples/s"
            if self.samples
            else ("    (none stored)")
        )
        return (
            f"  {self.name:<26} {rate}"
            f"  {self.rows / self.seconds:9,.0f} rows/s  ({self.rows:,} rows in"
            f" {self.seconds:.2f} s){ratio}"
        )


def _batches(items: Sequence[Message], size: int) -> list[Sequence[Message]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _classify(path: IngestPath, batch: Sequence[Message], now_ns: int) -> list[Item]:
    return [classify(path, LAYOUT, t, p, now_ns=now_ns) for t, p in batch]


async def ingest(
    conn: Conn, path: IngestPath, batches: list[Sequence[Message]], now_ns: int, name: str
) -> Run:
    writer = SignalWriter(path)
    rows = samples = 0
    start = time.perf_counter()
    for batch in batches:
        result = await writer.write(conn, _classify(path, batch, now_ns))
        rows += result.frames + result.frame_duplicates
        samples += result.samples
    return Run(name, rows, samples, time.perf_counter() - start)


async def ingest_pipelined(
    conn: Conn, path: IngestPath, batches: list[Sequence[Message]], now_ns: int
) -> Run:
    """Classify batch n+1 while the write of batch n waits on the server."""
    writer = SignalWriter(path)
    queue: asyncio.Queue[list[Item] | None] = asyncio.Queue(maxsize=1)
    rows = samples = 0

    async def produce() -> None:
        for batch in batches:
            items: list[Item] = []
            for first in range(0, len(batch), _YIELD_EVERY):
                items += _classify(path, batch[first : first + _YIELD_EVERY], now_ns)
                await asyncio.sleep(0)  # as messages arriving one by one would let it
            await queue.put(items)
        await queue.put(None)

    start = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(produce(), name="bench.classify")
        while (items := await queue.get()) is not None:
            result = await writer.write(conn, items)
            rows += result.frames
            samples += result.samples
    return Run("ingest pipelined", rows, samples, time.perf_counter() - start)


async def _storage(admin_dsn: str, path: IngestPath) -> str:
    """How the migrations store the samples column (EXTERNAL: out of line, no pglz)."""
    async with await Conn.connect(admin_dsn, autocommit=True) as admin:
        cur = await admin.execute(
            "SELECT attstorage FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attname = 'samples'",
            (f"{path.schema}.frames",),
        )
        row = await cur.fetchone()
    names = {"p": "PLAIN", "e": "EXTERNAL", "m": "MAIN", "x": "EXTENDED (pglz)"}
    return "?" if row is None else names.get(str(row[0]), str(row[0]))


async def raw_copy(
    conn: Conn, path: IngestPath, batches: list[Sequence[Message]], now_ns: int
) -> Run:
    """The ceiling: pre-encoded COPY buffers of the same rows, one commit per batch."""
    buffers: list[bytes] = []
    rows = samples = 0
    for batch in batches:
        values = [m for m in _classify(path, batch, now_ns) if _size(m)]
        frames: Any = values
        buffers.append(ingest_rows.frame_copy(frames))
        rows += len(values)
        samples += sum(_size(v) for v in values)
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(path.schema, "frames"),
        sql.SQL(", ").join(map(sql.Identifier, ingest_rows.frame_columns(path))),
    )
    start = time.perf_counter()
    for data in buffers:
        async with conn.transaction(), conn.cursor() as cur, cur.copy(copy_sql) as copy:
            await copy.write(data)
    return Run("raw binary COPY", rows, samples, time.perf_counter() - start)


def _size(value: Item) -> int:
    if isinstance(value, ClinicalFrame):
        return int(value.frame.samples.size)
    if isinstance(value, ResearchFrame):
        return int(value.samples.size)
    return 0


@asynccontextmanager
async def bench_database(server: str, path: IngestPath) -> AsyncIterator[tuple[str, str]]:
    """(superuser DSN, ingest-role DSN) of a fresh migrated database, dropped afterwards."""
    name = f"biogw_bench_{secrets.token_hex(4)}"
    async with await Conn.connect(server, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = make_conninfo(server, dbname=name)
    try:
        async with await Conn.connect(dsn, autocommit=True) as conn:
            which = "care" if path is IngestPath.CLINICAL else "research"
            await migrate(conn, load_migrations(which))
        role = "clinical_ingest_login" if path is IngestPath.CLINICAL else "research_ingest_login"
        yield dsn, make_conninfo(dsn, user=role)
    finally:
        async with await Conn.connect(server, autocommit=True) as admin:
            await admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


async def _truncate(admin_dsn: str, path: IngestPath) -> None:
    async with await Conn.connect(admin_dsn, autocommit=True) as admin:
        await admin.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(path.schema, "frames")))
        await admin.execute("CHECKPOINT")


def _best(runs: list[Run]) -> Run:
    return min(runs, key=lambda r: r.seconds)


async def run_path(server: str, path: IngestPath, args: argparse.Namespace) -> None:
    now_ns = time.time_ns()
    msgs = messages(
        path, frames=args.frames, subjects=args.subjects, samples=args.samples, now_ns=now_ns
    )
    batches = _batches(msgs, args.batch)
    # The pre-built payloads live for the whole run; keep full collections from rescanning
    # them (a real ingester holds only the batch in hand).
    gc.collect()
    gc.freeze()
    print(
        f"{path.value} path: {len(msgs):,} ECG frames x {args.samples} samples"
        f" ({len(msgs[0][1])} B payloads), {args.subjects} subjects, batches of {args.batch};"
        f" best of {args.repeat}"
    )
    raw: list[Run] = []
    plain: list[Run] = []
    piped: list[Run] = []
    dups: list[Run] = []
    async with (
        bench_database(server, path) as (admin_dsn, ingest_dsn),
        await Conn.connect(ingest_dsn) as conn,
    ):
        print(f"  samples column storage: {await _storage(admin_dsn, path)}")
        # warm-up: partitions, caches, staging table
        await ingest(conn, path, batches[:2], now_ns, "warm-up")
        for _ in range(args.repeat):  # interleaved, so load on the machine hits all alike
            await _truncate(admin_dsn, path)
            raw.append(await raw_copy(conn, path, batches, now_ns))
            await _truncate(admin_dsn, path)
            plain.append(await ingest(conn, path, batches, now_ns, "ingest (classify+write)"))
            dups.append(await ingest(conn, path, batches, now_ns, "all duplicates (slow path)"))
            await _truncate(admin_dsn, path)
            piped.append(await ingest_pipelined(conn, path, batches, now_ns))
    ceiling = _best(raw)
    print(ceiling.line())
    print(_best(plain).line(ceiling))
    print(_best(piped).line(ceiling))
    print(_best(dups).line(ceiling))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_ingest")
    parser.add_argument("--frames", type=int, default=60_000, help="messages per run")
    parser.add_argument("--subjects", type=int, default=200)
    parser.add_argument("--batch", type=int, default=2_500, help="messages per transaction")
    parser.add_argument(
        "--samples",
        type=int,
        default=samples_per_frame(GarmentStream.ECG, FS_HZ, max_payload=244),
        help="samples per frame (default: the garment's 250 Hz ECG frame at MTU 247)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; best is shown")
    parser.add_argument("--research", action="store_true", help="also run the research path")
    args = parser.parse_args(argv)
    server = os.environ.get("BIOGW_BENCH_DSN", DEFAULT_DSN)
    print("ingest: one benchmark thread (asyncio); PostgreSQL runs in its own processes")
    asyncio.run(run_path(server, IngestPath.CLINICAL, args))
    if args.research:
        asyncio.run(run_path(server, IngestPath.RESEARCH, args))


if __name__ == "__main__":
    main()
