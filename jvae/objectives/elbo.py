"""The reparameterised evidence lower bound (Kingma & Welling, 2014; Rezende et al., 2014).

``ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)) = -(D + R)`` with distortion
``D = -E_q[log p(x|z)]`` and rate ``R = KL(q || p)`` (Alemi et al., 2018). The loss minimised
is ``mean_B [D + beta * R]``, the negative (beta-)bound per example; ``beta`` may follow a
warm-up schedule of the optimiser step and the rate may have free bits
(:mod:`jvae.objectives.kl_schedule`).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from jvae.models.distributions import has_analytic_kl, kl_divergence, require_reparameterised
from jvae.models.vae import VAE, training_apply
from jvae.objectives.base import batch_mean, check_bound_args
from jvae.objectives.kl_schedule import check_free_bits, free_bits_rate, per_dimension_kl

__all__ = ["make_elbo_loss", "elbo_terms"]

LossFn = Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, dict]]
Schedule = Callable[[jax.Array], jax.Array]


def elbo_terms(model: VAE, params: Any, key: jax.Array, x: jax.Array, num_samples: int = 1,
               kl: str = "auto", pathwise: bool = False, train: bool = False,
               per_dimension: bool = False) -> tuple[jax.Array, jax.Array]:
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
      per_dimension: return the analytic rate of each latent dimension, ``[B, D]``
        (:func:`jvae.objectives.kl_schedule.per_dimension_kl`: a diagonal-Gaussian posterior
        and prior only, ``kl`` not ``"mc"``), for free bits.

    Returns:
      ``(distortion [B], rate [B])`` (``rate [B, D]`` with ``per_dimension``); the ELBO is
      ``-(distortion + rate)``.
    """
    apply = training_apply(model, key if train else None)
    q = apply(params, x, method=VAE.encode)
    if pathwise:
        require_reparameterised(q, "the reparameterised ELBO")
    pz = apply(params, method=VAE.prior_distribution)
    # A Monte Carlo rate takes log q from the draw itself (a flow posterior's forward pass;
    # the same values as q.log_prob(z), without inverting the flow).
    mc = not per_dimension and (kl == "mc" or (kl == "auto" and not has_analytic_kl(q, pz)))
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
    if per_dimension:
        rate = per_dimension_kl(q, pz)
    elif mc:
        rate = jnp.mean(log_q - pz.log_prob(z), axis=0)
    else:
        rate = kl_divergence(q, pz, z, method=kl)
    return distortion, rate


def make_elbo_loss(model: VAE, beta: float | Schedule = 1.0, num_samples: int = 1,
                   kl: str = "auto", free_bits: float = 0.0) -> LossFn:
    """Build ``loss(params, key, x) -> (loss, aux)`` for the (beta-)ELBO.

    Args:
      model: the VAE.
      beta: weight of the rate term (beta-VAE, Higgins et al., 2017); ``beta=1`` is the ELBO.
        May be a traced scalar, so that a sweep over beta can be vmapped. Or a schedule, a
        function ``step -> beta`` of the int32 optimiser step (an ``optax.Schedule``, or
        :func:`jvae.objectives.kl_schedule.kl_warmup` for a KL warm-up): the loss then
        takes the step as a required keyword, ``loss(params, key, x, mask=None, *, step)``
        (the trainer passes it), and ``aux`` gains ``beta``, the weight used.
      num_samples: S reparameterised samples per example (vectorised, no loop).
      kl: how the rate is computed, see :func:`elbo_terms`.
      free_bits: ``lambda >= 0`` nats per latent dimension: the loss's rate term is
        ``sum_j max(lambda, mean_B KL_j)`` (Kingma et al., 2016; analytic per-dimension KL,
        diagonal-Gaussian posterior and prior only, ``kl`` not ``"mc"``). ``0``: off.
        ``aux``'s ``elbo`` and ``rate`` stay the true ones.

    Returns:
      A pure function ``loss(params, key, x, mask=None)``. ``loss`` is ``mean_B [D + beta R]``;
      ``aux`` holds the per-example means ``elbo``, ``distortion``, ``rate`` and ``loss``. A
      model with dropout is in training mode (dropout on, stream derived from ``key``).
      ``mask`` ``[B]`` (1 real, 0 padding) restricts every mean to the real examples
      (:func:`jvae.objectives.base.batch_mean`).
    """
    scheduled = callable(beta)
    num_samples = check_bound_args(num_samples, 1.0 if scheduled else beta, kl)
    free_bits = check_free_bits(free_bits)
    if free_bits and kl == "mc":
        raise ValueError("free_bits needs the analytic per-dimension KL; kl='mc' has none "
                         "(use kl='auto' or 'analytic').")

    def terms(params, key, x, weight, mask):
        if not free_bits:
            distortion, rate = elbo_terms(model, params, key, x, num_samples, kl,
                                          pathwise=True, train=True)
            return elbo_loss_and_aux(distortion, rate, weight, mask)
        distortion, rate_dims = elbo_terms(model, params, key, x, num_samples, kl,
                                           pathwise=True, train=True, per_dimension=True)
        rate = jnp.sum(rate_dims, axis=-1)
        _, aux = elbo_loss_and_aux(distortion, rate, weight, mask)
        loss = batch_mean(distortion, mask) + weight * free_bits_rate(rate_dims, free_bits,
                                                                      mask)
        return loss, dict(aux, loss=loss)

    if not scheduled:
        def loss_fn(params, key, x, mask=None):
            return terms(params, key, x, beta, mask)

        return loss_fn

    def scheduled_loss_fn(params, key, x, mask=None, *, step):
        weight = jnp.asarray(beta(step), jnp.float32)
        loss, aux = terms(params, key, x, weight, mask)
        return loss, dict(aux, beta=weight)

    return scheduled_loss_fn


def elbo_loss_and_aux(distortion: jax.Array, rate: jax.Array, beta=1.0,
                      mask: jax.Array | None = None) -> tuple[jax.Array, dict]:
    """``(mean_B [D + beta R], aux)`` from per-example ``distortion`` and ``rate`` ``[B]``,
    the means over the real examples of ``mask`` (all without one)."""
    loss = batch_mean(distortion + beta * rate, mask)
    return loss, {"loss": loss, "elbo": -batch_mean(distortion + rate, mask),
                  "distortion": batch_mean(distortion, mask), "rate": batch_mean(rate, mask)}
