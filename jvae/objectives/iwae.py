"""The importance-weighted bound and its gradient estimators: IWAE, STL, DReG and VIMCO.

``L_K(x) = E[log (1/K) sum_k w_k]`` with ``w_k = p(x, z_k) / q(z_k|x)``, ``z_k ~ q(z|x)``
i.i.d. (Burda et al., 2016). ``L_1`` is the ELBO, ``L_K`` grows with K towards ``log p(x)``.

Gradient estimators for the inference parameters lambda (the generative parameters theta
always get ``sum_k w~_k grad_theta log p(x, z_k)``, ``w~`` the normalised weights):

* ``"iwae"``: differentiate ``L_K`` through the reparameterised samples.
* ``"stl"``: "sticking the landing" (Roeder et al., 2017): q's parameters are stopped inside
  ``log q``, dropping the score term. Unbiased for K = 1; for K > 1 its expectation differs
  from the IWAE gradient (Tucker et al., 2018, section 4): a *biased* estimator of
  ``grad L_K``.
* ``"dreg"``: doubly reparameterised (Tucker et al., 2018):
  ``sum_k w~_k^2 d log w_k / d z_k * d z_k / d lambda``, unbiased for ``grad_lambda L_K``
  and its signal-to-noise ratio does not decay with K.
* VIMCO (:func:`make_vimco_objective`, Mnih & Rezende, 2016) for posteriors that are not
  reparameterisable: score-function estimator of ``grad L_K`` where sample k's signal
  ``L_K`` is baselined by ``L_K^{-k}`` (see
  :func:`jvae.objectives.control_variates.vimco_baseline`).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from jvae.models.distributions import require_reparameterised
from jvae.models.vae import VAE, training_apply
from jvae.objectives.base import (EstimatorState, Objective, batch_mean, batch_std,
                                  score_surrogate, value_and_surrogate)
from jvae.objectives.control_variates import (CVContext, ControlVariate, chain, estimator_init,
                                              vimco_baseline)
from jvae.data.arguments import check_count

__all__ = ["make_iwae_loss", "make_vimco_objective", "iwae_bound", "IWAE_ESTIMATORS"]

IWAE_ESTIMATORS = ("iwae", "stl", "dreg")
_sg = jax.lax.stop_gradient


def iwae_bound(log_w: jax.Array) -> jax.Array:
    """``log mean_k exp(log_w_k)`` over axis 0: ``[K, B] -> [B]``."""
    return jax.nn.logsumexp(log_w, axis=0) - jnp.log(log_w.shape[0])


def _log_weights(apply, gen_params, q_params, x, z):
    """``log p(x, z) - log q(z|x)`` ``[K, B]`` with the generative terms evaluated under
    ``gen_params`` and ``log q`` under ``q_params`` (either may be stopped); ``apply`` is the
    loss's :func:`jvae.models.vae.training_apply`, so the encoder's dropout mask is the one ``z``
    was drawn with."""
    log_pxz = apply(gen_params, x, z, method=VAE.log_joint)
    log_q = apply(q_params, x, method=VAE.encode).log_prob(z)
    return log_pxz, log_q


def make_iwae_loss(model: VAE, num_samples: int = 5, estimator: str = "iwae"):
    """The negative IWAE bound ``-mean_B L_K`` as ``loss(params, key, x) -> (loss, aux)``.

    Args:
      model: a VAE with a reparameterisable posterior.
      num_samples: K (vectorised: the K samples are drawn at once as ``[K, B, D]``).
      estimator: ``"iwae"``, ``"stl"`` or ``"dreg"`` (see the module docstring); the value of
        the loss is ``-L_K`` for all three, only the gradient differs.

    Returns:
      A pure function; ``aux`` holds ``loss``, ``iwae`` (``L_K``), ``elbo`` (the mean log
      weight, an ELBO estimate), ``distortion``, ``rate`` (single-sample Monte Carlo
      averages over the K samples) and ``ess`` (effective sample size of the normalised
      weights, between 1 and K); ``loss(params, key, x, mask=None)``, a ``[B]`` mask (1 real,
      0 padding) restricting every mean to the real examples. A model with dropout is in training mode (dropout on,
      stream derived from ``key``, one mask per network for every evaluation in the call).
    """
    num_samples = check_count(num_samples, "num_samples")
    if estimator not in IWAE_ESTIMATORS:
        raise ValueError(f"Unknown IWAE estimator {estimator!r}; choose from "
                         f"{list(IWAE_ESTIMATORS)}.")
    k_samples = int(num_samples)

    def loss_fn(params, key, x, mask=None):
        apply = training_apply(model, key)
        q = apply(params, x, method=VAE.encode)
        require_reparameterised(q, f"the IWAE bound with estimator {estimator!r}")
        stopped = _sg(params)
        if estimator == "iwae":
            # log q from the draw itself: the same function of params as re-encoding, and a
            # flow posterior's forward pass instead of its inverse (D passes for an IAF).
            z, log_q = q.sample_and_log_prob(seed=key, sample_shape=(k_samples,))  # [K, B, D]
            log_pxz = apply(params, x, z, method=VAE.log_joint)
            log_w = log_pxz - log_q
            bound = objective = iwae_bound(log_w)
        else:
            z = q.sample(seed=key, sample_shape=(k_samples,))                  # [K, B, D]
        if estimator == "stl":
            # STL: q's parameters stopped inside log q (no score term).
            log_pxz, log_q = _log_weights(apply, params, stopped, x, z)
            log_w = log_pxz - log_q
            bound = objective = iwae_bound(log_w)
        elif estimator == "dreg":
            # theta: L_K at stopped samples with q stopped -> sum_k w~_k grad_theta log p.
            log_pxz_t, log_q_t = _log_weights(apply, params, stopped, x, _sg(z))
            # lambda: sum_k w~_k^2 d log w_k/dz dz/dlambda, generative parameters stopped.
            log_pxz_l, log_q_l = _log_weights(apply, stopped, stopped, x, z)
            log_w = log_pxz_t - log_q_t
            bound = iwae_bound(log_w)
            w_tilde = _sg(jax.nn.softmax(log_w, axis=0))
            path = jnp.sum(w_tilde ** 2 * (log_pxz_l - log_q_l), axis=0)
            objective = bound + path - _sg(path)
            log_pxz, log_q = log_pxz_t, log_q_t
        value = -batch_mean(bound, mask)
        w_tilde = jax.nn.softmax(_sg(log_w), axis=0)
        log_pz = apply(params, method=VAE.prior_distribution).log_prob(z)
        aux = {
            "loss": value,
            "iwae": batch_mean(bound, mask),
            "elbo": batch_mean(log_w, mask),
            "distortion": -batch_mean(log_pxz - log_pz, mask),
            "rate": batch_mean(log_q - log_pz, mask),
            "ess": batch_mean(1.0 / jnp.sum(w_tilde ** 2, axis=0), mask),
        }
        return value_and_surrogate(value, -batch_mean(objective, mask)), aux

    return loss_fn


def make_vimco_objective(model: VAE, num_samples: int = 5,
                         control_variates: Sequence[ControlVariate] | None = None
                         ) -> Objective:
    """VIMCO: the score-function estimator of ``grad L_K`` with leave-one-out baselines.

    ``grad L_K = E[sum_k (L_K - L_K^{-k}) grad log q(z_k|x) + sum_k w~_k grad log w_k]``
    with the samples stopped: works for any posterior (e.g. mixtures). The first term goes
    through :func:`jvae.objectives.base.score_surrogate` after the control variates
    (default: only :func:`vimco_baseline`; others may follow it in the chain, e.g.
    ``centred_reward``; a rescaling one such as ``scaled_reward`` is refused, because the
    bound's own gradient is outside the score term).

    Args:
      model: the VAE.
      num_samples: K >= 2.
      control_variates: the chain applied to the signal ``L_K`` (broadcast to ``[K, B]``);
        ``None`` means ``(vimco_baseline(),)``.
    """
    k_samples = check_count(num_samples, "num_samples (VIMCO)", minimum=2)
    cv = chain(*(control_variates if control_variates is not None else (vimco_baseline(),)))
    if cv.rescales:
        raise ValueError("VIMCO cannot take a rescaling control variate (scaled_reward): the "
                         "bound's own gradient is outside the score term and would not be "
                         "divided.")

    def loss(params, est, key, x, mask=None):
        apply = training_apply(model, key)
        q = apply(params, x, method=VAE.encode)
        z = _sg(q.sample(seed=key, sample_shape=(k_samples,)))                 # [K, B, D]
        log_pxz = apply(params, x, z, method=VAE.log_joint)                     # [K, B]
        log_q = q.log_prob(z)
        log_w = log_pxz - log_q
        bound = iwae_bound(log_w)                                               # [B]
        raw = jnp.broadcast_to(_sg(bound), log_w.shape)
        ctx = CVContext(x=x, log_weights=_sg(log_w), mask=mask)
        centred, cv_state, cv_loss, cv_aux = cv.apply(est.params, est.state, raw, ctx)
        surrogate = bound + jnp.sum(score_surrogate(log_q, centred), axis=0)
        value = -batch_mean(bound, mask)
        total = value_and_surrogate(value, -batch_mean(surrogate, mask)) + cv_loss
        log_pz = apply(params, method=VAE.prior_distribution).log_prob(z)
        aux = {"loss": value, "iwae": batch_mean(bound, mask), "elbo": batch_mean(log_w, mask),
               "distortion": -batch_mean(log_pxz - log_pz, mask),
               "rate": batch_mean(log_q - log_pz, mask),
               "signal_std": batch_std(centred, mask), **cv_aux}
        return total, (aux, EstimatorState(est.params, cv_state))

    return Objective(estimator_init(cv), loss)
