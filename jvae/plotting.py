"""Figures for VAE experiments: image grids, reconstructions, interpolations, curves, scatters.

Every function takes NumPy arrays (anything ``np.asarray`` accepts, JAX arrays included) and
writes a PNG file. Figures are built with :class:`matplotlib.figure.Figure` and rendered by the
Agg canvas directly, so this module never touches pyplot's global state or the user's backend:
nothing is left open after a call, and it is safe in notebooks, scripts and headless CI alike.
Parent directories of ``path`` are created as needed; every ``save_*`` returns the written path.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "image_grid",
    "save_image_grid",
    "save_reconstructions",
    "save_interpolations",
    "save_curves",
    "save_scatter_2d",
    "save_latent_scatter",
]

DEFAULT_CURVE_KEYS = ("train/elbo", "eval/elbo", "train/distortion", "eval/distortion",
                      "train/rate", "eval/rate")

_GRID_PAD = 2  # image_grid's default padding, used by the reconstruction grid
_SPLIT_LABELS = {"train": "train (mean over the epoch)", "eval": "eval (end of epoch)"}
_METRIC_TITLES = {"elbo": "ELBO", "distortion": "distortion D", "rate": "rate R",
                  "loss": "loss (negative bound)"}


def image_grid(images, nrow: int | None = None, pad: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """Tiles a batch of images into one array, row by row.

    Image ``k`` lands in tile row ``k // ncol`` and tile column ``k % ncol``, where
    ``ncol = min(nrow, N)`` (as torchvision's ``make_grid``); tile ``(r, c)`` starts at pixel
    ``(pad + r * (H + pad), pad + c * (W + pad))``. Tiles after the last image stay ``pad_value``.

    Args:
      images: ``[N, H, W]``, ``[N, H, W, 1]`` (grey) or ``[N, H, W, 3]`` (RGB) grey levels in
        ``[0, 1]``; values outside are clipped. ``uint8`` input is divided by 255 first.
      nrow: images per row; default ``ceil(sqrt(N))``.
      pad: pixels of padding between tiles and around the border.
      pad_value: grey level of the padding.

    Returns:
      float32 array ``[rows * (H + pad) + pad, ncol * (W + pad) + pad]`` for grey input, with a
      trailing axis of 3 for RGB input, where ``rows = ceil(N / ncol)``.

    Raises:
      ValueError: on a wrong rank, channel count, empty batch, or a non-positive ``nrow``.
    """
    images = _as_nhwc(images, "images")
    n, h, w, c = images.shape
    if nrow is None:
        nrow = math.ceil(math.sqrt(n))
    if int(nrow) != nrow or nrow < 1:
        raise ValueError(f"nrow must be a positive integer, got {nrow!r}")
    if int(pad) != pad or pad < 0:
        raise ValueError(f"pad must be a non-negative integer, got {pad!r}")
    nrow, pad = int(nrow), int(pad)
    ncol = min(nrow, n)
    rows = math.ceil(n / ncol)
    grid = np.full((rows * (h + pad) + pad, ncol * (w + pad) + pad, c), pad_value, np.float32)
    for k in range(n):
        r, col = divmod(k, ncol)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top : top + h, left : left + w] = images[k]
    grid = np.clip(grid, 0.0, 1.0)
    return grid[..., 0] if c == 1 else grid


def save_image_grid(images, path, nrow: int | None = None, title: str | None = None) -> Path:
    """Saves a batch of images (samples, say) as one tiled PNG.

    Args:
      images: ``[N, H, W]`` or ``[N, H, W, C]`` with ``C`` in {1, 3}, values in ``[0, 1]``.
      path: output file.
      nrow: images per row; default ``ceil(sqrt(N))``.
      title: optional figure title.

    Returns:
      The path written.
    """
    return _save_grid(image_grid(images, nrow=nrow), path, title)


def save_reconstructions(originals, reconstructions, path, n: int = 8,
                         title: str | None = "data and their reconstructions",
                         row_labels: tuple[str, str] | None = ("data", "reconstruction")) -> Path:
    """Saves observations above their reconstructions, with a title and row labels.

    The batch is cut into blocks of ``n`` images; each block gives one row of observations with
    the matching reconstructions in the row directly below. A last partial block is completed
    with blank tiles, so any ``N`` works. Each tile row is labelled on the left with
    ``row_labels[0]`` (observations) or ``row_labels[1]`` (reconstructions).

    Args:
      originals: ``[N, H, W]`` or ``[N, H, W, C]`` observations in ``[0, 1]``.
      reconstructions: same shape as ``originals``.
      path: output file.
      n: images per row.
      title: figure title; ``None`` for none.
      row_labels: labels of the observation and reconstruction rows; ``None`` for none.

    Returns:
      The path written.

    Raises:
      ValueError: if the shapes differ or are not image batches, or ``row_labels`` is not a
        pair of strings.
    """
    grid = _reconstruction_grid(originals, reconstructions, n)
    labels = None
    if row_labels is not None:
        if isinstance(row_labels, str) or len(row_labels) != 2:
            raise ValueError(f"row_labels must be a pair of strings, got {row_labels!r}")
        num, h = _as_nhwc(originals, "originals").shape[:2]
        num_rows = 2 * math.ceil(num / min(int(n), num))
        labels = [(_GRID_PAD + r * (h + _GRID_PAD) + h / 2, str(row_labels[r % 2]))
                  for r in range(num_rows)]
    return _save_grid(grid, path, title, row_labels=labels)


def save_interpolations(images, path, title: str | None = None) -> Path:
    """Saves interpolations (in latent space, say), one per row.

    Args:
      images: ``[rows, steps, H, W]`` or ``[rows, steps, H, W, C]`` with ``C`` in {1, 3}.
      path: output file.
      title: optional figure title.

    Returns:
      The path written.

    Raises:
      ValueError: on a wrong rank or channel count.
    """
    images = np.asarray(images)
    if images.ndim not in (4, 5):
        raise ValueError(
            f"interpolations must be [rows, steps, H, W] or [rows, steps, H, W, C], got shape {images.shape}"
        )
    rows, steps = images.shape[:2]
    flat = images.reshape((rows * steps,) + images.shape[2:])
    return _save_grid(image_grid(flat, nrow=steps), path, title)


def save_curves(history, path, keys=DEFAULT_CURVE_KEYS, x_key: str = "epoch",
                units: str | None = "nats per example", title: str | None = None) -> Path:
    """Plots training curves, one panel per metric, the splits of a metric overlaid.

    A key ``"SPLIT/METRIC"`` (``"train/elbo"``, ``"eval/elbo"``) is drawn in the panel of
    ``METRIC`` as a line labelled by its split, so the train and evaluation ELBO share axes and
    over-fitting shows as the two lines parting. Train values are means over the epoch's
    batches (the parameters move during the epoch), evaluation values are taken at the end of
    the epoch. With the default keys, a history without ``train/elbo`` (an objective that
    reports only its loss) gets a ``loss`` panel from ``train/loss`` instead.

    Values may be scalars or lists of per-seed values (multi-seed runs); for lists the mean is
    drawn with a shaded band of +- one standard deviation across seeds. ``None`` and missing
    values are skipped.

    Args:
      history: sequence of dicts, one per epoch, as read from ``metrics.jsonl``.
      path: output file.
      keys: metric names to plot; those absent from every entry are skipped.
      x_key: name of the x value in each entry; entries without it use their 1-based index.
      units: y-axis label of every panel (jvae's losses, ELBOs, distortions and rates are all
        in nats per example); ``None`` for none.
      title: optional figure title.

    Returns:
      The path written.

    Raises:
      ValueError: if ``history`` is empty or not a sequence of dicts, or no key is present.
    """
    if isinstance(history, Mapping) or not isinstance(history, Sequence) or len(history) == 0:
        raise ValueError("history must be a non-empty sequence of dicts (one per epoch)")
    if not all(isinstance(entry, Mapping) for entry in history):
        raise ValueError("every history entry must be a dict")
    if isinstance(keys, str):
        keys = (keys,)
    keys = tuple(keys)

    def present(key):
        return any(entry.get(key) is not None for entry in history)

    if keys == DEFAULT_CURVE_KEYS and not present("train/elbo") and present("train/loss"):
        keys = keys + ("train/loss",)
    found = [k for k in keys if present(k)]
    if not found:
        raise ValueError(f"none of the keys {tuple(keys)} is present in the history")
    panels: dict[str, list[tuple[str, str]]] = {}
    for key in found:
        split, sep, metric = key.partition("/")
        if not sep:
            split, metric = "", key
        panels.setdefault(metric, []).append((split, key))

    ncols = min(len(panels), 4)
    nrows = math.ceil(len(panels) / ncols)
    fig = _figure((4.0 * ncols, 3.2 * nrows + (0.4 if title else 0.0)))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    colours: dict[str, str] = {}  # one colour per split in every panel
    in_legend: set[str] = set()
    for ax, (metric, lines) in zip(axes, panels.items()):
        for split, key in lines:
            x, mean, std = _curve_stats(history, key, x_key)
            colour = colours.setdefault(split, f"C{len(colours)}")
            label = _SPLIT_LABELS.get(split, split or key)
            ax.plot(x, mean, marker="." if len(x) < 30 else None, label=label, color=colour)
            if np.any(std > 0):
                ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.25, linewidth=0)
        ax.set_title(_METRIC_TITLES.get(metric, metric))
        ax.set_xlabel(x_key)
        if units:
            ax.set_ylabel(units)
        splits = {split for split, _ in lines if split}
        if splits - in_legend:  # a legend where a split first appears: colours hold throughout
            ax.legend(fontsize="small", loc="best")
            in_legend |= splits
        ax.grid(alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def save_scatter_2d(path, *, data=None, samples=None, means=None, title: str | None = None) -> Path:
    """Scatters 2-D data next to a 2-D model's samples, with shared axis limits.

    Meant for the 2-D Gaussian VAE: ``samples`` are ``x ~ p(x|z)`` (with decoder noise) and
    ``means`` the decoder means ``E[x|z]`` (without decoder noise), ``z ~ p(z)``.

    Args:
      path: output file.
      data: optional ``[N, 2]`` observations.
      samples: optional ``[M, 2]`` model samples with decoder noise.
      means: optional ``[K, 2]`` decoder means.
      title: optional figure title.

    Returns:
      The path written.

    Raises:
      ValueError: if none is given or one is not ``[N, 2]``.
    """
    panels = [
        (name, _as_points(arr, name))
        for name, arr in (("data", data), ("samples", samples), ("means", means))
        if arr is not None
    ]
    if not panels:
        raise ValueError("give at least one of data, samples, means")
    xlim, ylim = _limits(np.concatenate([pts for _, pts in panels]))
    fig = _figure((4.0 * len(panels), 4.0))
    axes = fig.subplots(1, len(panels), squeeze=False).ravel()
    colours = {"data": "C0", "samples": "C1", "means": "C2"}
    for ax, (name, pts) in zip(axes, panels):
        ax.scatter(pts[:, 0], pts[:, 1], s=4, alpha=0.5, color=colours[name], linewidths=0)
        ax.set_title(f"{name} (n={len(pts)})")
        ax.set_xlim(xlim)
        ax.set_ylim(ylim)
        ax.set_aspect("equal", adjustable="box")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
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


# ----------------------------------------------------------------------------- private helpers


def _as_nhwc(images, name: str) -> np.ndarray:
    """Validates an image batch and returns it as float32 ``[N, H, W, C]``."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"{name} must be [N, H, W] or [N, H, W, C], got shape {images.shape}")
    if images.shape[-1] not in (1, 3):
        raise ValueError(f"{name} must have 1 or 3 channels, got {images.shape[-1]} (shape {images.shape})")
    if images.shape[0] == 0 or images.shape[1] == 0 or images.shape[2] == 0:
        raise ValueError(f"{name} is empty (shape {images.shape})")
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    if not np.issubdtype(images.dtype, np.number) and images.dtype != np.bool_:
        raise ValueError(f"{name} must be numeric, got dtype {images.dtype}")
    return images.astype(np.float32)


def _reconstruction_grid(originals, reconstructions, n: int) -> np.ndarray:
    """Interleaves rows of ``n`` observations with rows of their reconstructions; see ``image_grid``."""
    x = _as_nhwc(originals, "originals")
    y = _as_nhwc(reconstructions, "reconstructions")
    if x.shape != y.shape:
        raise ValueError(f"originals {x.shape} and reconstructions {y.shape} must have the same shape")
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    num, n = x.shape[0], int(n)
    ncol = min(n, num)
    blocks = math.ceil(num / ncol)
    tiles = np.ones((blocks, 2, ncol) + x.shape[1:], np.float32)  # blank tiles are white
    for b in range(blocks):
        part = slice(b * ncol, min((b + 1) * ncol, num))
        k = part.stop - part.start
        tiles[b, 0, :k] = x[part]
        tiles[b, 1, :k] = y[part]
    return image_grid(tiles.reshape((-1,) + x.shape[1:]), nrow=ncol)


def _curve_stats(history, key: str, x_key: str):
    """Returns ``(x, mean, std)`` arrays for one metric; ``std`` is 0 for scalar values."""
    xs, means, stds = [], [], []
    for i, entry in enumerate(history):
        value = entry.get(key)
        if value is None:
            continue
        v = np.asarray(value, dtype=np.float64).ravel()
        if v.size == 0:
            continue
        xv = entry.get(x_key, i + 1)
        xs.append(float(np.mean(np.asarray(xv, dtype=np.float64))))
        means.append(float(np.mean(v)))
        stds.append(float(np.std(v)) if v.size > 1 else 0.0)
    return np.asarray(xs), np.asarray(means), np.asarray(stds)


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


def _figure(figsize) -> Figure:
    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save_grid(grid: np.ndarray, path, title: str | None, row_labels=None) -> Path:
    """Draws a tiled grid with square pixels, nearest-neighbour, upscaled by an integer factor.

    ``row_labels``: optional ``(y, text)`` pairs, ``y`` in grid pixels from the top; each text
    is drawn right-aligned in a left margin sized to the longest one.
    """
    h, w = grid.shape[:2]
    dpi = 100
    fontsize = 10
    zoom = max(1, min(8, 800 // max(h, w)))
    title_in = 0.4 if title else 0.0
    label_in = 0.0
    if row_labels:
        widest = max(_text_width_px(text, fontsize, dpi) for _, text in row_labels)
        label_in = (widest + 12) / dpi
    width_in, height_in = w * zoom / dpi, h * zoom / dpi
    fig_w, fig_h = width_in + label_in, height_in + title_in
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((label_in / fig_w, 0.0, width_in / fig_w, height_in / fig_h))
    kwargs = {"cmap": "gray"} if grid.ndim == 2 else {}
    ax.imshow(grid, vmin=0.0, vmax=1.0, interpolation="nearest", **kwargs)
    ax.set_axis_off()
    for y, text in row_labels or ():
        fig.text((label_in - 6 / dpi) / fig_w, (height_in - y * zoom / dpi) / fig_h,
                 text, ha="right", va="center", fontsize=fontsize)
    if title:
        fig.text(0.5, 1.0 - 0.5 * title_in / fig_h, title, ha="center", va="center",
                 fontsize=fontsize + 1)
    return _save(fig, path, tight=False)


def _text_width_px(text: str, fontsize: float, dpi: int) -> float:
    """Rendered width of ``text`` in pixels at ``fontsize`` points."""
    fig = _figure((1.0, 1.0))
    fig.set_dpi(dpi)
    artist = fig.text(0.0, 0.0, text, fontsize=fontsize)
    return artist.get_window_extent(renderer=fig.canvas.get_renderer()).width


def _save(fig: Figure, path, tight: bool = True) -> Path:
    path = Path(os.fspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight" if tight else None)
    return path  # the figure belongs to no pyplot manager: it is freed with its last reference
