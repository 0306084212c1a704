"""Principal component analysis by the singular value decomposition (the lecture's ``PCA``).

The centred data ``X - mean = U S V^T`` (thin SVD) gives the principal directions as the rows
of ``V^T``, sorted by decreasing singular value; the ``k`` leading ones span the subspace that
keeps the most variance (equivalently, the one with the smallest squared reconstruction
error, Eckart & Young, 1936; Pearson, 1901). Everything is a pure function of the fitted
:class:`PCA` NamedTuple:

    pca = fit_pca(x, 2)                     # x [N, D]
    z = pca_encode(pca, x)                  # [N, 2]
    x_hat = pca_decode(pca, z)              # [N, D], the projection onto the subspace

Conventions follow ``sklearn.decomposition.PCA``: explained variances divide by ``N - 1``,
and each component's sign makes its entry of largest magnitude positive, so the fit is
deterministic. ``fit_pca`` is jittable with ``num_components`` static; the input checks run
on concrete arrays only (see :func:`jvae.data.check_data`).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jvae.data.arguments import check_count
from jvae.data.validate import InvalidDataError, check_data, check_points

__all__ = ["PCA", "fit_pca", "pca_encode", "pca_decode"]


class PCA(NamedTuple):
    """A fitted PCA (a pytree: it can be passed through ``jit`` and ``vmap``).

    Attributes:
      mean: ``[D]`` data mean.
      components: ``[k, D]`` principal directions, orthonormal rows, by decreasing variance.
      explained_variance: ``[k]`` variance of the data along each component,
        ``S_j^2 / (N - 1)``.
      explained_variance_ratio: ``[k]`` its fraction of the total variance.
      singular_values: ``[k]`` the leading singular values ``S_j`` of the centred data.
    """

    mean: jax.Array
    components: jax.Array
    explained_variance: jax.Array
    explained_variance_ratio: jax.Array
    singular_values: jax.Array


def fit_pca(x: jax.Array, num_components: int) -> PCA:
    """Fits PCA with ``num_components`` components by the thin SVD of the centred data.

    Args:
      x: ``[N, D]`` finite floating-point data, one example per row (flatten images first);
        half precision is computed in float32.
      num_components: k, an integer with ``1 <= k < D`` and ``k <= N``; static under
        ``jit``.

    Returns:
      The :class:`PCA`. Traced constant data (no variance) gives explained variance ratios
      of 0.

    Raises:
      ValueError: ``x`` is not a finite 2-D float array, k is out of range or not an
        integer, or every column of ``x`` is constant (no direction to find).
    """
    x, k = _check_num_components(x, num_components, "num_components")
    _check_varies(x)
    return _fit_pca(jnp.asarray(x), k)


def pca_encode(pca: PCA, x: jax.Array) -> jax.Array:
    """Coordinates in the principal subspace, ``(x - mean) @ components^T``.

    Args:
      pca: a fitted :class:`PCA`.
      x: ``[..., D]``.

    Returns:
      ``[..., k]``.
    """
    _check_last_axis(x, pca.components.shape[-1], "x", "D")
    return (jnp.asarray(x) - pca.mean) @ pca.components.T


def pca_decode(pca: PCA, z: jax.Array) -> jax.Array:
    """Maps principal coordinates back to data space, ``mean + z @ components``.

    ``pca_decode(pca, pca_encode(pca, x))`` is the orthogonal projection of ``x`` onto the
    affine principal subspace (the best rank-k reconstruction in squared error).

    Args:
      pca: a fitted :class:`PCA`.
      z: ``[..., k]``.

    Returns:
      ``[..., D]``.
    """
    _check_last_axis(z, pca.components.shape[0], "z", "k")
    return pca.mean + jnp.asarray(z) @ pca.components


# ----------------------------------------------------------------------------- helpers

@jax.jit
def _svd(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Mean, singular values ``[min(N, D)]`` and right singular vectors (rows, sign-fixed)."""
    mean = jnp.mean(x, axis=0)
    _, s, vt = jnp.linalg.svd(x - mean, full_matrices=False)
    # sklearn's svd_flip(u_based_decision=False): the largest |entry| of each row is positive.
    big = jnp.take_along_axis(vt, jnp.argmax(jnp.abs(vt), axis=1)[:, None], axis=1)
    return mean, s, vt * jnp.where(big < 0, -1.0, 1.0).astype(vt.dtype)


@functools.partial(jax.jit, static_argnums=1)
def _fit_pca(x: jax.Array, k: int) -> PCA:
    mean, s, vt = _svd(x)
    n = x.shape[0]
    var = s**2 / max(n - 1, 1)
    total = jnp.sum(var)
    ratio = var[:k] / jnp.where(total > 0, total, 1.0)        # constant data: 0, not NaN
    return PCA(mean=mean, components=vt[:k], explained_variance=var[:k],
               explained_variance_ratio=ratio, singular_values=s[:k])



def _check_x(x: Any, name: str = "x") -> Any:
    """``x`` checked as finite 2-D float points and returned (half precision as float32;
    tracers pass): :func:`jvae.data.check_points`, a one-line ``InvalidDataError``."""
    return check_points(x, name)


def _check_varies(x: Any, name: str = "x") -> None:
    """One-line ``InvalidDataError`` when every column of a concrete ``x`` is constant."""
    if isinstance(x, jax.core.Tracer):
        return
    try:
        flat = bool(jax.device_get(jnp.all(jnp.asarray(x) == jnp.asarray(x)[:1])))
    except jax.errors.ConcretizationTypeError:
        return
    if flat:
        raise InvalidDataError(f"{name}: all {x.shape[0]} rows are the same point (every column "
                               "is constant, total variance 0): there is no direction to find")


def _check_values(x: Any, **kwargs) -> None:
    """:func:`jvae.data.check_data`, skipped while a ``jit`` traces a function closing over
    a concrete array (its value reduction then returns tracers)."""
    try:
        check_data(x, **kwargs)
    except jax.errors.ConcretizationTypeError:
        pass


def _check_count(value: Any, name: str) -> int:
    """A positive Python integer (static), or a one-line ``ValueError``
    (:func:`jvae.data.check_count`)."""
    return check_count(value, name)


def _check_num_components(x: Any, value: Any, name: str) -> tuple[Any, int]:
    """Checks ``x`` and ``1 <= k < D``, ``k <= N``; returns ``(x, k)`` (``x`` as
    :func:`_check_x` returns it)."""
    x = _check_x(x)
    k = _check_count(value, name)
    n, d = x.shape
    if k >= d:
        raise ValueError(f"{name}={k} must be smaller than the data dimension D={d}.")
    if k > n:
        raise ValueError(f"{name}={k} is more than the number of examples N={n}.")
    return x, k


def _check_last_axis(a: Any, size: int, name: str, what: str) -> None:
    shape = getattr(a, "shape", None)
    if shape is None or len(shape) == 0 or shape[-1] != size:
        raise ValueError(f"{name}: expected shape [..., {what}={size}], got "
                         f"{None if shape is None else tuple(shape)}.")
