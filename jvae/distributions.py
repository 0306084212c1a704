"""Thin glue over distrax and TFP's JAX substrate.

Everything here returns ``distrax`` distributions whose ``log_prob`` is per example: the
trailing event dimensions are summed, every leading (batch or sample) dimension is kept.
"""

from __future__ import annotations

import distrax
import jax
import jax.numpy as jnp
from tensorflow_probability.substrates import jax as tfp

tfd = tfp.distributions

__all__ = [
    "Bernoulli",
    "bernoulli",
    "continuous_bernoulli",
    "continuous_bernoulli_log_normalizer",
    "diag_gaussian",
    "gaussian",
    "kl_divergence",
    "has_analytic_kl",
]


class Bernoulli(distrax.Bernoulli):
    """``distrax.Bernoulli`` with a cheaper, equally stable ``log_prob``.

    ``log p(x) = x * logit - softplus(logit)``: one softplus per element instead of distrax's
    two (``-softplus(-l)`` and ``-softplus(l)``), identical for ``x`` in [0, 1] and finite
    logits. This is the decoder's hot path, so it matters for epoch time.
    """

    def log_prob(self, value):
        logits = self.logits
        return value * logits - jax.nn.softplus(logits)


def bernoulli(logits: jax.Array, event_ndims: int) -> distrax.Distribution:
    """Product of Bernoullis over the last ``event_ndims`` axes of ``logits``.

    Args:
      logits: ``[..., *event_shape]`` log-odds.
      event_ndims: number of trailing axes that form one observation.

    Returns:
      ``distrax.Independent(Bernoulli)`` with batch shape ``logits.shape[:-event_ndims]``.
      Its ``log_prob`` accepts grey levels in [0, 1] too, where it equals minus the
      binary cross-entropy (the PyTorch-examples VAE objective).
    """
    return distrax.Independent(Bernoulli(logits=logits), event_ndims)


def continuous_bernoulli(logits: jax.Array, event_ndims: int) -> distrax.Distribution:
    """Product of continuous Bernoullis (Loaiza-Ganem & Cunningham, 2019).

    Uses ``tfp.substrates.jax.distributions.ContinuousBernoulli`` (numerically stable near
    ``p = 0.5``) wrapped so that it composes with ``distrax.Independent``.

    Args:
      logits: ``[..., *event_shape]`` natural parameters (log-odds of ``lambda``).
      event_ndims: number of trailing axes that form one observation.
    """
    return distrax.Independent(tfd.ContinuousBernoulli(logits=logits), event_ndims)


def continuous_bernoulli_log_normalizer(probs: jax.Array) -> jax.Array:
    """Closed form ``log C(l) = log(2 atanh(1 - 2l) / (1 - 2l))`` (``log 2`` at ``l = 0.5``).

    Reference implementation for tests; numerically poor very close to 0.5 in float32,
    which is why the likelihood itself uses TFP's Taylor-expanded version.
    """
    t = 1.0 - 2.0 * probs
    safe_t = jnp.where(jnp.abs(t) < 1e-6, 1.0, t)
    exact = jnp.log(2.0 * jnp.arctanh(safe_t) / safe_t)
    return jnp.where(jnp.abs(t) < 1e-6, jnp.log(2.0), exact)


def gaussian(loc: jax.Array, scale: jax.Array, event_ndims: int) -> distrax.Distribution:
    """Product of univariate Gaussians over the last ``event_ndims`` axes."""
    return distrax.Independent(distrax.Normal(loc, scale), event_ndims)


def diag_gaussian(loc: jax.Array, scale: jax.Array) -> distrax.Distribution:
    """Diagonal Gaussian ``N(loc, diag(scale^2))`` over the last axis (reparameterisable)."""
    return distrax.MultivariateNormalDiag(loc, scale)


def has_analytic_kl(q: distrax.Distribution, p: distrax.Distribution) -> bool:
    """Whether distrax/TFP registers a closed-form ``KL(q || p)`` for these types."""
    try:
        jax.eval_shape(lambda: q.kl_divergence(p))
    except NotImplementedError:
        return False
    return True


def kl_divergence(
    q: distrax.Distribution,
    p: distrax.Distribution,
    z: jax.Array | None = None,
    *,
    method: str = "auto",
) -> jax.Array:
    """``KL(q || p)`` per example: analytic where registered, Monte Carlo otherwise.

    Args:
      q: distribution with batch shape ``[B]`` (or any batch shape).
      p: distribution broadcastable against ``q``.
      z: samples ``[S, *q.batch_shape, D]`` from ``q``, needed for the Monte Carlo estimate
        ``mean_s [log q(z_s) - log p(z_s)]``.
      method: ``"auto"`` (analytic if registered, else MC), ``"analytic"`` (error if not
        registered) or ``"mc"``.

    Returns:
      ``[*q.batch_shape]`` KL values (an unbiased estimate when Monte Carlo).
    """
    if method not in ("auto", "analytic", "mc"):
        raise ValueError(f"Unknown KL method {method!r}; expected 'auto', 'analytic' or 'mc'.")
    if method != "mc":
        if has_analytic_kl(q, p):
            return q.kl_divergence(p)
        if method == "analytic":
            raise ValueError(
                f"No analytic KL registered for {type(q).__name__} || {type(p).__name__}; "
                "use method='mc' or 'auto'.")
    if z is None:
        raise ValueError("Monte Carlo KL needs samples z from q.")
    return jnp.mean(q.log_prob(z) - p.log_prob(z), axis=0)

