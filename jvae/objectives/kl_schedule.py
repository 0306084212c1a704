"""KL warm-up (annealing) schedules and free bits for the rate term of the ELBO.

*Warm-up* (Bowman et al., 2016; Sønderby et al., 2016; Tomczak & Welling, 2018) weights the
rate by a ``beta`` that grows with the optimiser step, so the decoder first learns to use the
code before the KL pulls the posterior onto the prior. A schedule is any function
``step -> beta`` of a traced int32 step (an ``optax.Schedule`` is one):
:func:`kl_warmup` builds the linear and cosine warm-ups. The loss never reads the step from a
host or a global: :func:`jvae.objectives.make_elbo_loss` given a schedule returns a loss that
takes ``step=`` explicitly, and the trainer passes ``state.step`` plus the step's index in
the epoch, so a resumed run (whose :class:`~jvae.training.TrainState` carries ``step``)
continues the schedule exactly.

*Free bits* (Kingma et al., 2016, IAF, their eq. 15 with one group per latent dimension):
the rate term of the *training* loss is ``sum_j max(lambda, mean_B KL_j)``, ``KL_j`` the
analytic KL of latent dimension ``j`` between a diagonal-Gaussian posterior and a factorised
Gaussian prior, averaged over the minibatch before the floor; a dimension whose batch-mean
KL is under ``lambda`` nats gets no gradient from the rate. Evaluation and the reported
``elbo``/``rate`` use the true KL.
"""

from __future__ import annotations

import math
from typing import Callable

import distrax
import jax
import jax.numpy as jnp

from jvae.objectives.base import batch_mean

__all__ = ["BETA_SCHEDULES", "kl_warmup", "check_free_bits", "per_dimension_kl",
           "free_bits_rate"]

#: The warm-up shapes of :func:`kl_warmup` (``config.objective.beta_schedule``).
BETA_SCHEDULES = ("constant", "linear", "cosine")

Schedule = Callable[[jax.Array], jax.Array]


def kl_warmup(beta=1.0, steps: int = 0, start: float = 0.0,
              kind: str = "linear") -> Schedule:
    """The rate weight ``step -> beta_t``: from ``start`` at step 0 to ``beta`` at ``steps``,
    then ``beta`` for ever.

    Args:
      beta: the final weight (may be a traced scalar, e.g. inside a vmapped beta sweep).
      steps: optimiser steps of the warm-up (``> 0`` unless ``kind='constant'``).
      start: the weight at step 0 (non-negative; Tomczak & Welling's warm-up starts at 0).
      kind: ``"linear"``: ``start + (beta - start) min(t / steps, 1)`` (the papers');
        ``"cosine"``: ``start + (beta - start) (1 - cos(pi min(t / steps, 1))) / 2``;
        ``"constant"``: ``beta`` at every step (``steps`` and ``start`` unused).

    Returns:
      A pure function of an int scalar (or array) step, returning float32 weights of its
      shape; jittable and vmappable.

    Raises:
      ValueError: an unknown ``kind``, a negative or non-finite ``start``/``beta``, or a
        warm-up of no step.
    """
    if kind not in BETA_SCHEDULES:
        raise ValueError(f"Unknown beta schedule {kind!r}; expected one of {BETA_SCHEDULES}.")
    for name, value in (("beta", beta), ("start", start)):
        if isinstance(value, (int, float)) and not (math.isfinite(value) and value >= 0):
            raise ValueError(f"kl_warmup: {name} must be a non-negative finite number, "
                             f"got {value!r}.")
    if kind == "constant":
        return lambda step: jnp.full(jnp.shape(step), beta, jnp.float32)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"kl_warmup: a {kind} warm-up needs steps > 0 (an integer), "
                         f"got {steps!r}.")

    def schedule(step):
        frac = jnp.clip(jnp.asarray(step, jnp.float32) / steps, 0.0, 1.0)
        if kind == "cosine":
            frac = 0.5 * (1.0 - jnp.cos(jnp.pi * frac))
        return (start + (beta - start) * frac).astype(jnp.float32)

    return schedule


def check_free_bits(free_bits) -> float:
    """``float(free_bits)``, or ``ValueError`` unless it is a non-negative finite number."""
    if isinstance(free_bits, bool) or not isinstance(free_bits, (int, float)) \
            or not (math.isfinite(free_bits) and free_bits >= 0):
        raise ValueError(f"free_bits must be a non-negative finite number of nats, "
                         f"got {free_bits!r}.")
    return float(free_bits)


def per_dimension_kl(q: distrax.Distribution, p: distrax.Distribution) -> jax.Array:
    """Analytic ``KL(q_j || p_j)`` per latent dimension, ``[B, D]``, for a diagonal-Gaussian
    posterior ``q`` (batch ``[B]``, event ``[D]``) and a diagonal-Gaussian prior ``p``
    (event ``[D]``, e.g. the standard normal). Raises ``ValueError`` for any other pair:
    their KL does not split over dimensions (a VampPrior, a mixture, a flow)."""
    if not (type(q) is distrax.MultivariateNormalDiag
            and type(p) is distrax.MultivariateNormalDiag):
        raise ValueError(
            "free_bits needs a rate that splits per latent dimension: a diagonal-Gaussian "
            f"posterior and prior (model.posterior 'gaussian', model.prior 'normal'), not "
            f"{type(q).__name__} against {type(p).__name__}.")
    mu_q, s_q = q.loc, q.scale_diag
    mu_p, s_p = p.loc, p.scale_diag
    ratio = (s_q / s_p) ** 2
    return 0.5 * (ratio + ((mu_q - mu_p) / s_p) ** 2 - 1.0 - jnp.log(ratio))


def free_bits_rate(kl_per_dim: jax.Array, free_bits: float,
                   mask: jax.Array | None = None) -> jax.Array:
    """The free-bits rate term ``sum_j max(lambda, mean_B KL_j)`` (a scalar).

    Args:
      kl_per_dim: ``[B, D]`` per-example, per-dimension KL.
      free_bits: ``lambda``, nats per latent dimension.
      mask: ``[B]``, 1 for a real example (the batch mean counts only those).
    """
    per_dim = jax.vmap(lambda col: batch_mean(col, mask), in_axes=1)(kl_per_dim)   # [D]
    return jnp.sum(jnp.maximum(per_dim, free_bits))
