"""Fault-injection tools, run by hand: ``python -m tests.tools.NAME``."""
