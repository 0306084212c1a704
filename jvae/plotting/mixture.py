"""Figures of a learned mixture prior from its samples, coloured by mixture component.

The DPM2 notebook's "Beyond" section: with a trainable prior, look at what it learned, by
histograms of each coordinate of prior samples, by plots of pairs of coordinates (to spot
dependence) and by a t-SNE of the samples. Each function takes the arrays of
:func:`jvae.prior_samples_with_components`: ``z [N, D]`` and the component ``[N]`` that drew
each sample; a non-mixture prior (``components=None``) is refused with a one-line error.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D

from jvae.plotting._common import _figure, _save
from jvae.plotting.latent_space import _groups, save_latent_tsne

__all__ = ["save_prior_histograms", "save_prior_pairs", "save_prior_tsne"]


def save_prior_histograms(z, components, path, *, max_coords: int = 20, bins: int = 40,
                          ncols: int = 5, title: str | None = None) -> Path:
    """Histograms of the first ``max_coords`` coordinates of prior samples, one small panel
    each, stacked by mixture component (a component's colour is the same in every panel).

    Args:
      z: ``[N, D]`` prior samples.
      components: ``[N]`` integer component of each sample.
      path: output file.
      max_coords: the most coordinates shown (the first ones).
      bins: bins per histogram (shared by the components of a panel).
      ncols: panels per row.
      title: figure title; default names N and the number of components.

    Returns:
      The path written.

    Raises:
      ValueError: ``z`` is not a finite ``[N, D]`` array, ``components`` is ``None`` or not
        ``[N]`` integers, or ``max_coords``/``bins``/``ncols`` is not a positive integer.
    """
    z, components = _samples(z, components, "save_prior_histograms")
    max_coords, bins, ncols = (_positive(k, v) for k, v in
                               (("max_coords", max_coords), ("bins", bins), ("ncols", ncols)))
    d = min(z.shape[1], max_coords)
    ncols = min(ncols, d)
    nrows = math.ceil(d / ncols)
    fig = _figure((2.3 * ncols + 1.4, 1.9 * nrows + 0.5))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    groups = list(_groups(components, len(z)))
    for k in range(d):
        ax = axes[k]
        edges = np.histogram_bin_edges(z[:, k], bins=bins)
        ax.hist([z[sel, k] for _, _, sel in groups], bins=edges, stacked=True,
                color=[colour for colour, _, _ in groups], linewidth=0)
        ax.set_title(f"z[{k}]", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
    for ax in axes[d:]:
        ax.set_visible(False)
    _legend(fig, groups)
    shown = f"first {d} of {z.shape[1]} coordinates" if d < z.shape[1] else f"{d} coordinates"
    fig.suptitle(title or f"{len(z)} prior samples, {shown}, stacked by component")
    fig.tight_layout(rect=(0, 0, 1.0 - 1.2 / fig.get_figwidth(), 1))
    return _save(fig, path)


def save_prior_pairs(z, components, path, *, num_coords: int = 4, max_points: int = 2000,
                     bins: int = 30, seed: int = 0, title: str | None = None) -> Path:
    """A pair plot of the first ``num_coords`` coordinates of prior samples: scatters of every
    pair below the diagonal, coloured by component, a histogram of each on the diagonal.

    Args:
      z: ``[N, D]`` prior samples, ``D >= 2``.
      components: ``[N]`` integer component of each sample.
      path: output file.
      num_coords: the first coordinates shown (at most ``D``; at least 2).
      max_points: the most points scattered (a subsample without replacement, by ``seed``);
        the histograms use all samples.
      bins: bins of the diagonal histograms.
      seed: the subsample's seed.
      title: figure title.

    Returns:
      The path written.

    Raises:
      ValueError: bad ``z``/``components`` (as :func:`save_prior_histograms`), ``D < 2`` or
        ``num_coords < 2``.
    """
    z, components = _samples(z, components, "save_prior_pairs")
    num_coords, max_points, bins = (_positive(k, v) for k, v in
                                    (("num_coords", num_coords), ("max_points", max_points),
                                     ("bins", bins)))
    if z.shape[1] < 2 or num_coords < 2:
        raise ValueError(f"save_prior_pairs needs at least 2 coordinates, got D = {z.shape[1]} "
                         f"and num_coords = {num_coords}; use save_prior_histograms")
    d = min(z.shape[1], num_coords)
    keep = np.arange(len(z))
    if len(z) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(z), max_points, replace=False))
    groups = list(_groups(components, len(z)))
    fig = _figure((max(2.2 * d, 5.0), 2.2 * d + 0.6))
    axes = fig.subplots(d, d, squeeze=False)
    for i in range(d):
        for j in range(d):
            ax = axes[i, j]
            if j > i:
                ax.set_visible(False)
                continue
            if i == j:
                edges = np.histogram_bin_edges(z[:, i], bins=bins)
                ax.hist([z[sel, i] for _, _, sel in groups], bins=edges, stacked=True,
                        color=[c for c, _, _ in groups], linewidth=0)
                ax.set_yticks([])
            else:
                for colour, _, sel in groups:
                    pts = z[keep][sel[keep]]
                    ax.scatter(pts[:, j], pts[:, i], s=2, alpha=0.6, color=colour,
                               linewidths=0)
            ax.tick_params(labelsize=7)
            if i == d - 1:
                ax.set_xlabel(f"z[{j}]", fontsize=9)
            if j == 0 and i > 0:
                ax.set_ylabel(f"z[{i}]", fontsize=9)
    fig.suptitle(title or f"prior samples: pairs of the first {d} coordinates\n"
                 f"({len(keep)} points scattered)")
    fig.tight_layout()
    corner = axes[0, d - 1].get_position()         # the empty upper triangle's corner panel
    _legend(fig, groups, loc="upper right", anchor=(corner.x1, corner.y1))
    return _save(fig, path)


def save_prior_tsne(embedding, components, path, *, total: int | None = None,
                    perplexity: float | None = None, title: str | None = None) -> Path:
    """Draw a t-SNE map of prior samples coloured by mixture component (computed beforehand,
    e.g. ``jvae.tsne_map(z, components, max_points=1000)``; see :func:`save_latent_tsne`).

    Well-separated components show as separate islands; t-SNE keeps neighbourhoods, not
    distances, so the sizes of the islands and the gaps between them mean nothing.

    Args:
      embedding: ``[N, 2]`` map coordinates of prior samples.
      components: ``[N]`` integer component of each sample.
      path: output file.
      total: how many samples the mapped ones were drawn from.
      perplexity: the map's perplexity, shown in the note.
      title: axes title.

    Returns:
      The path written.

    Raises:
      ValueError: no components (the prior is not a mixture), or bad shapes.
    """
    embedding, components = _samples(embedding, components, "save_prior_tsne")
    return save_latent_tsne(embedding, components, path, total=total, perplexity=perplexity,
                            legend_title="component",
                            title=title or "t-SNE of the prior samples, coloured by mixture "
                                           "component")


# ------------------------------------------------------------------------------------ helpers


def _samples(z, components, fn: str):
    """Checked ``(z [N, D] float64, components [N] int)``; one-line ``ValueError`` otherwise."""
    if components is None:
        raise ValueError(f"{fn} needs the mixture component of each sample, got None: the "
                         "prior is not a mixture (prior_samples_with_components returns None "
                         "for it)")
    z = np.asarray(z, np.float64)
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] == 0:
        raise ValueError(f"{fn}: z must be a non-empty [N, D] array of prior samples, got "
                         f"shape {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError(f"{fn}: z contains NaN or Inf")
    c = np.asarray(components)
    if c.shape != (len(z),) or not np.issubdtype(c.dtype, np.integer):
        raise ValueError(f"{fn}: components must be [{len(z)}] integers (one per sample), got "
                         f"shape {c.shape} and dtype {c.dtype}")
    return z, c


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _legend(fig, groups, loc: str = "center right", anchor=None) -> None:
    handles = [Line2D([], [], ls="", marker="s", markersize=6, color=colour, label=name)
               for colour, name, _ in groups]
    fig.legend(handles=handles, loc=loc, bbox_to_anchor=anchor, fontsize="small",
               title="component",
               title_fontsize="small", frameon=False, ncols=1 if len(handles) <= 10 else 2)
