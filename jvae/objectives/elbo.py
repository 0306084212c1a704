"""The reparameterised evidence lower bound (Kingma & Welling, 2014; Rezende et al., 2014).

``ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)) = -(D + R)`` with distortion
``D = -E_q[log p(x|z)]`` and rate ``R = KL(q || p)`` (Alemi et al., 2018). The loss minimised
is ``mean_B [D + beta * R]``, the negative (beta-)bound per example.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from jvae.models.distributions import has_analytic_kl, kl_divergence, require_reparameterised
from jvae.models.vae import VAE, training_apply
from jvae.objectives.base import batch_mean, check_bound_args

__all__ = ["make_elbo_loss", "elbo_terms"]

LossFn = Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, dict]]


def elbo_terms(model: VAE, params: Any, key: jax.Array, x: jax.Array, num_samples: int = 1,
               kl: str = "auto", pathwise: bool = False, train: bool = False
               ) -> tuple[jax.Array, jax.Array]:
    """Per-example distortion and rate with ``S`` reparameterised samples.

    Args:
      x: ``[B, *data_shape]``.
      num_samples: S samples per example, drawn at once as ``[S, B, D]``.
      kl: ``"auto"`` (analytic if distrax/TFP has it, else Monte Carlo), ``"analytic"`` or
        ``"mc"``.
      pathwise: the caller differentiates through the samples: refuse posteriors that are
        not reparameterisable (mixtures), whose sample gradient would be silently biased.
        Evaluation (no gradient) works with any posterior.
      train: training mode: the model's dropout is on, with its own stream derived from
        ``key`` (:func:`jvae.models.vae.training_apply`; the samples stay those of ``key``).
        ``False`` (evaluation): no dropout.

    Returns:
      ``(distortion [B], rate [B])``; the ELBO is ``-(distortion + rate)``.
    """
    apply = training_apply(model, key if train else None)
    q = apply(params, x, method=VAE.encode)
    if pathwise:
        require_reparameterised(q, "the reparameterised ELBO")
    pz = apply(params, method=VAE.prior_distribution)
    # A Monte Carlo rate takes log q from the draw itself (a flow posterior's forward pass;
    # the same values as q.log_prob(z), without inverting the flow).
    mc = kl == "mc" or (kl == "auto" and not has_analytic_kl(q, pz))
    shape = () if num_samples == 1 else (num_samples,)
    if mc:
        z, log_q = q.sample_and_log_prob(seed=key, sample_shape=shape)
    else:
        z, log_q = q.sample(seed=key, sample_shape=shape), None
    if num_samples == 1:
        # The same draw as sample_shape=(1,) (distrax draws n=1 either way), decoded without
        # the length-1 sample axis: XLA's CPU matmuls of [1, B, F] operands transpose their
        # [F, B] gradients explicitly, which [B, F] ones do not.
        distortion = -apply(params, z, method=VAE.decode).log_prob(x)  # [B]
        z = z[None]
        log_q = None if log_q is None else log_q[None]
    else:                                                               # z [S, B, D]
        log_px_z = apply(params, z, method=VAE.decode).log_prob(x)  # [S, B]
        distortion = -jnp.mean(log_px_z, axis=0)
    if mc:
        rate = jnp.mean(log_q - pz.log_prob(z), axis=0)
    else:
        rate = kl_divergence(q, pz, z, method=kl)
    return distortion, rate


def make_elbo_loss(model: VAE, beta: float = 1.0, num_samples: int = 1,
                   kl: str = "auto") -> LossFn:
    """Build ``loss(params, key, x) -> (loss, aux)`` for the (beta-)ELBO.

    Args:
      model: the VAE.
      beta: weight of the rate term (beta-VAE, Higgins et al., 2017); ``beta=1`` is the ELBO.
        May be a traced scalar, so that a sweep over beta can be vmapped.
      num_samples: S reparameterised samples per example (vectorised, no loop).
      kl: how the rate is computed, see :func:`elbo_terms`.

    Returns:
      A pure function ``loss(params, key, x, mask=None)``. ``loss`` is ``mean_B [D + beta R]``;
      ``aux`` holds the per-example means ``elbo``, ``distortion``, ``rate`` and ``loss``. A
      model with dropout is in training mode (dropout on, stream derived from ``key``).
      ``mask`` ``[B]`` (1 real, 0 padding) restricts every mean to the real examples
      (:func:`jvae.objectives.base.batch_mean`).
    """
    num_samples = check_bound_args(num_samples, beta, kl)

    def loss_fn(params, key, x, mask=None):
        distortion, rate = elbo_terms(model, params, key, x, num_samples, kl, pathwise=True,
                                      train=True)
        return elbo_loss_and_aux(distortion, rate, beta, mask)

    return loss_fn


def elbo_loss_and_aux(distortion: jax.Array, rate: jax.Array, beta=1.0,
                      mask: jax.Array | None = None) -> tuple[jax.Array, dict]:
    """``(mean_B [D + beta R], aux)`` from per-example ``distortion`` and ``rate`` ``[B]``,
    the means over the real examples of ``mask`` (all without one)."""
    loss = batch_mean(distortion + beta * rate, mask)
    return loss, {"loss": loss, "elbo": -batch_mean(distortion + rate, mask),
                  "distortion": batch_mean(distortion, mask), "rate": batch_mean(rate, mask)}
