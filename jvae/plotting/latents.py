"""Scatter figures: 2-D data beside a 2-D model's samples, and latent codes by label."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

from jvae.plotting._common import _figure, _save

__all__ = ["save_scatter_2d", "save_latent_scatter"]

def save_scatter_2d(path, *, data=None, samples=None, means=None, title: str | None = None,
                    panels=None) -> Path:
    """Scatters 2-D data next to a 2-D model's samples, with shared axis limits.

    Meant for the 2-D Gaussian VAE: ``samples`` are ``x ~ p(x|z)`` (with decoder noise) and
    ``means`` the decoder means ``E[x|z]`` (without decoder noise), ``z ~ p(z)``.

    Args:
      path: output file.
      data: optional ``[N, 2]`` observations.
      samples: optional ``[M, 2]`` model samples with decoder noise.
      means: optional ``[K, 2]`` decoder means.
      title: optional figure title.
      panels: optional mapping ``name -> [N, 2]`` drawn after the three above, one panel
        each under its name (e.g. Homework 2's ``visualize_2d_data``: ``{"train": ...,
        "test": ...}``).

    Returns:
      The path written.

    Raises:
      ValueError: if none is given or one is not ``[N, 2]``.
    """
    named = [("data", data), ("samples", samples), ("means", means)]
    named += list((panels or {}).items())
    panels = [(str(name), _as_points(arr, str(name))) for name, arr in named if arr is not None]
    if not panels:
        raise ValueError("give at least one of data, samples, means")
    xlim, ylim = _limits(np.concatenate([pts for _, pts in panels]))
    # equal axes: the panels are as tall as the data's aspect makes them (no empty band
    # between the title and flat data), plus room for the titles
    aspect = (ylim[1] - ylim[0]) / max(xlim[1] - xlim[0], 1e-12)
    height = min(4.0, max(1.2, 4.0 * aspect)) + 0.5 + (0.5 * (title or "").count("\n") + 0.4
                                                        if title else 0.0)
    fig = _figure((4.0 * len(panels), height))
    axes = fig.subplots(1, len(panels), squeeze=False).ravel()
    colours = {"data": "C0", "samples": "C1", "means": "C2"}
    for i, (ax, (name, pts)) in enumerate(zip(axes, panels)):
        ax.scatter(pts[:, 0], pts[:, 1], s=4, alpha=0.5, color=colours.get(name, f"C{i}"),
                   linewidths=0)
        ax.set_title(f"{name} (n={len(pts)})")
        ax.set_xlim(xlim)
        ax.set_ylim(ylim)
        ax.set_aspect("equal", adjustable="box")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.set_layout_engine("constrained")      # keeps the suptitle next to flat equal-axes panels
    return _save(fig, path)


def save_latent_scatter(latents, labels, path, title: str | None = None) -> Path:
    """Scatters 2-D latent means, coloured by label.

    Args:
      latents: ``[N, 2]`` latent codes (posterior means, say).
      labels: ``[N]`` class labels, or ``None`` for one colour. Up to 20 distinct integer labels
        get a discrete palette and a legend; other labels a continuous colour map and a colour bar.
      path: output file.
      title: optional axes title.

    Returns:
      The path written.

    Raises:
      ValueError: if ``latents`` is not ``[N, 2]`` or ``labels`` has another length.
    """
    pts = _as_points(latents, "latents")
    fig = _figure((5.5, 5.0))
    ax = fig.subplots()
    if labels is None:
        ax.scatter(pts[:, 0], pts[:, 1], s=3, alpha=0.6, linewidths=0)
    else:
        labels = np.asarray(labels)
        if labels.shape != (len(pts),):
            raise ValueError(f"labels must have shape ({len(pts)},), got {labels.shape}")
        classes = np.unique(labels)
        discrete = len(classes) <= 20 and (
            labels.dtype.kind in "biuUSO" or np.all(np.equal(np.mod(labels, 1), 0))
        )
        if discrete:
            palette = "tab10" if len(classes) <= 10 else "tab20"
            colours = matplotlib.colormaps[palette]
            for i, cls in enumerate(classes):
                sel = labels == cls
                ax.scatter(pts[sel, 0], pts[sel, 1], s=3, alpha=0.6, color=colours(i), label=str(cls), linewidths=0)
            ax.legend(markerscale=4, fontsize="small", loc="best")
        else:
            sc = ax.scatter(pts[:, 0], pts[:, 1], c=labels.astype(float), s=3, alpha=0.6, cmap="viridis", linewidths=0)
            fig.colorbar(sc, ax=ax)
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def _as_points(arr, name: str) -> np.ndarray:
    pts = np.asarray(arr, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty [N, 2] array, got shape {pts.shape}")
    return pts


def _limits(pts: np.ndarray, margin: float = 0.05):
    finite = pts[np.all(np.isfinite(pts), axis=1)]
    if finite.size == 0:
        return (-1.0, 1.0), (-1.0, 1.0)
    lo, hi = finite.min(axis=0), finite.max(axis=0)
    span = np.maximum(hi - lo, 1e-6)
    lo, hi = lo - margin * span, hi + margin * span
    return (lo[0], hi[0]), (lo[1], hi[1])
