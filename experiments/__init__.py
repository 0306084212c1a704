"""Reproductions and benchmarks, one script each: ``python -m experiments.NAME``."""
