"""The rate by latent dimension as bars: which dimensions of a latent space carry information.

A dimension whose posterior equals the prior for every input costs no rate and tells the
decoder nothing; a bar per dimension of ``R_d = mean_x KL(q(z_d|x) || p(z_d))``
(:func:`jvae.evaluation.rate_per_dimension`), on a log axis with a threshold line, shows at a
glance how many dimensions a trained VAE uses.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.patches import Patch

from jvae.plotting._common import _figure, _save

__all__ = ["save_latent_rates"]


def save_latent_rates(rates, path, *, threshold: float = 0.01, sort: bool = False,
                      title: str | None = None) -> Path:
    """Bars of the rate of every latent dimension, a dashed line at ``threshold``.

    Bars at or above ``threshold`` are blue (active), the others grey. The y axis is
    logarithmic, from ``threshold / 100``: a value below that (an unused dimension's
    ~1e-5 nats, or a Monte Carlo estimate at or below zero) is drawn as a stub at
    ``threshold / 100`` and counted in the legend. The legend says how many of the ``D``
    dimensions are active.

    Args:
      rates: ``[D]`` finite rates in nats per example (dimension ``d`` at index ``d``).
      path: output file.
      threshold: positive; the active-unit threshold in nats.
      sort: order the bars by rate, largest first (the tick labels stay the dimensions'
        indices); ``False``: by index.
      title: axes title (default: one naming the quantity).

    Returns:
      The path written.

    Raises:
      ValueError: ``rates`` is not a non-empty finite vector, or ``threshold`` is not positive.
    """
    r = np.asarray(rates, np.float64)
    if r.ndim != 1 or r.size == 0 or not np.all(np.isfinite(r)):
        raise ValueError(f"rates must be a non-empty finite vector [D], got shape {r.shape}"
                         + ("" if r.ndim != 1 or r.size == 0 else " with non-finite values"))
    if isinstance(threshold, bool) or not float(threshold) > 0 or not math.isfinite(threshold):
        raise ValueError(f"threshold must be a positive number, got {threshold!r}")
    threshold = float(threshold)
    d = r.size
    order = np.argsort(-r, kind="stable") if sort else np.arange(d)
    floor = threshold / 100.0
    values = r[order]
    active = values >= threshold
    fig = _figure((min(16.0, max(7.0, 0.28 * d + 2.0)), 4.4))
    ax = fig.add_subplot(1, 1, 1)
    pos = np.arange(d)
    ax.bar(pos, np.maximum(values, floor), width=0.8,
           color=np.where(active, "C0", "0.65").tolist(), zorder=2)
    ax.set_yscale("log")
    ax.set_ylim(floor / 1.5, max(float(values.max()), threshold) * 2.0)
    ax.axhline(threshold, color="C3", linestyle="--", linewidth=1.2, zorder=3)
    step = max(1, math.ceil(d / 40))
    ax.set_xticks(pos[::step], [str(int(i)) for i in order[::step]],
                  fontsize=8 if d <= 40 else 7, rotation=0 if d <= 40 else 90)
    ax.set_xlim(-0.7, d - 0.3)
    ax.set_xlabel("latent dimension d" + (" (sorted by rate)" if sort else ""))
    ax.set_ylabel("mean KL(q(z_d|x) || p(z_d)), nats")
    ax.grid(axis="y", alpha=0.3, which="both", zorder=0)
    handles = [Patch(color="C0", label=f"active (>= {threshold:g} nats): "
                                       f"{int(active.sum())} of {d}"),
               Patch(color="0.65", label=f"inactive: {int(d - active.sum())} of {d}"),
               ax.get_lines()[-1]]
    handles[-1].set_label(f"threshold {threshold:g} nats")
    low = int(np.sum(values < floor))
    if low:
        handles.append(Patch(color="none", label=f"{low} below {floor:g} (drawn at {floor:g})"))
    ax.legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0),
              frameon=False)
    ax.set_title(title or "rate per latent dimension, mean KL(q(z_d|x) || p(z_d))")
    return _save(fig, path)
