"""The rate-distortion plane: a beta sweep's distortion D against rate R (Alemi et al., 2018)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["save_rate_distortion"]


def save_rate_distortion(rates: Sequence[float], distortions: Sequence[float],
                         betas: Sequence[float], path, title: str | None = None) -> Path:
    """Plots D against R, one point per beta, with dotted lines of constant ``D + R``.

    ``D + R`` is the negative ELBO, so the dotted lines are iso-ELBO lines: moving along one
    trades rate for distortion at the same bound. Four such lines span the points' range.

    Args:
      rates: ``[S]`` rates ``R = KL(q(z|x) || p(z))`` in nats, one per beta.
      distortions: ``[S]`` distortions ``D = -E_q log p(x|z)`` in nats.
      betas: ``[S]`` the betas, written beside their points.
      path: output PNG (120 dpi); parent directories are created.
      title: optional axes title.

    Returns:
      The path written.
    """
    fig = Figure(figsize=(6, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(rates, distortions, "o-")
    for r, d, b in zip(rates, distortions, betas):
        ax.annotate(f"beta={b:g}", (r, d), textcoords="offset points", xytext=(5, 5), fontsize=8)
    lo, hi = min(r + d for r, d in zip(rates, distortions)), max(rates) + max(distortions)
    grid = np.linspace(0, max(rates) * 1.1, 50)
    for total in np.linspace(lo, hi, 4):
        ax.plot(grid, total - grid, ":", color="grey", lw=0.8)
    ax.set_xlim(0, max(rates) * 1.1)
    ax.set_ylim(min(distortions) * 0.95, max(distortions) * 1.05)
    ax.set_xlabel("rate R = KL(q(z|x) || p(z))  [nats]")
    ax.set_ylabel("distortion D = -E_q log p(x|z)  [nats]")
    if title is not None:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
