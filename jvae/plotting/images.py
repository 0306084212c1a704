"""Image figures: tiled grids of samples, reconstructions with row labels, interpolations.

Every grid is saved at least 1000 pixels wide (an integer zoom of its
pixels, :func:`grid_zoom`), with its labels and title in a font sized to the picture."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jvae.plotting._common import _figure, _save

__all__ = ["image_grid", "save_image_grid", "save_reconstructions", "save_interpolations",
           "as_images", "save_oversampled", "save_conditional_samples", "grid_zoom"]

_GRID_PAD = 2  # image_grid's default padding, used by the reconstruction grid


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


def save_image_grid(images, path, nrow: int | None = None, title: str | None = None, *,
                    image_shape=None) -> Path:
    """Saves a batch of images (samples, say) as one tiled PNG.

    Args:
      images: ``[N, H, W]`` or ``[N, H, W, C]`` with ``C`` in {1, 3}, values in ``[0, 1]``
        (clipped for display); with ``image_shape``, any ``[N, ...]`` of that many values per
        image (flat vectors ``[N, H * W]``).
      path: output file.
      nrow: images per row; default ``ceil(sqrt(N))``.
      title: optional figure title.
      image_shape: ``(H, W)`` or ``(H, W, C)`` of one image, see :func:`as_images`.

    Returns:
      The path written.
    """
    if image_shape is not None:
        images = as_images(images, image_shape, name="images")
    return _save_grid(image_grid(images, nrow=nrow), path, title)


def as_images(x, image_shape=None, *, batch_ndim: int = 1, name: str = "x") -> np.ndarray:
    """Observations of any shape jvae models as a float32 image batch ``[N, H, W, C]``.

    Args:
      x: ``[*batch, H, W]``, ``[*batch, H, W, C]`` (``C`` in {1, 3}) or, with
        ``image_shape``, ``[*batch, ...]`` holding ``prod(image_shape)`` values per
        observation (flat vectors ``[*batch, H * W]``), ``batch_ndim`` leading axes.
      image_shape: ``(H, W)`` or ``(H, W, C)`` of one observation; needed for flat vectors.
      batch_ndim: number of leading batch axes, flattened into ``N``.
      name: what to call ``x`` in messages.

    Returns:
      ``[N, H, W, C]`` float32 (values as given: figures clip them to ``[0, 1]``).

    Raises:
      ValueError: a shape that is not an image batch, or does not fit ``image_shape``.
    """
    x = np.asarray(x)
    if x.ndim <= batch_ndim or any(s == 0 for s in x.shape[:batch_ndim]):
        raise ValueError(f"{name} must have {batch_ndim} non-empty batch axes and the "
                         f"observation axes, got shape {x.shape}")
    lead, obs = x.shape[:batch_ndim], x.shape[batch_ndim:]
    if image_shape is None:
        if len(obs) not in (2, 3):
            raise ValueError(f"{name} has observations of shape {obs}, not images [H, W] or "
                             "[H, W, C]: pass image_shape=(H, W) or (H, W, C)")
        shape = obs
    else:
        shape = tuple(int(v) for v in image_shape)
        if len(shape) not in (2, 3) or min(shape) < 1:
            raise ValueError(f"image_shape must be (H, W) or (H, W, C), got {image_shape!r}")
        if math.prod(obs) != math.prod(shape):
            raise ValueError(f"{name} has observations of shape {obs} ({math.prod(obs)} "
                             f"values), which do not fit image_shape {shape}")
    shape = shape if len(shape) == 3 else shape + (1,)
    return _as_nhwc(x.reshape((math.prod(lead),) + shape), name)


def save_oversampled(samples, path, *, image_shape=None,
                     title: str | None = "prior samples: one column per z ~ p(z), "
                                         "rows x ~ p(x|z)") -> Path:
    """Oversampled prior samples: one column per latent draw, its observations below it.

    Column ``j`` shows ``samples[j, 0], ..., samples[j, S - 1]`` from top to bottom (the
    DPM2 notebook's ``make_grid(model.sample(16, 4, oversample=True), nrow=16)``): down a
    column only the likelihood's noise changes, across a row the latent draw.

    Args:
      samples: ``[num, S, *obs]`` observations (:func:`jvae.prior_observations`) with
        ``*obs`` an image shape or, with ``image_shape``, a flat vector; values are clipped
        to ``[0, 1]`` for display.
      path: output file.
      image_shape: ``(H, W)`` or ``(H, W, C)`` of one observation, for flat observations.
      title: figure title; ``None`` for none.

    Returns:
      The path written.

    Raises:
      ValueError: ``samples`` is not ``[num, S, *image]`` (or does not fit ``image_shape``).
    """
    x = as_images(samples, image_shape, batch_ndim=2, name="samples")
    num, s = np.shape(samples)[:2]
    tiles = x.reshape((num, s) + x.shape[1:]).swapaxes(0, 1).reshape(x.shape)  # row-major
    return _save_grid(image_grid(tiles, nrow=num), path, title)


def save_conditional_samples(inputs, samples, path, *, n: int = 16, image_shape=None,
                             title: str | None = "conditional samples x' ~ p(x|z), "
                                                 "z ~ q(z|x)") -> Path:
    """Inputs in the top row, their conditional samples in the rows below.

    Column ``j`` shows ``inputs[j]`` above ``samples[j, 0], ..., samples[j, S - 1]``; the
    first ``n`` inputs are shown. The rows are labelled ``data`` and ``x' ~ p(x|z)``.

    Args:
      inputs: ``[B, *obs]`` observations.
      samples: ``[B, S, *obs]`` conditional samples (:func:`jvae.conditional_observations`).
      path: output file.
      n: the most columns (inputs) shown.
      image_shape: ``(H, W)`` or ``(H, W, C)`` of one observation, for flat observations.
      title: figure title; ``None`` for none.

    Returns:
      The path written.

    Raises:
      ValueError: shapes that are not image batches or do not match, or a bad ``n``.
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    x = as_images(inputs, image_shape, name="inputs")
    y = as_images(samples, image_shape, batch_ndim=2, name="samples")
    b, s = np.shape(samples)[:2]
    if b != len(x) or y.shape[1:] != x.shape[1:]:
        raise ValueError(f"samples {np.shape(samples)} must be [B, S, ...] for inputs "
                         f"{np.shape(inputs)} (the same B and observation shape)")
    k = min(int(n), b)
    y = y.reshape((b, s) + y.shape[1:])[:k].swapaxes(0, 1)           # [S, k, H, W, C]
    tiles = np.concatenate([x[None, :k], y]).reshape((-1,) + x.shape[1:])
    h = x.shape[1]
    labels = [(_GRID_PAD + h / 2, "data"),
              (_GRID_PAD + h + _GRID_PAD + (s * (h + _GRID_PAD) - _GRID_PAD) / 2,
               "x' ~ p(x|z)")]
    return _save_grid(image_grid(tiles, nrow=k), path, title, row_labels=labels)


def save_reconstructions(originals, reconstructions, path, n: int = 8,
                         title: str | None = "data and their reconstructions",
                         row_labels: Sequence[str] | None = ("data", "reconstruction"), *,
                         sampled=None) -> Path:
    """Saves observations above their reconstructions, with a title and row labels.

    The batch is cut into blocks of ``n`` images; each block gives one row of observations with
    the matching reconstructions in the row directly below (and, with ``sampled``, a third
    row: reconstructions decoded from a posterior sample, where ``reconstructions`` decode the
    posterior mean). A last partial block is completed with blank tiles, so any ``N`` works.
    Each tile row is labelled on the left with its entry of ``row_labels``.

    Args:
      originals: ``[N, H, W]`` or ``[N, H, W, C]`` observations in ``[0, 1]``.
      reconstructions: same shape as ``originals``.
      path: output file.
      n: images per row.
      title: figure title; ``None`` for none.
      row_labels: one label per kind of row (2, or 3 with ``sampled``; the default pair gets
        ``"from a sample"`` added); ``None`` for none.
      sampled: optional, same shape as ``originals``: a third row per block.

    Returns:
      The path written.

    Raises:
      ValueError: if the shapes differ or are not image batches, or ``row_labels`` does not
        hold one string per kind of row.
    """
    recs = [reconstructions] + ([] if sampled is None else [sampled])
    grid = _reconstruction_grid(originals, *recs, n=n)
    labels = None
    if row_labels is not None:
        kinds = len(recs) + 1
        if sampled is not None and tuple(row_labels) == ("data", "reconstruction"):
            row_labels = ("data", "from the mean", "from a sample")
        if isinstance(row_labels, str) or len(row_labels) != kinds:
            raise ValueError(f"row_labels must hold {kinds} strings, got {row_labels!r}")
        num, h = _as_nhwc(originals, "originals").shape[:2]
        num_rows = kinds * math.ceil(num / min(int(n), num))
        labels = [(_GRID_PAD + r * (h + _GRID_PAD) + h / 2, str(row_labels[r % kinds]))
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


def grid_zoom(height: int, width: int) -> int:
    """The integer upscaling of a grid of ``height x width`` pixels in the saved figures.

    The smallest factor that makes the grid at least 1000 pixels wide (a 16 x 4 grid of
    28-pixel digits, 482 px, is drawn 1446 px wide; 8 x 8 digits, 242 px, 1210 px), at most
    8 and at most what keeps the grid under 2400 pixels high; at least 1.

    Args:
      height: the grid's height in pixels (:func:`image_grid`'s output).
      width: its width in pixels.

    Returns:
      The zoom factor, an integer in [1, 8].
    """
    by_width = math.ceil(_GRID_MIN_WIDTH / max(int(width), 1))
    return max(1, min(8, by_width, _GRID_MAX_HEIGHT // max(int(height), 1)))


def _grid_fontsize(width_px: float) -> float:
    """Font size (points) of a grid figure's labels and title: 1/90 of the image width in
    pixels, between 10 and 20, so that labels stay readable when the picture is scaled
    down to a page's width."""
    return float(min(20.0, max(10.0, width_px / 90.0)))


# Grid figures are drawn at least this many pixels wide (see grid_zoom) ...
_GRID_MIN_WIDTH = 1000
# ... and, through the zoom, at most this many pixels high where the width allows.
_GRID_MAX_HEIGHT = 2400


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


def _reconstruction_grid(originals, *reconstructions, n: int) -> np.ndarray:
    """Interleaves rows of ``n`` observations with rows of each of their reconstructions;
    see ``image_grid``."""
    x = _as_nhwc(originals, "originals")
    ys = [_as_nhwc(r, "reconstructions") for r in reconstructions]
    for y in ys:
        if x.shape != y.shape:
            raise ValueError(f"originals {x.shape} and reconstructions {y.shape} must have the "
                             "same shape")
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    num, n = x.shape[0], int(n)
    ncol = min(n, num)
    blocks = math.ceil(num / ncol)
    tiles = np.ones((blocks, 1 + len(ys), ncol) + x.shape[1:], np.float32)  # blank: white
    for b in range(blocks):
        part = slice(b * ncol, min((b + 1) * ncol, num))
        k = part.stop - part.start
        for r, rows in enumerate([x, *ys]):
            tiles[b, r, :k] = rows[part]
    return image_grid(tiles.reshape((-1,) + x.shape[1:]), nrow=ncol)


def _save_grid(grid: np.ndarray, path, title: str | None, row_labels=None) -> Path:
    """Draws a tiled grid with square pixels, nearest-neighbour, upscaled by an integer factor
    (:func:`grid_zoom`) at 100 dpi, fonts sized to the picture (:func:`_grid_fontsize`).

    ``row_labels``: optional ``(y, text)`` pairs, ``y`` in grid pixels from the top; each text
    is drawn right-aligned in a left margin sized to the longest one. ``title`` may hold
    several lines.
    """
    h, w = grid.shape[:2]
    dpi = 100
    zoom = grid_zoom(h, w)
    fontsize = _grid_fontsize(w * zoom)
    lines = title.count("\n") + 1 if title else 0
    title_in = (lines * 1.3 * (fontsize + 1) / 72 + 0.25) if title else 0.0
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
                 fontsize=fontsize + 1, multialignment="center")
    return _save(fig, path, tight=False)


def _text_width_px(text: str, fontsize: float, dpi: int) -> float:
    """Rendered width of ``text`` in pixels at ``fontsize`` points."""
    fig = _figure((1.0, 1.0))
    fig.set_dpi(dpi)
    artist = fig.text(0.0, 0.0, text, fontsize=fontsize)
    return artist.get_window_extent(renderer=fig.canvas.get_renderer()).width
