"""Benchmarks: each measures a subject against a baseline in the same run and reports their ratio."""
