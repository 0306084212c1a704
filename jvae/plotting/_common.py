"""Shared figure helpers: figures that never touch pyplot, written as PNG files."""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _figure(figsize) -> Figure:
    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path, tight: bool = True) -> Path:
    path = Path(os.fspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight" if tight else None)
    return path  # the figure belongs to no pyplot manager: it is freed with its last reference
