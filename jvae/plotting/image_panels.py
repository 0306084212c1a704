"""Image panels with colour bars: principal components as images, and rows of data,
reconstructions and their difference on a fixed diverging scale."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from jvae.plotting._common import _figure, _save

__all__ = ["save_components", "save_reconstruction_rows", "save_labelled_images"]


def save_components(components, path, *, image_shape=(28, 28),
                    titles: Sequence[str] | None = None, ncol: int | None = None,
                    title: str | None = "principal components") -> Path:
    """Shows vectors (principal components, decoder weights) as images on one symmetric
    diverging scale, with a colour bar.

    Args:
      components: ``[k, H * W]`` or ``[k, H, W]`` vectors, one image each.
      path: output file.
      image_shape: ``(H, W)`` of flat vectors.
      titles: one title per image (default ``"PC 1"``, ``"PC 2"``, ...).
      ncol: images per row (default ``min(k, 5)``).
      title: figure title.

    Returns:
      The path written.

    Raises:
      ValueError: bad shapes or a wrong number of titles.
    """
    c = np.asarray(components, np.float64)
    if c.ndim == 2:
        h, w = (int(s) for s in image_shape)
        if h * w != c.shape[1]:
            raise ValueError(f"components of {c.shape[1]} values do not fit image_shape "
                             f"{tuple(image_shape)}")
        c = c.reshape(len(c), h, w)
    if c.ndim != 3 or len(c) == 0:
        raise ValueError(f"components must be [k, H * W] or [k, H, W], got shape {c.shape}")
    k = len(c)
    titles = list(titles) if titles is not None else [f"PC {i + 1}" for i in range(k)]
    if len(titles) != k:
        raise ValueError(f"{len(titles)} titles for {k} components")
    ncol = min(k, 5) if ncol is None else int(ncol)
    nrow = math.ceil(k / ncol)
    vmax = float(np.max(np.abs(c))) or 1.0
    fig = _figure((1.9 * ncol + 0.9, 2.0 * nrow + 0.5))
    fig.set_layout_engine("constrained")
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
    im = None
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i < k:
            im = ax.imshow(c[i], cmap="RdBu_r", vmin=-vmax, vmax=vmax)
            ax.set_title(titles[i], fontsize=9)
    fig.colorbar(im, ax=list(axes), shrink=0.85, label="weight")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def save_reconstruction_rows(data, reconstruction, path, *, sample=None, n: int = 10,
                             diff_range: float = 0.5, row_labels: Sequence[str] | None = None,
                             title: str | None = None) -> Path:
    """Rows of images: data, reconstructions, and the difference of the last two image rows.

    With ``sample`` (a VAE): four rows, the lecture's figure: data, the decoder mean of the
    posterior mean, the decoder mean of a posterior sample, and (mean - sample). Without it
    (PCA, an autoencoder): data, reconstruction and (data - reconstruction). Image rows are
    shown as grey levels clipped to ``[0, 1]``; the difference row on the diverging map
    ``RdBu_r`` over the fixed range ``[-diff_range, diff_range]`` (values beyond saturate), so
    figures of different models compare. Each kind of row has its colour bar.

    Args:
      data: ``[N, H, W]`` or ``[N, H, W, 1]`` observations (grey levels in ``[0, 1]``).
      reconstruction: the same shape: reconstructions (decoder means of the posterior mean).
      path: output file.
      sample: optional, the same shape: decoder means of a posterior sample.
      n: number of columns (the first ``n`` images).
      diff_range: half-width of the difference row's colour range (> 0).
      row_labels: one label per row (3 or 4 with ``sample``); a default describes each row.
      title: figure title.

    Returns:
      The path written.

    Raises:
      ValueError: shapes that differ, ``n`` or ``diff_range`` out of range, or a wrong number
        of row labels.
    """
    rows = [_grey(data, "data"), _grey(reconstruction, "reconstruction")]
    if sample is not None:
        rows.append(_grey(sample, "sample"))
    if any(r.shape != rows[0].shape for r in rows):
        raise ValueError(f"data, reconstruction and sample must have one shape, got "
                         f"{[r.shape for r in rows]}")
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not diff_range > 0:
        raise ValueError(f"diff_range must be positive, got {diff_range!r}")
    n = min(int(n), len(rows[0]))
    rows = [r[:n] for r in rows]
    diff = rows[-2] - rows[-1]
    if row_labels is None:
        row_labels = (["data", "decoded\nposterior mean", "decoded\nposterior sample",
                       "mean - sample"] if sample is not None
                      else ["data", "reconstruction", "data -\nreconstruction"])
    row_labels = list(row_labels)
    if len(row_labels) != len(rows) + 1:
        raise ValueError(f"{len(row_labels)} row labels for {len(rows) + 1} rows")
    fig = _figure((0.95 * n + 2.6, 1.05 * (len(rows) + 1) + 0.5))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(len(rows) + 1, n, squeeze=False)
    grey = red = None
    for r, row in enumerate(rows + [diff]):
        for j in range(n):
            ax = axes[r, j]
            if r < len(rows):
                grey = ax.imshow(np.clip(row[j], 0, 1), cmap="gray", vmin=0.0, vmax=1.0)
            else:
                red = ax.imshow(row[j], cmap="RdBu_r", vmin=-diff_range, vmax=diff_range)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        axes[r, 0].set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize=9)
    fig.colorbar(grey, ax=list(axes[:-1].ravel()), shrink=0.8, label="grey level")
    fig.colorbar(red, ax=list(axes[-1]), shrink=0.9, label="difference",
                 ticks=[-diff_range, 0, diff_range])
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def save_labelled_images(images, labels, path, *, ncol: int | None = None,
                         title: str | None = None) -> Path:
    """Grey images in a row (or rows of ``ncol``), each titled with its label: the lecture's
    preview of the first ten MNIST training images (``ax[i].set_title(label)``).

    Args:
      images: ``[N, H, W]`` or ``[N, H, W, 1]`` grey levels in ``[0, 1]``.
      labels: ``[N]`` labels (anything ``str`` shows), or ``None`` for untitled images.
      path: output file.
      ncol: images per row (default all in one row).
      title: figure title.

    Returns:
      The path written.

    Raises:
      ValueError: images that are not a grey batch, or labels of another length.
    """
    x = _grey(images, "images")
    if labels is not None and len(labels) != len(x):
        raise ValueError(f"{len(labels)} labels for {len(x)} images")
    ncol = len(x) if ncol is None else max(1, int(ncol))
    nrow = math.ceil(len(x) / ncol)
    fig = _figure((0.75 * ncol + 0.2, 0.9 * nrow + (0.35 if title else 0.1)))
    fig.set_layout_engine("constrained")
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i < len(x):
            ax.imshow(np.clip(x[i], 0, 1), cmap="gray", vmin=0.0, vmax=1.0)
            if labels is not None:
                ax.set_title(str(labels[i]), fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _grey(images, name: str) -> np.ndarray:
    x = np.asarray(images, np.float64)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3 or len(x) == 0:
        raise ValueError(f"{name} must be [N, H, W] or [N, H, W, 1] grey images, got shape "
                         f"{np.shape(images)}")
    return x
