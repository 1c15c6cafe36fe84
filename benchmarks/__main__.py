"""Run every benchmark and print its figures: ``python -m benchmarks``.

The storage benchmarks use the PostgreSQL at ``BIOGW_BENCH_DSN`` (default the local
server). ``bench_read`` keeps its 24 h x 100 subjects fill (about 27 GB) in the database
``biogw_bench_read`` between runs; the first run makes it (about 5 minutes).
"""

from __future__ import annotations

from benchmarks import (
    bench_decoders,
    bench_ecg,
    bench_edge,
    bench_ingest,
    bench_read,
    bench_resp,
    bench_spool,
    bench_virtual_link,
    bench_vitals,
)


def main() -> None:
    bench_decoders.main()
    print()
    bench_ecg.main()
    print()
    bench_resp.main()
    print()
    bench_vitals.main([])
    print()
    bench_virtual_link.main([])
    print()
    bench_spool.main([])
    print()
    bench_edge.main([])
    print()
    bench_ingest.main([])
    print()
    bench_read.main([])


if __name__ == "__main__":
    main()
