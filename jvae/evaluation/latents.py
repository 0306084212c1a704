"""Posterior statistics of a data set: the means and standard deviations of ``q(z|x)``.

:func:`posterior_stats` encodes every example in fixed-size chunks (one compiled program,
bounded memory: the lecture's per-epoch scatter of all 10000 test images with error bars,
:func:`jvae.runs.write_latent_snapshot`); :func:`get_latent_stats` is Homework 2's function of
that name, the statistics of one shuffled batch of the test data, whose averages show
posterior collapse (``mu_z`` near 0, ``std_z`` near 1 for every input);
:func:`rate_per_dimension` is the rate split by latent dimension, which shows the active ones.
"""

from __future__ import annotations

import numbers
from functools import partial
from typing import Any

import distrax
import jax
import jax.numpy as jnp

from jvae.data.validate import check_data
from jvae.models.distributions import has_analytic_kl, kl_divergence
from jvae.models.vae import VAE

__all__ = ["posterior_stats", "get_latent_stats", "rate_per_dimension", "latent_marginals"]

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


def rate_per_dimension(model: VAE, params: Params, key: jax.Array, x: jax.Array, *,
                       num_samples: int = 64, batch_size: int = 1000,
                       validate: bool = True) -> jax.Array:
    """The rate by latent dimension: ``R_d = mean_x KL(q(z_d|x) || p(z_d))`` in nats.

    ``q(z_d|x)`` and ``p(z_d)`` are the one-dimensional marginals of the posterior and the
    prior (:func:`latent_marginals`). The KL is :func:`jvae.models.distributions.kl_divergence`
    of the marginals: closed form for Gaussian marginals (a diagonal Gaussian posterior
    against a standard normal prior: ``R_d = mean_x (mu_d^2 + s_d^2 - 1) / 2 - log s_d``),
    a Monte Carlo estimate from ``num_samples`` draws ``z_d ~ q(z_d|x)`` for mixtures (a
    mixture prior or posterior, a VampPrior over a diagonal Gaussian posterior). For a
    posterior and prior that factorise over dimensions (diagonal Gaussians) the ``R_d`` sum to
    the rate ``R``; for a mixture they are the marginals' divergences and need not. A
    dimension with ``R_d`` near 0 is unused: its posterior is the prior for every input
    (Burda et al., 2016, count a unit active when ``Cov_x E_q[z_d] > 0.01``).

    The examples are encoded ``batch_size`` at a time inside one ``lax.map`` (as
    :func:`posterior_stats`); for a Monte Carlo estimate the chunk is smaller where needed to
    keep its ``[num_samples, chunk, D, components]`` log-densities under 16M values.

    Args:
      model: the VAE.
      params: its variables.
      key: ``jax.random`` key of the Monte Carlo draws (unused for closed forms).
      x: ``[N, *data_shape]`` inputs within the likelihood's support.
      num_samples: Monte Carlo draws per example and dimension (>= 1).
      batch_size: examples per chunk (>= 1).
      validate: check a concrete ``x`` with :func:`jvae.data.check_data`.

    Returns:
      ``[D]`` float32, nats per example.

    Raises:
      ValueError: the posterior or the prior has no per-dimension marginals (a flow
        posterior, an autoencoder's point code), a count is not a positive integer, or
        ``x`` is not a valid batch.
    """
    batch_size = _positive("batch_size", batch_size)
    num_samples = _positive("num_samples", num_samples)
    if validate:
        check_data(x, model=model, name="x", batch_ndim=1)
    x = jnp.asarray(x, jnp.float32)
    widths = {}    # per distribution: None (no marginals) or its marginals' mixture components

    def probe():   # traced once for its static shapes: nothing is computed
        dists = (("posterior", model.apply(params, x[:1], method=VAE.encode)),
                 ("prior", model.apply(params, method=VAE.prior_distribution)))
        for name, dist in dists:
            marginal = latent_marginals(dist)
            widths[name] = (None if marginal is None else
                            marginal.components_distribution.loc.shape[-1]
                            if isinstance(marginal, distrax.MixtureSameFamily) else 0,
                            type(dist).__name__, dist.event_shape[-1])
        return ()

    jax.eval_shape(probe)
    for name, (width, kind, _) in widths.items():
        if width is None:
            raise ValueError(f"rate_per_dimension needs per-dimension marginals: the {name} "
                             f"{kind} has none (diagonal Gaussians and their mixtures do)")
    width = sum(w for w, _, _ in widths.values())
    if width:      # Monte Carlo: [S, chunk, D, C] log-densities, at most _MC_ELEMENTS
        per_example = num_samples * int(widths["posterior"][2]) * width
        batch_size = max(1, min(batch_size, _MC_ELEMENTS // per_example))
    return _rates(model, min(batch_size, int(x.shape[0])), num_samples, params, key, x)


# Elements of one Monte Carlo chunk's log-densities in :func:`rate_per_dimension` (16M).
_MC_ELEMENTS = 1 << 24


def latent_marginals(dist: distrax.Distribution) -> distrax.Distribution | None:
    """The one-dimensional marginals of a distribution over ``z [..., D]``, or ``None``.

    A diagonal Gaussian ``N(mu, diag(s^2))`` gives ``Normal(mu, s)``; a mixture of diagonal
    Gaussians ``sum_c w_c N(mu_c, diag(s_c^2))`` gives, per dimension, the mixture
    ``sum_c w_c N(mu_cd, s_cd^2)``. Anything else (a flow, a point mass) has none here.

    Args:
      dist: batch shape ``[...]``, event shape ``[D]``.

    Returns:
      Batch shape ``[..., D]``, scalar events; or ``None``.
    """
    if isinstance(dist, distrax.MultivariateNormalDiag):
        return distrax.Normal(dist.loc, dist.scale_diag)
    if (isinstance(dist, distrax.MixtureSameFamily)
            and isinstance(dist.components_distribution, distrax.MultivariateNormalDiag)):
        comps = dist.components_distribution
        loc = jnp.swapaxes(comps.loc, -1, -2)                        # [..., D, C]
        scale = jnp.swapaxes(comps.scale_diag, -1, -2)
        logits = jnp.broadcast_to(dist.mixture_distribution.logits[..., None, :], loc.shape)
        return distrax.MixtureSameFamily(distrax.Categorical(logits=logits),
                                         distrax.Normal(loc, scale))
    return None


@partial(jax.jit, static_argnums=(0, 1, 2))
def _rates(model: VAE, chunk: int, num_samples: int, params: Params, key: jax.Array,
           x: jax.Array) -> jax.Array:
    n = x.shape[0]
    pad = (-n) % chunk
    padded = jnp.concatenate([x, jnp.broadcast_to(x[:1], (pad,) + x.shape[1:])]) if pad else x
    chunks = padded.reshape((-1, chunk) + x.shape[1:])
    pz = latent_marginals(model.apply(params, method=VAE.prior_distribution))    # [D]

    def one(args):
        i, xb = args
        q = latent_marginals(model.apply(params, xb, method=VAE.encode))         # [b, D]
        z = None
        if not has_analytic_kl(q, pz):
            z = q.sample(seed=jax.random.fold_in(key, i), sample_shape=(num_samples,))
        return kl_divergence(q, pz, z)                                            # [b, D]

    kl = jax.lax.map(one, (jnp.arange(chunks.shape[0]), chunks))
    return jnp.mean(kl.reshape(-1, kl.shape[-1])[:n], axis=0).astype(jnp.float32)


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
