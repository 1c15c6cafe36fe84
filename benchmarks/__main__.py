"""Run every benchmark and print its figures: ``python -m benchmarks``."""

from __future__ import annotations

from benchmarks import bench_decoders, bench_edge, bench_spool, bench_virtual_link


def main() -> None:
    bench_decoders.main()
    print()
    bench_virtual_link.main([])
    print()
    bench_spool.main([])
    print()
    bench_edge.main([])


if __name__ == "__main__":
    main()
