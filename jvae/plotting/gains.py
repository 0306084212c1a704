"""Gains over a reference model: grouped bars of mean differences with their spread."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["save_gain_bars"]


def save_gain_bars(names: Sequence[str],
                   gains: Mapping[str, tuple[Sequence[float], Sequence[float]]], path,
                   ylabel: str = "gain over the reference (nats)") -> Path:
    """Plots each model's gain over a reference as grouped bars, one group per model.

    A gain is a model's value minus the reference's (e.g. test ELBO or log-likelihood, paired
    by seed); each series is a bar in every group, with the spread as an error bar. A black
    line marks 0 (no gain).

    Args:
      names: ``[R]`` the models (not the reference), one group of bars each.
      gains: ``{series label: (means [R], stds [R])}``, e.g. ``{"test ELBO": (m, s)}``: the
        bars of a series and their error bars (standard deviation over seeds), in ``names``'
        order. The series share each group's width 0.8, in the mapping's order.
      path: output PNG (100 dpi); parent directories are created.
      ylabel: the y-axis label.

    Returns:
      The path written.
    """
    fig = Figure(figsize=(5.5, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(names))
    width = 0.8 / max(len(gains), 1)
    for i, (label, (means, stds)) in enumerate(gains.items()):
        offset = (i - (len(gains) - 1) / 2) * width
        ax.bar(x + offset, list(means), width, yerr=list(stds), label=label, capsize=3)
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xticks(x, list(names))
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path
