"""Array transforms of image data: stored 8-bit pixels to ``[0, 1]``, static and dynamic
binarisation, centring to [-1, 1] and back, antialiased resizing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jvae.data.arguments import check_number
from jvae.data.validate import UNIT_INTERVAL, check_data

__all__ = ["PIXEL_LEVELS", "pixels_to_unit", "binarize_static", "binarize_dynamic", "centre", "uncentre", "resize_images"]

_RESIZE_CHUNK = 2048  # images per chunk in resize_images; bounds temporary memory

PIXEL_LEVELS = np.arange(256, dtype=np.float32) / np.float32(255)
"""float32 ``[256]``: the grey level ``v / 255`` of each 8-bit pixel value ``v``, rounded as the
readers' ``x.astype(np.float32) / 255`` rounds it (IEEE division)."""
PIXEL_LEVELS.flags.writeable = False


def pixels_to_unit(x):
    """Stored 8-bit pixels to float32 grey levels in ``[0, 1]``; other dtypes unchanged.

    A lookup in :data:`PIXEL_LEVELS`, not ``x / 255``: XLA compiles a division by a
    constant into a multiplication by its reciprocal, which rounds 126 of the 256 levels
    differently from the readers; the table gives the readers' float32 values bit for bit
    in numpy, under ``jit`` and on any backend.

    Args:
        x: uint8 ``[...]`` (numpy, JAX or a tracer), or an array of any other dtype.

    Returns:
        float32 ``[...]`` for uint8 input (numpy in, numpy out), else ``x`` itself.
    """
    if np.dtype(x.dtype) != np.uint8:
        return x
    if isinstance(x, np.ndarray):
        return PIXEL_LEVELS[x]
    return jnp.take(jnp.asarray(PIXEL_LEVELS), x.astype(jnp.int32), axis=0)


def binarize_static(x, threshold: float = 0.5) -> np.ndarray:
    """Fixed binarisation ``x > threshold``.

    Args:
        x: grey levels in ``[0, 1]``, any shape with at least one axis (floating point).
        threshold: cut-off in ``(0, 1)``.

    Returns:
        float32 array of 0/1 with the shape of ``x``.

    Raises:
        ValueError: (one line) ``threshold`` outside ``(0, 1)``; ``x`` not a floating-point
            array, empty, with NaN/Inf or values outside ``[0, 1]`` (e.g. 0..255 grey levels,
            which would all binarise to 1).
    """
    threshold = check_number(threshold, "threshold", low=0.0, high=1.0, low_open=True,
                             high_open=True)
    check_data(x, name="x", support=UNIT_INTERVAL, batch_ndim=None)
    return (np.asarray(x) > threshold).astype(np.float32)


def binarize_dynamic(key: jax.Array, x) -> jax.Array:
    """Dynamic binarisation: a fresh ``Bernoulli(x)`` draw per pixel (jittable).

    Used once per epoch (or step) in training, as in the IWAE paper (Burda et al., 2016).
    Compiled with ``jax.jit`` (and traceable inside other jitted code). A concrete ``x`` is
    checked first (:func:`jvae.data.check_data`); traced, it is not.

    Args:
        key: ``jax.random`` key; the same key gives the same draw.
        x: probabilities in ``[0, 1]`` (floating point), any shape with at least one axis.

    Returns:
        float32 array of 0/1 with the shape of ``x``.

    Raises:
        ValueError: (one line) ``x`` is not a floating-point array, is empty, holds NaN/Inf
            or values outside ``[0, 1]`` (they are no probabilities: a draw would be
            silently clipped).
    """
    check_data(x, name="x", support=UNIT_INTERVAL, batch_ndim=None)
    return _binarize_dynamic(key, x)


@jax.jit
def _binarize_dynamic(key: jax.Array, x) -> jax.Array:
    return jax.random.bernoulli(key, x).astype(jnp.float32)


def centre(x):
    """Maps values in ``[0, 1]`` to ``[-1, 1]``: ``2 x - 1`` (Homework 2's "we center the data,
    because it helps the model to fit"; ``config.dataset.centre``). Works on numpy and JAX
    arrays; float32 in, float32 out."""
    return x * 2.0 - 1.0


def uncentre(x):
    """The inverse of :func:`centre`, ``(x + 1) / 2``: centred data or model outputs back to
    ``[0, 1]`` for display (the homework's ``* 0.5 + 0.5``)."""
    return (x + 1.0) * 0.5


def resize_images(x, size: int | tuple[int, int]) -> np.ndarray:
    """Resizes images with antialiased bilinear interpolation.

    Matches ``torchvision.transforms.Resize(size)`` on square PIL images (PIL's bilinear
    filter with half-pixel centres; its support widens when downsampling), without PIL's
    rounding to uint8. Runs as two matrix products per chunk of images, so memory stays
    bounded by the output plus one chunk.

    Args:
        x: ``[N, H, W, C]`` images.
        size: output side length ``S > 0``, or ``(H', W')``.

    Returns:
        float32 ``[N, S, S, C]`` (``[N, H', W', C]``).
    """
    pair = ((size, size) if isinstance(size, (int, np.integer, bool)) or size is None
            or isinstance(size, str) else tuple(size) if hasattr(size, "__len__") else (size,))
    if len(pair) != 2 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer))
                             or s <= 0 for s in pair):
        raise ValueError(f"size must be a positive int or a pair (H, W), got {size!r}")
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"resize_images expects [N, H, W, C] images, got shape {x.shape}")
    wh, ww = _resize_weights(x.shape[1], pair[0]), _resize_weights(x.shape[2], pair[1])
    out = np.empty((x.shape[0], *pair, x.shape[3]), np.float32)
    for start in range(0, x.shape[0], _RESIZE_CHUNK):  # loop over chunks, not examples
        chunk = x[start:start + _RESIZE_CHUNK].astype(np.float32)
        rows = np.einsum("oh,nhwc->nowc", wh, chunk, optimize=True)
        out[start:start + _RESIZE_CHUNK] = np.einsum("pw,nowc->nopc", ww, rows, optimize=True)
    return out


def _resize_weights(n_in: int, n_out: int) -> np.ndarray:
    """Interpolation matrix ``[n_out, n_in]`` of PIL's antialiased bilinear (triangle) filter."""
    scale = n_in / n_out
    support = max(scale, 1.0)  # the triangle widens by the downsampling factor
    centre = (np.arange(n_out) + 0.5) * scale  # output pixel centres in input coordinates
    dist = (np.arange(n_in) + 0.5)[None, :] - centre[:, None]
    w = np.clip(1.0 - np.abs(dist) / support, 0.0, None)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)
