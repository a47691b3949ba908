"""Pieces of the network benchmarks (bench_gateway, bench_startup, bench_memory)."""
