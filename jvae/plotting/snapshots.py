"""The lecture's latent space "on the fly": one panel of codes per epoch.

The lecture redraws, before each training epoch, the 2-D codes of all 10000 MNIST test
images coloured by digit (the autoencoder's as dots, the VAE's posterior means with error
bars of one posterior standard deviation). :func:`save_latent_snapshots` puts those
drawings side by side, one panel per snapshot, so the figure shows how the
latent space forms; the snapshots come from a run with ``config.eval.latent_snapshot_every``
(:func:`jvae.runs.write_latent_snapshot`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from jvae.plotting._common import _figure, _save
from jvae.plotting.latent_space import _groups, _labels, _legend, _palette, _robust_limits

__all__ = ["save_latent_snapshots"]


def save_latent_snapshots(snapshots: Sequence[tuple[int, object, object]], labels, path, *,
                          ncol: int = 4, limits=None, quantile: float = 0.005,
                          title: str | None = None) -> Path:
    """Panels of 2-D codes, one per snapshot, coloured by label.

    Args:
      snapshots: ``(epoch, means [N, 2], stds [N, 2] or None)`` per panel, in order; with
        ``stds`` the codes are drawn as error bars of +-1 standard deviation (the lecture's
        ``ax.errorbar``), without as dots (its ``ax.scatter``). Epoch 0 is "before training".
      labels: ``[N]`` integer labels (the same points in every snapshot), or ``None``.
      path: output file.
      ncol: panels per row.
      limits: ``((x0, x1), (y0, y1))`` shared by all panels; default (``None``) each
        panel its own: the ``quantile`` and ``1 - quantile`` quantiles of its codes (plus a
        margin), as the lecture's redrawn axes scale to each epoch's codes; the number of
        codes outside is written under each panel.
      quantile: see ``limits``.
      title: figure title.

    Returns:
      The path written.

    Raises:
      ValueError: no snapshots, codes that are not ``[N, 2]`` or differ in ``N``, or
        standard deviations of another shape.
    """
    if not snapshots:
        raise ValueError("save_latent_snapshots needs at least one snapshot")
    panels = []
    for epoch, means, stds in snapshots:
        m = np.asarray(means, np.float64)
        if m.ndim != 2 or m.shape[1] != 2:
            raise ValueError(f"snapshot of epoch {epoch}: codes must be [N, 2], got {m.shape}")
        s = None if stds is None else np.asarray(stds, np.float64)
        if s is not None and s.shape != m.shape:
            raise ValueError(f"snapshot of epoch {epoch}: stds {s.shape} must match codes "
                             f"{m.shape}")
        panels.append((int(epoch), m, s))
    n = len(panels[0][1])
    if any(len(m) != n for _, m, _ in panels):
        raise ValueError("every snapshot must hold the same points")
    labels = _labels(labels, n)
    ncol = max(1, min(int(ncol), len(panels)))
    nrow = math.ceil(len(panels) / ncol)
    fig = _figure((2.9 * ncol + 1.2, 2.7 * nrow + 0.6))
    fig.set_layout_engine("constrained")
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
    for ax, (epoch, m, s) in zip(axes, panels):
        (x0, x1), (y0, y1) = limits if limits is not None else _robust_limits(m, quantile)
        _draw_panel(ax, m, s, labels, (x0, x1, y0, y1))
        ax.set_title("before training" if epoch == 0 else f"after epoch {epoch}", fontsize=9)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    _legend(axes[len(panels) - 1], labels)
    if title:
        fig.suptitle(title)
    return _palette(_save(fig, path), colours=64)   # 11 panels of 10000 bars: < 300 KB


def _draw_panel(ax, m: np.ndarray, s: np.ndarray | None, labels, box) -> None:
    x0, x1, y0, y1 = box
    for colour, _name, sel in _groups(labels, len(m)):
        if s is None:
            ax.scatter(m[sel, 0], m[sel, 1], s=1.5, alpha=0.5, color=colour, linewidths=0)
        else:
            ax.errorbar(m[sel, 0], m[sel, 1], xerr=s[sel, 0], yerr=s[sel, 1], fmt="none",
                        ecolor=colour, elinewidth=0.4, alpha=0.4)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    outside = int(np.sum((m[:, 0] < x0) | (m[:, 0] > x1) | (m[:, 1] < y0) | (m[:, 1] > y1)))
    note = f"{len(m)} points" + (f", {outside} outside" if outside else "")
    ax.annotate(note, (0.0, -0.16), xycoords="axes fraction", fontsize=7, color="0.3")
