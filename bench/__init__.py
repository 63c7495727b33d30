"""Benchmarks: `python -m bench` (or `make bench`) runs every figure; see docs/benchmarks.md."""
