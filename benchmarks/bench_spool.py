"""Spool throughput and recovery time (gateway.transport.spool, docs/spool.md).

The cycle is what the transport does per batch: append N messages of 1 KiB, commit,
take them with ``pending()``, ack each (as if PUBACK arrived), commit again. It runs for
batches of 1, 10 and 100 per commit, with ``sync="normal"`` and ``sync="full"``, and
reports messages/s and payload MB/s. Then the time to reopen a spool holding 100,000
pending records (the replay after a restart: integrity check and recount) and to read
them all back with ``pending()``. Figures depend on the disk: ``--dir`` picks it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gateway.transport.spool import Spool, SpoolClass

PAYLOAD = bytes(range(256)) * 4  # 1 KiB
TOPIC = "biogw/clinical/0d4f6c1e-8a53-4a53-9d6b-6b8f2c1e9a10/ecg"
MAX_BYTES = 1 << 30


@dataclass(frozen=True, slots=True)
class CycleResult:
    sync: str
    batch: int
    messages_per_s: float
    mb_per_s: float


def _cycles(spool: Spool, batch: int, seconds: float, after: int) -> tuple[int, float, int]:
    """Run whole cycles for ``seconds``; return (messages, elapsed s, last acked seq)."""
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            spool.append(TOPIC, PAYLOAD, SpoolClass.CLINICAL)
        spool.commit()
        records = spool.pending(after, batch)
        for record in records:
            spool.ack(record.seq)
        after = records[-1].seq
        spool.commit()
        n += batch
        now = time.perf_counter()
        if now >= deadline:
            return n, now - start, after


def cycle(
    directory: Path, sync: Literal["normal", "full"], batch: int, seconds: float
) -> CycleResult:
    """Throughput over ``seconds`` (checkpoints included), after a short warm-up."""
    with Spool(directory, max_bytes=MAX_BYTES, sync=sync) as spool:
        _, _, after = _cycles(spool, batch, min(0.3, seconds / 5), 0)
        n, elapsed, _ = _cycles(spool, batch, seconds, after)
    rate = n / elapsed
    return CycleResult(sync, batch, rate, rate * len(PAYLOAD) / 1e6)


@dataclass(frozen=True, slots=True)
class RecoveryResult:
    records: int
    file_mb: float
    reopen_s: float
    replay_s: float


def recovery(directory: Path, records: int = 100_000) -> RecoveryResult:
    with Spool(directory, max_bytes=MAX_BYTES, sync="normal") as spool:
        for i in range(records):
            spool.append(TOPIC, PAYLOAD, SpoolClass.CLINICAL if i % 2 else SpoolClass.RESEARCH)
            if i % 10_000 == 9_999:
                spool.commit()
    size_mb = sum(p.stat().st_size for p in directory.iterdir()) / 1e6
    best_open = best_replay = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        with Spool(directory, max_bytes=MAX_BYTES, sync="full") as spool:
            opened = time.perf_counter()
            assert spool.counters.records == records
            after = seen = 0
            while batch := spool.pending(after, 1000):
                after = batch[-1].seq
                seen += len(batch)
            replayed = time.perf_counter()
            assert seen == records
        best_open = min(best_open, opened - start)
        best_replay = min(best_replay, replayed - opened)
    return RecoveryResult(records, size_mb, best_open, best_replay)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_spool")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the scratch spools")
    parser.add_argument("--seconds", type=float, default=1.5, help="per cycle case")
    args = parser.parse_args(argv)
    syncs: tuple[Literal["normal", "full"], ...] = ("normal", "full")
    print("== spool cycle (append, commit, pending, ack, commit), 1 KiB payloads")
    print(f"{'sync':<8}{'batch':>7}{'messages/s':>14}{'MB/s':>10}")
    with tempfile.TemporaryDirectory(prefix="bench-spool-", dir=args.dir) as scratch:
        for sync in syncs:
            for batch in (1, 10, 100):
                r = cycle(Path(scratch) / f"{sync}-{batch}", sync, batch, args.seconds)
                print(f"{r.sync:<8}{r.batch:>7}{r.messages_per_s:>14,.0f}{r.mb_per_s:>10.1f}")
        rec = recovery(Path(scratch) / "recovery")
    print(
        f"== recovery: {rec.records:,} pending records ({rec.file_mb:.0f} MB on disk): "
        f"reopen {rec.reopen_s * 1000:.0f} ms, replay via pending() {rec.replay_s * 1000:.0f} ms "
        "(best of 3, warm page cache)"
    )


if __name__ == "__main__":
    main()
