"""Benchmarks (timed figures belong here, not in tests)."""
