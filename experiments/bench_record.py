"""What a benchmark's ``--json`` file says about its own run: the command, the date, the commit
and the machine, so that the benchmarks page (``docs/benchmarks.md``, rendered by
``docs/hooks/data_tables.py``) can say what produced each table."""

from __future__ import annotations

import datetime
import os
import pathlib
import platform
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def stamp(result: dict, module: str, argv=None) -> dict:
    """``result`` with ``command``, ``measured`` (ISO date), ``commit``, ``machine`` and
    ``load_average`` (1-minute, at the end) added; ``argv`` defaults to ``sys.argv[1:]``."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    return {**result, "command": " ".join(["python -m", module, *args]),
            "measured": datetime.date.today().isoformat(), "commit": commit or "unknown",
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
            "load_average": load}
