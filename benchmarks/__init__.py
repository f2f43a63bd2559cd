"""Benchmarks of the mapping, serialization, request counts, sync pacing and memory.

`python -m benchmarks.run` (or `make bench`) runs them all, prints a table with the
targets and writes `benchmarks/results/latest.json`. See docs/benchmarks.md.
"""
