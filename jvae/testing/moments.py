"""Streaming moments of gradient draws: mean and variance without keeping the draws.

:func:`~jvae.testing.gradient_draws` returns every draw, ``[n, P]`` on the host; for a large
network and many draws that does not fit. :func:`gradient_moments` draws the same kind of
gradients chunk by chunk on the device, reduces each chunk to its mean and sum of squared
deviations there, and combines the chunks on the host in float64 with the pairwise update of
Chan, Golub & LeVeque (1979), so memory holds one ``[chunk, P]`` block and a few ``[P]``
vectors:

    m = gradient_moments(objective, params, x, 4096, jax.random.key(0),
                         state=state, modules=("encoder", "posterior"))
    m.mean, m.var, m.count            # [P], [P] (unbiased), 4096

The same update serves any stream of ``[n, P]`` blocks:
``combine_moments(moments_of(a), moments_of(b))`` equals ``moments_of(concatenate([a, b]))``
up to float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jvae.objectives.base import EstimatorState, Objective, as_objective
from jvae.testing.draws import DEFAULT_CHUNK_BYTES, check_fixed_point
from jvae.data.arguments import check_count

__all__ = ["Moments", "moments_of", "combine_moments", "gradient_moments",
           "gradient_moments_at_points"]


class Moments(NamedTuple):
    """The first two moments of ``count`` vectors of length ``P``, in float64.

    Attributes:
      count: number of vectors summarised.
      mean: ``[P]`` their mean.
      m2: ``[P]`` their sum of squared deviations from ``mean`` (``count - 1`` times the
        unbiased variance).
    """

    count: int
    mean: np.ndarray
    m2: np.ndarray

    @property
    def var(self) -> np.ndarray:
        """``[P]`` unbiased per-coordinate variance, ``m2 / (count - 1)`` (needs ``count >= 2``)."""
        return self.m2 / (self.count - 1)


def moments_of(draws) -> Moments:
    """The :class:`Moments` of a block of draws.

    Args:
      draws: ``[n, P]`` array (``n >= 1``), e.g. a chunk of :func:`gradient_draws`.

    Returns:
      ``Moments(n, mean [P], m2 [P])``, computed in float64.
    """
    d = np.asarray(draws, np.float64)
    if d.ndim != 2 or d.shape[0] < 1:
        raise ValueError(f"draws must be [n, P] with n >= 1, got shape {d.shape}.")
    mean = d.mean(axis=0)
    return Moments(int(d.shape[0]), mean, np.sum((d - mean) ** 2, axis=0))


def combine_moments(a: Moments, b: Moments) -> Moments:
    """The :class:`Moments` of two disjoint sets of draws together (Chan et al.'s update).

    With ``n = a.count + b.count`` and ``delta = b.mean - a.mean``: mean
    ``a.mean + delta * b.count / n`` and ``m2 = a.m2 + b.m2 + delta^2 a.count b.count / n``,
    in float64; exact up to rounding, and stable where the textbook sum of squares is not.
    An empty side (``count == 0``) returns the other unchanged.

    Args:
      a: moments of the first set (``mean``, ``m2``: ``[P]``).
      b: moments of the second set (``[P]``).

    Returns:
      ``Moments(a.count + b.count, mean [P], m2 [P])``.
    """
    if a.count == 0:
        return b
    if b.count == 0:
        return a
    mean_a, mean_b = np.asarray(a.mean, np.float64), np.asarray(b.mean, np.float64)
    total = a.count + b.count
    delta = mean_b - mean_a
    mean = mean_a + delta * (b.count / total)
    m2 = (np.asarray(a.m2, np.float64) + np.asarray(b.m2, np.float64)
          + delta ** 2 * (a.count * b.count / total))
    return Moments(total, mean, m2)


def gradient_moments(objective: Callable | Objective, params: Any, x: jax.Array, num_draws: int,
                     key: jax.Array, *, state: EstimatorState | None = None,
                     chunk_size: int | None = None,
                     modules: Sequence[str] | None = None) -> Moments:
    """Mean and variance of an objective's gradient over independent draws, chunk by chunk.

    Draw ``j`` of chunk ``i`` differentiates ``loss(params, state, key_ij, x)`` with
    ``key_ij = jax.random.split(jax.random.fold_in(key, i), chunk_size)[j]``, the estimator
    state held fixed. A chunk's draws are computed by one compiled program (``jax.vmap`` over
    its keys) and reduced on the device to their mean and sum of squared deviations (float32);
    the chunks are combined on the host by :func:`combine_moments` (float64). ``num_draws`` is
    rounded up to whole chunks.

    Args:
      objective: a loss ``loss(params, key, x) -> (loss, aux)`` or an
        :class:`~jvae.objectives.Objective` (differentiated: the loss, the negative bound).
      params: the model's variables, held fixed.
      x: ``[B, *data_shape]`` observations, held fixed.
      num_draws: draws wanted (>= 2).
      key: typed ``jax.random.key``.
      state: the estimator state held fixed over the draws; default the objective's
        ``init(jax.random.fold_in(key, 1), x)`` (empty for a stateless loss).
      chunk_size: draws per compiled program; default as many as fit
        :data:`~jvae.testing.DEFAULT_CHUNK_BYTES` (``[chunk, P]`` float32), at most
        ``num_draws``.
      modules: differentiate only the subtrees ``params["params"][name]`` for these names
        (e.g. ``("encoder", "posterior")``, a VAE's inference network), the rest held fixed;
        default all of ``params``. Either way the ``P`` coordinates are in
        ``ravel_pytree`` order: with ``modules`` the columns
        ``param_mask(params, *modules)`` selects.

    Returns:
      ``Moments(count, mean [P], m2 [P])`` in float64, ``count`` the draws taken (a multiple
      of the chunk size); ``.var`` is the ``[P]`` unbiased variance.
    """
    num_draws = check_count(num_draws, "num_draws (at least 2 for a variance)", minimum=2)
    check_fixed_point(params, x)
    obj = as_objective(objective)
    if state is None:
        state = obj.init(jax.random.fold_in(key, 1), x)
    split, merge = _differentiated(params, modules)
    num_params = int(ravel_pytree(split(params))[0].size)
    if chunk_size is None:
        chunk_size = max(1, min(num_draws, DEFAULT_CHUNK_BYTES // (4 * max(num_params, 1))))
    chunk_size = check_count(chunk_size, "chunk_size")

    @jax.jit
    def chunk_moments(params, state, x, keys):
        def one(k):
            def f(part):
                return obj.loss(merge(params, part), state, k, x)[0]
            return ravel_pytree(jax.grad(f)(split(params)))[0]

        g = jax.vmap(one)(keys)                                        # [C, P]
        m = jnp.mean(g, axis=0)
        return m, jnp.sum((g - m) ** 2, axis=0)

    total = Moments(0, np.zeros(num_params), np.zeros(num_params))
    for i in range(max(1, math.ceil(num_draws / chunk_size))):
        keys = jax.random.split(jax.random.fold_in(key, i), chunk_size)
        mean, m2 = chunk_moments(params, state, x, keys)
        total = combine_moments(total, Moments(chunk_size, np.asarray(mean, np.float64),
                                               np.asarray(m2, np.float64)))
    return total


def gradient_moments_at_points(objective: Callable | Objective, params: Any, x: jax.Array,
                               num_draws: int, key: jax.Array, *,
                               state: EstimatorState | None = None,
                               chunk_size: int | None = None) -> Moments:
    """:func:`gradient_moments` at ``P`` points at once: one compiled program for all of them.

    Point ``p`` is ``(params[p], x[p])`` (every leaf of ``params`` and ``x`` stacked on a
    leading axis of length ``P``), e.g. the perturbed optima and single datapoints over which
    Rainforth et al. (2018) average their signal-to-noise ratios. Draw ``j`` of chunk ``i`` at
    point ``p`` differentiates ``loss(params[p], state, key_ijp, x[p])`` with ``key_ijp`` the
    ``p * chunk_size + j``-th key of ``jax.random.split(jax.random.fold_in(key, i), P *
    chunk_size)``; a chunk is ``jax.vmap`` over points of ``jax.vmap`` over draws, reduced on
    the device to per-point means and sums of squared deviations (float32) and combined on the
    host in float64 by :func:`combine_moments`. ``num_draws`` is rounded up to whole chunks.

    Args:
      objective: a loss ``loss(params, key, x) -> (loss, aux)`` or an
        :class:`~jvae.objectives.Objective` (differentiated: the loss, the negative bound).
      params: the model's variables with a leading ``[P]`` axis on every leaf.
      x: ``[P, B, *data_shape]`` observations, ``x[p]`` the batch of point ``p``.
      num_draws: draws wanted per point (>= 2).
      key: typed ``jax.random.key``.
      state: the estimator state, held fixed and shared by every point; default the
        objective's ``init(jax.random.fold_in(key, 1), x[0])``.
      chunk_size: draws per point per compiled program; default as many as fit
        :data:`~jvae.testing.DEFAULT_CHUNK_BYTES` (``[P, chunk, N]`` float32), at most
        ``num_draws``. The samples inside the loss (``[K, B, D]`` per draw) are not counted:
        lower it for a large ``K``.

    Returns:
      ``Moments(count, mean [P, N], m2 [P, N])`` in float64, ``N`` the number of parameters
      of one point in ``ravel_pytree`` order, ``count`` the draws per point.
    """
    num_draws = check_count(num_draws, "num_draws (at least 2 for a variance)", minimum=2)
    check_fixed_point(params, x)
    leaves = jax.tree.leaves(params)
    num_points = int(np.shape(x)[0])
    bad = [np.shape(leaf) for leaf in leaves if np.ndim(leaf) == 0
           or np.shape(leaf)[0] != num_points]
    if bad or np.ndim(x) < 2:
        raise ValueError(f"params and x must share a leading axis of points: x has shape "
                         f"{np.shape(x)}, parameter leaves {bad or 'match'}.")
    obj = as_objective(objective)
    if state is None:
        state = obj.init(jax.random.fold_in(key, 1), x[0])
    num_params = int(sum(np.size(leaf) for leaf in leaves)) // num_points
    if chunk_size is None:
        chunk_size = max(1, min(num_draws, DEFAULT_CHUNK_BYTES
                                // (4 * num_points * max(num_params, 1))))
    chunk_size = check_count(chunk_size, "chunk_size")

    @jax.jit
    def chunk_moments(params, state, x, keys):                      # keys [P, C]
        def at_point(p, xp, ks):
            def one(k):
                return ravel_pytree(jax.grad(lambda q: obj.loss(q, state, k, xp)[0])(p))[0]

            g = jax.vmap(one)(ks)                                    # [C, N]
            m = jnp.mean(g, axis=0)
            return m, jnp.sum((g - m) ** 2, axis=0)

        return jax.vmap(at_point)(params, x, keys)

    total = Moments(0, np.zeros((num_points, num_params)), np.zeros((num_points, num_params)))
    for i in range(max(1, math.ceil(num_draws / chunk_size))):
        keys = jax.random.split(jax.random.fold_in(key, i), num_points * chunk_size)
        mean, m2 = chunk_moments(params, state, x, keys.reshape(num_points, chunk_size))
        total = combine_moments(total, Moments(chunk_size, np.asarray(mean, np.float64),
                                               np.asarray(m2, np.float64)))
    return total


def _differentiated(params: Any, modules: Sequence[str] | None):
    """``(split, merge)``: the differentiated part of ``params`` and ``params`` rebuilt with a
    new value of it."""
    if modules is None:
        return (lambda p: p), (lambda p, part: part)
    names = tuple(modules)
    missing = [n for n in names if n not in params["params"]]
    if missing:
        raise ValueError(f"No module {missing} in params['params']; the modules are "
                         f"{sorted(params['params'])}.")

    def split(p):
        return {k: v for k, v in p["params"].items() if k in names}

    def merge(p, part):
        rest = {k: v for k, v in p["params"].items() if k not in names}
        return {**p, "params": {**rest, **part}}

    return split, merge
