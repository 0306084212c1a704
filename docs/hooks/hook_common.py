"""What the docs hooks' table renderers share: the data directory, reading a data file with a
clear error, a markdown table row, and the project root on ``sys.path`` (for the renderers
that reuse an experiment's own table function)."""

from __future__ import annotations

import json
import pathlib
import sys

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"


def load(name: str) -> dict:
    """``docs/data/NAME`` as JSON; a missing file names itself and what to run."""
    path = DATA / name
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the command its page names")
    return json.loads(path.read_text())


def row(cells) -> str:
    """One markdown table row."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def project_on_path() -> None:
    """Puts the project root on ``sys.path`` (once), so that ``experiments`` imports."""
    root = str(DATA.parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
