"""Scaling laws: a quantity against a size in log-log panels, with reference slopes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["save_scaling_panels"]


def save_scaling_panels(panels: Sequence[Mapping], path, *, xlabel: str = "K",
                        ylabel: str = "SNR", title: str | None = None, ncols: int = 2,
                        dpi: int = 80) -> Path:
    """Plots log-log lines (e.g. a gradient's SNR against the number of samples K), one panel
    per group, with dashed reference slopes.

    Each panel is a mapping with ``"title"``, ``"lines"`` and optionally ``"guides"``:

    * a line: ``{"label": str, "x": [S], "y": [S], "resolved": [S] bools (optional)}``;
      a ``None``/non-positive ``y`` is skipped, a point not resolved is drawn hollow (and is
      meant to be left out of any fitted slope);
    * a guide: ``{"slope": s, "label": str, "through": line index (default 0), "style":
      matplotlib line style (default "--")}``, a grey line ``y ~ x^s`` through that line's
      first resolved point.

    Args:
      panels: the panels, in reading order.
      path: output PNG; parent directories are created.
      xlabel: the x-axis label (shared by the panels).
      ylabel: the y-axis label.
      title: the figure's title.
      ncols: panels per row.
      dpi: resolution.

    Returns:
      The path written.
    """
    if not panels:
        raise ValueError("save_scaling_panels needs at least one panel.")
    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(5.2 * ncols, 3.9 * nrows), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, panel in zip(axes, panels):
        anchors = []
        for i, line in enumerate(panel["lines"]):
            x = np.asarray(line["x"], float)
            y = np.asarray([np.nan if v is None else v for v in line["y"]], float)
            res = np.asarray(line.get("resolved", [True] * len(x)), bool)
            ok = np.isfinite(y) & (y > 0)
            colour = line.get("color", f"C{i}")
            ax.plot(x[ok], y[ok], "-", color=colour, lw=1.2, label=line["label"])
            ax.plot(x[ok & res], y[ok & res], "o", color=colour, ms=4)
            ax.plot(x[ok & ~res], y[ok & ~res], "o", mfc="none", color=colour, ms=6)
            first = np.flatnonzero(ok & res)
            anchors.append((x[first[0]], y[first[0]]) if first.size else None)
        for guide in panel.get("guides", ()):
            anchor = anchors[guide.get("through", 0)]
            if anchor is None:
                continue
            xs = np.array([min(np.min(line["x"]) for line in panel["lines"]),
                           max(np.max(line["x"]) for line in panel["lines"])], float)
            ax.plot(xs, anchor[1] * (xs / anchor[0]) ** guide["slope"],
                    guide.get("style", "--"), color="grey",
                    lw=0.9, label=guide["label"])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(panel["title"], fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6.5, loc="best")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi)
    return path
