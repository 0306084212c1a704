"""MkDocs hook: tables generated from ``docs/data/*.json``, so no number on a page is typed.

A page holds a marker line ``<!-- table: NAME -->``; the build replaces it with the table
that :data:`TABLES` renders for ``NAME`` from its data file. ``reliability-probe`` and
``kill-resume`` read ``docs/data/reliability.json``, written by ``python -m
tests.tools.probe_faults --record docs/data/reliability.json`` and ``python -m
tests.tools.kill_resume --record docs/data/reliability.json``. An unknown marker, or a data
file without the key a table needs, fails the build.
"""

from __future__ import annotations

import json
import pathlib
import re

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
MARKER = re.compile(r"^<!-- table: ([a-z0-9-]+) -->$", re.MULTILINE)
#: The probe's verdicts, in the order of the table's columns.
VERDICTS = ("clear error", "ok", "unclear error", "internal exception", "silent wrong result",
            "records lost or duplicated", "hang", "probe failure")
SETS = {"old": "first probe's cases", "new": "issue 28's cases"}


def _load(key: str) -> dict:
    data = json.loads((DATA / "reliability.json").read_text())
    if key not in data:
        raise KeyError(f"docs/data/reliability.json has no {key!r}: run its --record command")
    return data[key]


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def probe_table(summary: dict) -> str:
    """Counts per verdict of each case set of ``tests/tools/probe_faults.py``'s record."""
    counts = summary["counts"]
    others = sorted({v for c in counts.values() for v in c} - set(VERDICTS))
    columns = [*VERDICTS, *others]
    lines = [_row(["cases", "total", *columns]), _row(["---"] * (len(columns) + 2))]
    for name, per in counts.items():
        lines.append(_row([SETS.get(name, name), sum(per.values()),
                           *(per.get(v, 0) for v in columns)]))
    lines.append("")
    lines.append(f"Measured {summary['measured']} with `{summary['command']}`; "
                 f"{summary['faults']} of the cases are faults (signals, kills, records, "
                 f"launched jobs, damaged files, disks); "
                 f"{len(summary['not_ok'])} cases neither a clear error nor ok.")
    return "\n".join(lines)


def kill_resume_table(summary: dict) -> str:
    """One row per stop of ``tests/tools/kill_resume.py``'s record."""
    lines = [_row(["signal", "moment", "caught", "exit (expected)", "resume hint",
                   "checkpoints at the stop", "state", "records (lines)"]),
             _row(["---"] * 8)]
    for r in summary["rows"]:
        same = r.get("records_identical", {})
        records = ", ".join(f"{name} {'identical' if ok else 'DIFFERENT'} "
                            f"({r['record_counts'][name]})" for name, ok in same.items())
        lines.append(_row([
            r["signal"], r["moment"], r["caught"], f"{r['exit']} ({r['exit_expected']})",
            "yes" if r["hint"] else "NO", ", ".join(map(str, r["checkpoints_at_stop"]))
            or "none", "identical" if r.get("state_identical") else "DIFFERENT",
            records or f"resume failed: {r.get('resume_error')}"]))
    lines.append("")
    lines.append(f"Measured {summary['measured']} with `{summary['command']}`: "
                 f"{summary['identical']}/{summary['stops']} stopped and resumed runs identical "
                 f"to the uninterrupted run, whose logs hold "
                 + ", ".join(f"{n} {name}" for name, n in
                             summary["reference_records"].items()) + " records.")
    return "\n".join(lines)


TABLES = {"reliability-probe": lambda: probe_table(_load("probe_faults")),
          "kill-resume": lambda: kill_resume_table(_load("kill_resume"))}


def render(markdown: str) -> str:
    """``markdown`` with every ``<!-- table: NAME -->`` line replaced by its table."""
    def table(match: re.Match) -> str:
        if match.group(1) not in TABLES:
            raise KeyError(f"unknown table marker {match.group(0)}; known: {sorted(TABLES)}")
        return TABLES[match.group(1)]()
    return MARKER.sub(table, markdown)


def on_page_markdown(markdown: str, **kwargs) -> str:
    return render(markdown)
