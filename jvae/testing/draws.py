"""Independent gradient draws of an objective, jitted, vmapped and chunked.

A gradient estimator is a random vector ``g(key)``; testing it means looking at many
independent draws at one fixed point ``(params, estimator state, x)``:

    draws = gradient_draws(objective, params, x, 20000, jax.random.key(0))   # [n, P]

Row ``i`` is ``ravel_pytree(grad_params loss(params, state, key_i, x))`` with ``key_i`` the
``i``-th of ``jax.random.split(key, n)``: the same seed gives the same draws, and another
chunking the same draws up to float rounding (XLA compiles each chunk size separately). The
draws are computed ``chunk_size`` at a time (one compiled program, ``jax.vmap`` over the
chunk's keys) and copied to the host, so device memory holds one chunk.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jvae.data.arguments import check_count
from jvae.data.validate import check_data
from jvae.objectives.base import EstimatorState, Objective, as_objective

__all__ = ["gradient_draws", "make_gradient_sampler", "param_mask", "DEFAULT_CHUNK_BYTES"]

#: Default bound on one chunk's draws, in bytes (the ``[chunk, P]`` block on the device).
DEFAULT_CHUNK_BYTES = 64 * 2**20


def make_gradient_sampler(objective: Callable | Objective, params: Any, x: jax.Array, *,
                          state: EstimatorState | None = None, init_key: jax.Array | None = None,
                          chunk_size: int | None = None, num_draws: int | None = None
                          ) -> Callable[[jax.Array], np.ndarray]:
    """``sample(keys [n]) -> [n, P]`` gradient draws, one per key (see :func:`gradient_draws`).

    The returned function compiles one program for ``chunk_size`` keys on its first call and
    reuses it (the last chunk is padded), so a warm-up call on ``chunk_size`` keys makes later
    calls free of compilation: what :func:`jvae.testing.estimator_report` times.

    Args:
      objective: a loss ``loss(params, key, x) -> (loss, aux)`` or an
        :class:`~jvae.objectives.Objective`.
      params: the model's variables, held fixed.
      x: ``[B, *data_shape]`` observations, held fixed.
      state: the estimator state, held fixed (not updated between draws); default: the
        objective's ``init(init_key, x)`` (empty for a stateless loss).
      init_key: the key of that ``init`` (required when ``state`` is ``None`` and the
        objective is stateful).
      chunk_size: draws per compiled program; default: as many as fit
        :data:`DEFAULT_CHUNK_BYTES` (``[chunk, P]`` float32), at most ``num_draws``.
      num_draws: the number of draws planned (caps the default chunk size).
    """
    check_fixed_point(params, x)
    if num_draws is not None:
        num_draws = check_count(num_draws, "num_draws")
    obj = as_objective(objective)
    if state is None:
        if init_key is None:
            if isinstance(objective, Objective):
                raise ValueError("A stateful Objective needs its estimator state: pass state= "
                                 "(e.g. objective.init(key, x)) or init_key=.")
            init_key = jax.random.key(0)                 # as_objective's init ignores it
        state = obj.init(init_key, x)
    flat, _ = ravel_pytree(params)
    num_params = int(flat.size)
    if chunk_size is None:
        chunk_size = max(1, DEFAULT_CHUNK_BYTES // (4 * max(num_params, 1)))
        if num_draws is not None:
            chunk_size = min(chunk_size, int(num_draws))
    chunk_size = check_count(chunk_size, "chunk_size")

    def one(key):
        return ravel_pytree(jax.grad(lambda p: obj.loss(p, state, key, x)[0])(params))[0]

    chunk_fn = jax.jit(jax.vmap(one))

    def sample(keys: jax.Array) -> np.ndarray:
        n = int(keys.shape[0])
        out = np.empty((n, num_params), np.asarray(flat).dtype)
        for start in range(0, n, chunk_size):
            part = keys[start:start + chunk_size]
            m = int(part.shape[0])
            if m < chunk_size:                  # pad: the same program for every chunk
                part = jnp.concatenate([part, jnp.broadcast_to(part[:1], (chunk_size - m,)
                                                               + part.shape[1:])])
            out[start:start + m] = np.asarray(chunk_fn(part))[:m]
        return out

    sample.chunk_size = chunk_size
    sample.num_params = num_params
    return sample


def gradient_draws(objective: Callable | Objective, params: Any, x: jax.Array, n: int,
                   key: jax.Array, *, state: EstimatorState | None = None,
                   chunk_size: int | None = None) -> np.ndarray:
    """``[n, P]`` independent draws of an objective's gradient with respect to ``params``.

    Draw ``i`` differentiates ``loss(params, state, key_i, x)`` (the loss, i.e. the negative
    bound, so an unbiased ELBO estimator's draws average to ``-grad ELBO``) with
    ``key_i = jax.random.split(key, n)[i]``, flattened by ``jax.flatten_util.ravel_pytree``
    (use :func:`param_mask` to pick parameter groups). Only the model's parameters are
    differentiated, not the estimator's (a learned baseline's weights).

    Args:
      objective: a loss ``loss(params, key, x)`` or an :class:`~jvae.objectives.Objective`.
      params: the model's variables.
      x: ``[B, *data_shape]``.
      n: number of draws (>= 1).
      key: typed ``jax.random.key``.
      state: the estimator state held fixed over the draws; default ``objective.init`` with
        ``jax.random.fold_in(key, 1)`` (empty for a stateless loss).
      chunk_size: draws per compiled program (default: ``[chunk, P]`` within 64 MiB).

    Returns:
      ``[n, P]`` numpy array in the parameters' dtype (float32), on the host.
    """
    n = check_count(n, "n")
    check_fixed_point(params, x)
    sample = make_gradient_sampler(objective, params, x, state=state,
                                   init_key=jax.random.fold_in(key, 1), chunk_size=chunk_size,
                                   num_draws=n)
    return sample(jax.random.split(key, n))


def check_fixed_point(params: Any, x: Any) -> None:
    """The point the draws are taken at: ``x`` a finite floating-point array with a batch
    axis (:func:`jvae.data.check_data`) and every parameter finite, or a one-line
    ``ValueError`` (a NaN there makes every draw NaN)."""
    check_data(x, name="x", batch_ndim=None)
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    if not leaves:
        raise ValueError("params holds no arrays (pass the model's variables, e.g. "
                         "init_params(model, key, x)).")
    for path, leaf in leaves:
        if isinstance(leaf, jax.core.Tracer):
            continue
        a = np.asarray(leaf)
        if not np.issubdtype(a.dtype, np.number):
            raise ValueError(f"params{jax.tree_util.keystr(path)}: not numbers (dtype "
                             f"{a.dtype}).")
        if np.issubdtype(a.dtype, np.inexact) and not np.all(np.isfinite(a)):
            raise ValueError(f"params{jax.tree_util.keystr(path)}: "
                             f"{int(np.sum(~np.isfinite(a)))} non-finite values (NaN/Inf).")


def param_mask(params: Any, *names: str) -> np.ndarray:
    """``[P]`` booleans over the flattened parameters: True where the path contains a name.

    ``param_mask(params, "posterior", "encoder")`` selects the inference network of a
    :class:`~jvae.models.vae.VAE` (the layout of :func:`gradient_draws`' columns).
    """
    if not names:
        raise ValueError("param_mask needs at least one module name, e.g. 'posterior'.")
    flags = jax.tree_util.tree_map_with_path(
        lambda path, leaf: jnp.full(jnp.shape(leaf), any(
            getattr(p, "key", None) in names for p in path)), params)
    mask = np.asarray(ravel_pytree(flags)[0]).astype(bool)
    if not mask.any():
        found = sorted({getattr(p, "key", "") for path, _ in
                        jax.tree_util.tree_flatten_with_path(params)[0] for p in path} - {""})
        raise ValueError(f"No parameter path contains {list(names)}; the names are {found}.")
    return mask
