"""What the docs hooks' table renderers share: the data directory, reading a data file with a
clear error, and a markdown table row."""

from __future__ import annotations

import json
import pathlib

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
