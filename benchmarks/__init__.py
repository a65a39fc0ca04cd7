"""Benchmarks of opensearch-mm against the emulator (see docs/performance.md)."""
