"""Latent-space figures: codes coloured by label (with posterior error bars), the decoded
manifold of a 2-D latent space under the encoded data's density, and a t-SNE map of latents
of more than two dimensions.

The lecture's figures for PCA, the autoencoder and the 2-D VAE: :func:`save_code_scatter`
(PCA projections, autoencoder codes, VAE posterior means with error bars of the posterior
standard deviation), :func:`save_manifold` (a grid of decoder means over ``[-3, 3]^2`` with
contours of the density of the encoded test data) and :func:`save_latent_tsne`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import matplotlib
import numpy as np
from matplotlib.lines import Line2D

from jvae.plotting._common import _figure, _save

__all__ = ["save_code_scatter", "save_manifold", "save_latent_tsne"]


def save_code_scatter(codes, labels, path, *, errors=None,
                      axis_labels: tuple[str, str] = ("z[0]", "z[1]"),
                      title: str | None = None, limits=None, quantile: float = 0.005) -> Path:
    """Scatters 2-D codes coloured by label, optionally with error bars.

    Args:
      codes: ``[N, 2]`` codes (PCA projections, autoencoder codes, posterior means).
      labels: ``[N]`` integer class labels (up to 20 classes get a legend), or ``None``.
      path: output file.
      errors: optional ``[N, 2]`` half-widths of the error bars along each axis (the
        posterior standard deviations of a VAE); drawn as crosses instead of dots.
      axis_labels: the x and y axis labels.
      title: axes title.
      limits: ``((x0, x1), (y0, y1))``; default: the ``quantile`` and ``1 - quantile``
        quantiles of the codes (plus a margin), so a few far outliers do not shrink the
        cloud; how many codes fall outside is written under the axes.
      quantile: see ``limits``.

    Returns:
      The path written.

    Raises:
      ValueError: ``codes`` is not ``[N, 2]``, or ``labels``/``errors`` do not match it.
    """
    pts = _points(codes, "codes", "save_code_scatter")
    labels = _labels(labels, len(pts))
    if errors is not None:
        errors = np.asarray(errors, np.float64)
        if errors.shape != pts.shape:
            raise ValueError(f"errors must have the shape of codes {pts.shape}, got {errors.shape}")
    (x0, x1), (y0, y1) = limits if limits is not None else _robust_limits(pts, quantile)
    fig = _figure((6.6, 5.2))
    ax = fig.subplots()
    for colour, name, sel in _groups(labels, len(pts)):
        if errors is None:
            ax.scatter(pts[sel, 0], pts[sel, 1], s=3, alpha=0.6, color=colour, linewidths=0)
        else:
            ax.errorbar(pts[sel, 0], pts[sel, 1], xerr=errors[sel, 0], yerr=errors[sel, 1],
                        fmt="none", ecolor=colour, elinewidth=0.6, alpha=0.45)
    _legend(ax, labels)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    outside = int(np.sum((pts[:, 0] < x0) | (pts[:, 0] > x1) | (pts[:, 1] < y0) | (pts[:, 1] > y1)))
    note = f"{len(pts)} points" + (f", {outside} outside the axes" if outside else "")
    if errors is not None:
        note += "; bars: +-1 posterior standard deviation"
    ax.annotate(note, (0.0, -0.13), xycoords="axes fraction", fontsize=8, color="0.3")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def save_manifold(decode: Callable[[np.ndarray], np.ndarray], codes, path, *, num: int = 30,
                  limits=(-3.0, 3.0),
                  levels: Sequence[float] = (0.5, 0.9), image_shape=None,
                  title: str | None = None, density: str = "kde", bins: int = 30,
                  hist_range=(-4.0, 4.0), counts: Sequence[float] = (1.0,)) -> Path:
    """Decoder means on a ``num x num`` grid of a 2-D latent space, with density contours.

    Tile ``(i, j)`` (row ``i`` from the top) shows ``decode(z)`` at ``z = (gx[j],
    gy[num-1-i])`` with ``gx``, ``gy`` ``num`` evenly spaced values over ``limits``, each tile
    centred on its ``z``, so the picture's axes are the latent axes. On top, contours of a Gaussian kernel density estimate of ``codes`` (the encoded
    test data, e.g. posterior means) enclose the fractions ``levels`` of the codes (the
    density at the code ranked ``(1 - level) * N``), showing where the data lives.

    Args:
      decode: ``z [M, 2] -> [M, H, W]``, ``[M, H, W, 1]`` or ``[M, H * W]`` decoder means in
        ``[0, 1]`` (NumPy in, anything ``np.asarray`` takes out).
      codes: ``[N, 2]`` encoded data.
      path: output file.
      num: tiles per side (the lecture: 30).
      limits: the grid's range, ``(lo, hi)`` on both axes (the lecture: ``(-3, 3)``) or
        ``((x0, x1), (y0, y1))``.
      levels: fractions of the codes enclosed by the contours, each in ``(0, 1)``.
      image_shape: ``(H, W)`` for flat decoder outputs (default: square).
      title: figure title.
      density: ``"kde"`` (the contours above) or ``"histogram"``: the lecture's overlay,
        contours at the heights ``counts`` of ``np.histogram2d(codes, bins=bins,
        range=[hist_range, hist_range])`` (the lecture: 30 bins over ``[-4, 4]``, level 1,
        the edge of the bins that hold any code), drawn at the bins' centres in latent
        coordinates. (The lecture draws the ``[-3, 3]`` grid of images with ``extent=[-4, 4,
        -4, 4]`` and the histogram of ``[-4, 4]`` at the grid's ``[-3, 3]`` coordinates, so
        its picture and contours do not share axes; here both sit at their own ``z``.)
      bins: histogram bins per axis (``density="histogram"``).
      hist_range: ``(lo, hi)`` of the histogram on both axes.
      counts: contour heights in codes per bin (``density="histogram"``).

    Returns:
      The path written.

    Raises:
      ValueError: the latent space is not 2-D (``codes`` not ``[N, 2]``), bad ``num``,
        ``limits``, ``levels``, ``density``, ``bins`` or ``hist_range``, or decoder outputs
        of the wrong shape.
    """
    pts = _points(codes, "codes", "save_manifold",
                  hint="the decoded manifold needs a 2-D latent space; "
                       "use save_latent_tsne to show latents of more dimensions")
    if int(num) != num or num < 2:
        raise ValueError(f"num must be an integer >= 2, got {num!r}")
    (x0, x1), (y0, y1) = _grid_limits(limits)
    levels = sorted(float(v) for v in levels)
    if any(not 0.0 < v < 1.0 for v in levels):
        raise ValueError(f"levels must lie in (0, 1), got {levels!r}")
    if density not in ("kde", "histogram"):
        raise ValueError(f"density must be 'kde' or 'histogram', got {density!r}")
    num = int(num)
    gx, gy = np.linspace(x0, x1, num), np.linspace(y0, y1, num)
    zx, zy = np.meshgrid(gx, gy[::-1])                     # row 0 at the top: highest z[1]
    z = np.stack([zx.ravel(), zy.ravel()], axis=-1).astype(np.float32)
    tiles = _tiles(np.asarray(decode(z), np.float64), num * num, image_shape)
    h, w = tiles.shape[1:]
    big = tiles.reshape(num, num, h, w).transpose(0, 2, 1, 3).reshape(num * h, num * w)
    hx, hy = (x1 - x0) / (num - 1) / 2, (y1 - y0) / (num - 1) / 2
    extent = (x0 - hx, x1 + hx, y0 - hy, y1 + hy)

    fig = _figure((8.2, 7.4))
    ax = fig.subplots()
    im = ax.imshow(np.clip(big, 0, 1), cmap="gray", vmin=0.0, vmax=1.0, extent=extent,
                   interpolation="antialiased")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label="decoder mean E[x|z] (grey level)")
    finite = pts[np.all(np.isfinite(pts), axis=1)]
    if density == "histogram":
        handles = _histogram_contours(ax, finite, bins, hist_range, counts)
        how = f"{int(bins)}x{int(bins)} histogram of"
    else:
        handles = _kde_contours(ax, finite, extent, levels)
        how = "kernel density of"
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    outside = int(np.sum((pts[:, 0] < extent[0]) | (pts[:, 0] > extent[1])
                         | (pts[:, 1] < extent[2]) | (pts[:, 1] > extent[3])))
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.85)
    ax.set_title(title or f"decoder means on a {num}x{num} grid of z, "
                 f"[{x0:.3g}, {x1:.3g}] x [{y0:.3g}, {y1:.3g}]")
    ax.annotate(f"contours: {how} {len(pts)} encoded points"
                + (f" ({outside} outside the grid)" if outside else ""),
                (0.0, -0.12), xycoords="axes fraction", fontsize=8, color="0.3")
    return _palette(_save(fig, path))


def save_latent_tsne(embedding, labels, path, *, total: int | None = None,
                     perplexity: float | None = None, title: str | None = None,
                     legend_title: str = "label") -> Path:
    """Draw a t-SNE map (van der Maaten & Hinton, 2008) of latents, coloured by label.

    The map is computed beforehand, e.g. by :func:`jvae.tsne_map` (which subsamples and
    checks the latents): this module draws arrays and computes nothing. t-SNE preserves
    neighbourhoods, not distances: cluster sizes and the gaps between clusters carry no
    meaning, and the figure says so.

    Args:
      embedding: ``[N, 2]`` map coordinates.
      labels: ``[N]`` integer class labels, or ``None``.
      path: output file.
      total: how many points the mapped ones were drawn from (shown as "N of total").
      perplexity: the map's perplexity, shown in the note.
      title: axes title (default: "t-SNE map").
      legend_title: title of the colour legend (``"component"`` for mixture components).

    Returns:
      The path written.

    Raises:
      ValueError: ``embedding`` is not a non-empty ``[N, 2]`` finite array.
    """
    emb = _points(embedding, "embedding", "save_latent_tsne",
                  "compute the map with jvae.tsne_map(latents)")
    labels = _labels(labels, len(emb))
    fig = _figure((6.6, 5.2))
    ax = fig.subplots()
    for colour, _, sel in _groups(labels, len(emb)):
        ax.scatter(emb[sel, 0], emb[sel, 1], s=3, alpha=0.7, color=colour, linewidths=0)
    _legend(ax, labels, legend_title)
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.set_title(title or "t-SNE map")
    shown = f"{len(emb)} points" + (f" of {total}" if total and total > len(emb) else "")
    if perplexity is not None:
        shown += f", perplexity {perplexity:g}"
    ax.annotate(f"{shown}; distances between clusters are not meaningful", (0.0, -0.13),
                xycoords="axes fraction", fontsize=8, color="0.3")
    ax.grid(alpha=0.3)
    return _save(fig, path)


# ------------------------------------------------------------------------------------ helpers


def _kde_contours(ax, finite: np.ndarray, extent, levels) -> list:
    """Contours of a Gaussian KDE of ``finite`` enclosing the fractions ``levels``."""
    handles = []
    if len(finite) >= 3 and np.all(np.ptp(finite, axis=0) > 0):
        from scipy.stats import gaussian_kde

        kde = gaussian_kde(finite.T)
        gxx, gyy = np.meshgrid(np.linspace(extent[0], extent[1], 150),
                               np.linspace(extent[2], extent[3], 150))
        dens = kde(np.stack([gxx.ravel(), gyy.ravel()])).reshape(gxx.shape)
        at_codes = kde(finite[: min(len(finite), 5000)].T)
        thresholds = [np.quantile(at_codes, 1.0 - v) for v in levels]
        for v, t, c in zip(levels, thresholds, _CONTOUR_COLOURS):
            ax.contour(gxx, gyy, dens, levels=[t], colors=[c], linewidths=1.8)
            handles.append(Line2D([], [], color=c, lw=1.8,
                                  label=f"{v:.0%} of the encoded data"))
    return handles


def _histogram_contours(ax, finite: np.ndarray, bins: int, hist_range, counts) -> list:
    """The lecture's overlay: contours of ``np.histogram2d`` counts at ``counts``, drawn at
    the bins' centres."""
    if int(bins) != bins or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    lo, hi = (float(v) for v in hist_range)
    if not hi > lo:
        raise ValueError(f"hist_range must be (lo, hi) with hi > lo, got {hist_range!r}")
    counts = sorted(float(c) for c in counts)
    h, xe, ye = np.histogram2d(finite[:, 0], finite[:, 1], bins=int(bins),
                               range=[[lo, hi], [lo, hi]])
    cx, cy = (xe[:-1] + xe[1:]) / 2, (ye[:-1] + ye[1:]) / 2
    handles = []
    for c, colour in zip(counts, _CONTOUR_COLOURS):
        if h.max() >= c:
            ax.contour(cx, cy, h.T, levels=[c], colors=[colour], linewidths=2.5)
            handles.append(Line2D([], [], color=colour, lw=2.5,
                                  label=f"{c:g} encoded point{'s' if c != 1 else ''} per bin"))
    return handles


_CONTOUR_COLOURS = ["#ff3b30", "#ffb000", "#34c759", "#0a84ff"]


def _points(arr, name: str, fn: str, hint: str = "") -> np.ndarray:
    pts = np.asarray(arr, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] == 0:
        extra = f"; {hint}" if hint else ""
        raise ValueError(f"{fn}: {name} must be a non-empty [N, 2] array, got shape "
                         f"{pts.shape}{extra}")
    return pts


def _labels(labels, n: int):
    if labels is None:
        return None
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {labels.shape}")
    return labels


def _groups(labels, n: int):
    """``(colour, name, mask)`` per class (tab10/tab20), or one group without labels."""
    if labels is None:
        yield "C0", None, np.ones(n, bool)
        return
    classes = np.unique(labels)
    cmap = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
    for i, cls in enumerate(classes):
        yield cmap(i % cmap.N), str(cls), labels == cls


def _legend(ax, labels, title: str = "label") -> None:
    if labels is None or len(np.unique(labels)) > 20:
        return
    handles = [Line2D([], [], ls="", marker="o", markersize=5, color=colour, label=name)
               for colour, name, _ in _groups(labels, len(labels))]
    ax.legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0),
              title=title, title_fontsize="small", frameon=False)


def _robust_limits(pts: np.ndarray, q: float, margin: float = 0.05):
    finite = pts[np.all(np.isfinite(pts), axis=1)]
    if finite.size == 0:
        return (-1.0, 1.0), (-1.0, 1.0)
    lo, hi = np.quantile(finite, q, axis=0), np.quantile(finite, 1.0 - q, axis=0)
    span = np.maximum(hi - lo, 1e-6)
    lo, hi = lo - margin * span, hi + margin * span
    return (lo[0], hi[0]), (lo[1], hi[1])


def _palette(path: Path, colours: int = 128) -> Path:
    """Rewrite a PNG with a palette of ``colours`` colours: the manifold's grey levels and a
    few contour colours look the same and the file is about 3x smaller (400 -> 140 KB)."""
    from PIL import Image   # Pillow: a dependency of matplotlib

    with Image.open(path) as im:
        quantised = im.convert("RGB").quantize(colors=colours, method=Image.Quantize.MEDIANCUT)
    quantised.save(path, optimize=True)
    return path


def _grid_limits(limits):
    """``(lo, hi)`` for both axes or ``((x0, x1), (y0, y1))`` -> the latter, checked."""
    arr = np.asarray(limits, np.float64)
    if arr.shape == (2,):
        arr = np.stack([arr, arr])
    if arr.shape != (2, 2) or not np.all(np.isfinite(arr)) or not np.all(arr[:, 1] > arr[:, 0]):
        raise ValueError(f"limits must be (lo, hi) or ((x0, x1), (y0, y1)), finite and "
                         f"increasing, got {limits!r}")
    return (arr[0, 0], arr[0, 1]), (arr[1, 0], arr[1, 1])


def _tiles(images: np.ndarray, count: int, image_shape) -> np.ndarray:
    if images.shape[0] != count:
        raise ValueError(f"decode returned {images.shape[0]} images for {count} codes")
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim == 2:
        d = images.shape[1]
        h, w = image_shape if image_shape is not None else (int(round(d ** 0.5)),) * 2
        if h * w != d:
            raise ValueError(f"decode returned vectors of {d} values; pass image_shape")
        images = images.reshape(count, h, w)
    if images.ndim != 3:
        raise ValueError(f"decode must return [M, H, W], [M, H, W, 1] or [M, H * W] images, "
                         f"got shape {images.shape}")
    return images
