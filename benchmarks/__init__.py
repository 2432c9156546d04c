"""Benchmarks run by ``run.py bench``: figures are ratios measured in one run, never asserted by tests."""
