"""Posterior statistics of a data set: the means and standard deviations of ``q(z|x)``.

:func:`posterior_stats` encodes every example in fixed-size chunks (one compiled program,
bounded memory: the lecture's per-epoch scatter of all 10000 test images with error bars,
:func:`jvae.runs.write_latent_snapshot`); :func:`get_latent_stats` is Homework 2's function of
that name, the statistics of one shuffled batch of the test data, whose averages show
posterior collapse (``mu_z`` near 0, ``std_z`` near 1 for every input).
"""

from __future__ import annotations

import numbers
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from jvae.data.validate import check_data
from jvae.models.vae import VAE

__all__ = ["posterior_stats", "get_latent_stats"]

Params = Any


def posterior_stats(model: VAE, params: Params, x: jax.Array, *, batch_size: int = 1000,
                    validate: bool = True) -> tuple[jax.Array, jax.Array]:
    """Means and standard deviations of ``q(z|x)`` for every example of ``x``.

    The examples are encoded ``batch_size`` at a time inside one ``lax.map`` (the last chunk
    padded with copies of the first example and its rows dropped), so any ``N`` compiles one
    program per ``(N, batch_size)`` and memory stays that of one chunk. For an autoencoder
    (a point-mass code) the standard deviations are zeros.

    Args:
      model: the VAE (or autoencoder).
      params: its variables.
      x: ``[N, *data_shape]`` inputs within the likelihood's support.
      batch_size: examples per chunk (>= 1).
      validate: check a concrete ``x`` with :func:`jvae.data.check_data`.

    Returns:
      ``(mean [N, D], std [N, D])`` float32.

    Raises:
      ValueError: ``batch_size`` is not a positive integer, or ``x`` is not a valid
        ``[N, *data_shape]`` batch.
    """
    batch_size = _positive("batch_size", batch_size)
    if validate:
        check_data(x, model=model, name="x", batch_ndim=1)
    return _stats(model, min(batch_size, int(x.shape[0])), params, jnp.asarray(x, jnp.float32))


def get_latent_stats(model: VAE, params: Params, key: jax.Array, x: jax.Array, *,
                     batch_size: int = 3000, validate: bool = True
                     ) -> tuple[jax.Array, jax.Array]:
    """Homework 2's ``get_latent_stats``: ``(mu_z, std_z)`` of one shuffled batch of ``x``.

    The homework takes the first batch of ``DataLoader(test_data, batch_size=3000,
    shuffle=True)`` and returns the encoder's means and ``exp(log_std)``; here ``key``
    draws the permutation and the first ``batch_size`` examples (all of them when ``x`` is
    smaller, as the homework's 3000 test points of ``COUNT = 10000``) are encoded. The
    homework prints ``mu_z.mean(0) +- mu_z.std(0)`` and ``std_z.mean(0) +- std_z.std(0)``:
    for a collapsed posterior the means sit at 0 and the standard deviations at 1.

    Args:
      model: the VAE.
      params: its variables.
      key: ``jax.random`` key of the shuffle.
      x: ``[N, *data_shape]`` data (the test split).
      batch_size: how many examples to encode (>= 1).
      validate: check a concrete ``x`` with :func:`jvae.data.check_data`.

    Returns:
      ``(mu_z [n, D], std_z [n, D])``, ``n = min(N, batch_size)``.
    """
    batch_size = _positive("batch_size", batch_size)
    if validate:
        check_data(x, model=model, name="x", batch_ndim=1)
    x = jnp.asarray(x, jnp.float32)
    chosen = jax.random.permutation(key, x.shape[0])[:batch_size]
    return posterior_stats(model, params, x[chosen], batch_size=batch_size, validate=False)


@partial(jax.jit, static_argnums=(0, 1))
def _stats(model: VAE, chunk: int, params: Params, x: jax.Array):
    n = x.shape[0]
    pad = (-n) % chunk
    padded = jnp.concatenate([x, jnp.broadcast_to(x[:1], (pad,) + x.shape[1:])]) if pad else x
    chunks = padded.reshape((-1, chunk) + x.shape[1:])

    def one(xb):
        q = model.apply(params, xb, method=VAE.encode)
        mean = q.mean()
        return mean, jnp.broadcast_to(q.stddev(), mean.shape)

    mean, std = jax.lax.map(one, chunks)
    d = mean.shape[-1]
    return mean.reshape(-1, d)[:n].astype(jnp.float32), std.reshape(-1, d)[:n].astype(jnp.float32)


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)
