"""Score-function (NVIL) estimators of the ELBO gradient, and the mixture estimator.

For ``ELBO(x) = E_q[log p(x, z) - log q(z|x)]`` (Mnih & Gregor, 2014; the DPM2 notebook's
section 3.3):

* the generative parameters get ``E_q[grad_theta log p(x, z)]``;
* the inference parameters get ``E_q[(r - b) grad_lambda log q(z|x)]`` with the learning
  signal ``r = log p(x|z) + beta (log p(z) - log q(z|x))`` (``kl="mc"``), or, with an
  analytic KL (``kl="analytic"``), ``r = log p(x|z)`` and the KL's gradient taken exactly;
  ``b`` is whatever the control variates subtract (or divide by).

The samples are stopped (``stop_gradient``), so the estimator is a pure score-function
estimator for every posterior, reparameterisable ones included, and can be compared with the
reparameterised gradient on the same model.

The *mixture* estimator (the notebook's "Beyond" section) is for a mixture-of-Gaussians
``q``: the component choice ``c`` is discrete and gets a score-function term
``(r - b) grad log w_c``, the within-component sample ``z = mu_c + sigma_c eps`` is
reparameterised, so ``mu`` and ``sigma`` get path derivatives.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from jvae.models.distributions import (has_analytic_kl, is_reparameterised, mixture_parts,
                                       sample_mixture)
from jvae.models.vae import VAE, training_apply
from jvae.objectives.base import (EstimatorState, Objective, batch_mean, batch_std,
                                  check_bound_args, score_surrogate, value_and_surrogate)
from jvae.objectives.control_variates import CVContext, ControlVariate, chain, estimator_init

__all__ = ["make_sfe_objective", "make_mixture_objective", "make_nvil_objective"]

_sg = jax.lax.stop_gradient
_RESCALE_ERROR = (
    "scaled_reward divides the score-function term by a running std; with an analytic KL "
    "the KL's gradient is outside that term and would not be divided, which reweights the "
    "rate against the distortion for the inference network. Use kl='mc' (the NVIL signal "
    "log p(x, z) - log q(z|x)) with scaled_reward.")


def _as_chain(control_variates) -> ControlVariate:
    if isinstance(control_variates, ControlVariate):
        return control_variates
    return chain(*tuple(control_variates))


def _result(distortion, rate, beta, surrogate, raw, centred, cv_loss, cv_aux, est, cv_state,
            mask=None):
    """``(loss, (aux, new_est))`` from per-example ``distortion``, ``rate`` and ``surrogate``
    ``[B]``: the value ``mean [D + beta R]`` with the gradient of ``-mean surrogate``, plus the
    control variates' own loss; aux with the signal's statistics before and after them. The
    means count only the real examples of ``mask`` (all without one)."""
    value = batch_mean(distortion + beta * rate, mask)
    total = value_and_surrogate(value, -batch_mean(surrogate, mask)) + cv_loss
    aux = {"loss": value, "elbo": -batch_mean(distortion + rate, mask),
           "distortion": batch_mean(distortion, mask), "rate": batch_mean(rate, mask),
           "signal_mean": batch_mean(raw, mask), "signal_std": batch_std(raw, mask),
           "centred_signal_mean": batch_mean(centred, mask),
           "centred_signal_std": batch_std(centred, mask), **cv_aux}
    return total, (aux, EstimatorState(est.params, cv_state))


def _sfe_loss(apply, params, est, q, pz, key, x, *, cv, num_samples, beta, kl, mask):
    """The score-function estimator's loss for an encoded ``q`` and prior ``pz`` (the body of
    :func:`make_sfe_objective`'s loss)."""
    k_z, k_fresh = jax.random.split(key)
    analytic = kl == "analytic" or (kl == "auto" and has_analytic_kl(q, pz))
    if analytic and cv.rescales:
        raise ValueError(_RESCALE_ERROR)
    kl_exact = q.kl_divergence(pz) if analytic else None                        # [B]

    def terms(z):
        log_px_z = apply(params, z, method=VAE.decode).log_prob(x)              # [S, B]
        log_pz, log_q = pz.log_prob(z), q.log_prob(z)
        signal = log_px_z if analytic else log_px_z + beta * (log_pz - log_q)
        return log_px_z, log_pz, log_q, signal

    z = _sg(q.sample(seed=k_z, sample_shape=(num_samples,)))                    # [S, B, D]
    log_px_z, log_pz, log_q, raw = terms(z)

    def fresh_signal():
        z2 = _sg(q.sample(seed=k_fresh, sample_shape=(num_samples,)))
        return _sg(terms(z2)[3])

    ctx = CVContext(x=x, fresh_signal=fresh_signal, mask=mask)
    centred, cv_state, cv_loss, cv_aux = cv.apply(est.params, est.state, _sg(raw), ctx)

    distortion = -jnp.mean(log_px_z, axis=0)                                    # [B]
    if analytic:
        rate = kl_exact
        model_term = -distortion - beta * kl_exact
    else:
        rate = jnp.mean(log_q - log_pz, axis=0)
        model_term = jnp.mean(log_px_z + beta * log_pz, axis=0)
    surrogate = model_term + jnp.mean(score_surrogate(log_q, centred), axis=0)
    return _result(distortion, rate, beta, surrogate, raw, centred, cv_loss, cv_aux, est,
                   cv_state, mask)


def make_sfe_objective(model: VAE, *, num_samples: int = 1, beta: float = 1.0,
                       control_variates: Sequence[ControlVariate] | ControlVariate = (),
                       kl: str = "mc") -> Objective:
    """The score-function (NVIL) estimator as an :class:`Objective`.

    Args:
      model: the VAE (any posterior).
      num_samples: S samples per example, drawn at once (``[S, B, D]``).
      beta: weight of the rate (may be traced, for vmapped sweeps), or a schedule ``step ->
        beta`` (a KL warm-up): the loss then takes ``step=`` and ``aux`` gains ``beta``.
      control_variates: a sequence applied as a :func:`chain`, or one control variate.
      kl: ``"mc"`` (signal ``log p(x|z) + beta (log p(z) - log q(z|x))``, the NVIL form of
        the notebook), ``"analytic"`` (signal ``log p(x|z)``, ``beta KL`` differentiated
        exactly) or ``"auto"`` (analytic where distrax/TFP has it). A rescaling control
        variate (``scaled_reward``) needs ``"mc"``: it divides only the score term, and with
        an analytic KL it would reweight the rate's gradient against the distortion's (in
        effect ``beta * s`` for the inference network) instead of rescaling the gradient.

    Returns:
      An :class:`Objective` whose loss is ``loss(params, est, key, x, mask=None)``. ``loss``
      has the value ``mean_B [D + beta R]`` (plus the control variates' own losses, e.g. a
      learned baseline's squared error) and the gradient of the estimator; ``aux`` holds
      ``loss``, ``elbo``, ``distortion``, ``rate``, the raw and centred signal's mean and std
      and the control variates' diagnostics. ``mask`` ``[B]`` (1 real, 0 padding) restricts
      every batch mean, the control variates' statistics included, to the real examples.
      A model with dropout is in training mode (dropout on, stream derived from ``key``;
      the fresh sample of ``self_critic`` is decoded with the same masks).
    """
    num_samples = check_bound_args(num_samples, beta, kl)
    cv = _as_chain(control_variates)

    if kl == "analytic" and cv.rescales:
        raise ValueError(_RESCALE_ERROR)

    def body(params, est, key, x, mask, beta):
        apply = training_apply(model, key)
        q = apply(params, x, method=VAE.encode)
        pz = apply(params, method=VAE.prior_distribution)
        return _sfe_loss(apply, params, est, q, pz, key, x, cv=cv, num_samples=num_samples,
                         beta=beta, kl=kl, mask=mask)

    return Objective(estimator_init(cv), _with_schedule(beta, body))


def make_nvil_objective(model: VAE, *, num_samples: int = 1, beta: float = 1.0,
                        control_variates: Sequence[ControlVariate] | ControlVariate = ()
                        ) -> Objective:
    """The DPM2 notebook's ``NVIL.forward``: the estimator is chosen by the posterior.

    ``q(z|x)`` reparameterisable (``has_rsample`` in torch: a diagonal Gaussian, a flow;
    :func:`jvae.models.distributions.is_reparameterised`): the reparameterised ELBO, the
    notebook's "classic form", with the rate analytic where distrax/TFP has it and Monte
    Carlo otherwise (as :func:`jvae.objectives.elbo.make_elbo_loss` with ``kl="auto"``).
    The control variates still see the (stopped) signal ``log p(x, z) - log q(z|x)``: their
    running statistics update and a learned baseline trains on its squared error, as the
    notebook's ``cv_model`` does on every call, but they do not touch the model's gradient.

    ``q`` not reparameterisable (a mixture, the notebook's ``MoGCPDNet``): the score-function
    estimator with the NVIL signal ``log p(x|z) + beta (log p(z) - log q(z|x))`` transformed
    by ``control_variates`` (:func:`make_sfe_objective` with ``kl="mc"``; the notebook's
    surrogate ``log p(x|z) + log p(z) + r * log q(z|x)``).

    The choice is made once, when the loss is traced, from the type of ``q``.

    Args:
      model: the VAE (any posterior).
      num_samples: S samples per example.
      beta: weight of the rate (the notebook's ``rate_weight``), or a schedule ``step ->
        beta`` (see :func:`make_sfe_objective`).
      control_variates: a sequence applied as a :func:`chain`, or one control variate (the
        notebook's ``CVChain``).

    Returns:
      An :class:`Objective`, ``loss(params, est, key, x, mask=None)``; ``aux`` holds
      ``loss``, ``elbo``, ``distortion``, ``rate``, the signal's statistics before and after
      the control variates, their diagnostics, and ``sfe`` (1.0 when the score-function
      estimator was used, 0.0 when the reparameterised one was).
    """
    num_samples = check_bound_args(num_samples, beta)
    cv = _as_chain(control_variates)

    def body(params, est, key, x, mask, beta):
        apply = training_apply(model, key)
        q = apply(params, x, method=VAE.encode)
        pz = apply(params, method=VAE.prior_distribution)
        if not is_reparameterised(q):
            total, (aux, new_est) = _sfe_loss(apply, params, est, q, pz, key, x, cv=cv,
                                              num_samples=num_samples, beta=beta, kl="mc",
                                              mask=mask)
            return total, ({**aux, "sfe": jnp.ones((), jnp.float32)}, new_est)
        return _reparameterised_loss(apply, params, est, q, pz, key, x, cv=cv,
                                     num_samples=num_samples, beta=beta, mask=mask)

    return Objective(estimator_init(cv), _with_schedule(beta, body))


def _reparameterised_loss(apply, params, est, q, pz, key, x, *, cv, num_samples, beta, mask):
    """The reparameterised branch of :func:`make_nvil_objective`: the ELBO through pathwise
    samples, plus the control variates' own loss on the stopped signal."""
    k_z, k_fresh = jax.random.split(key)
    mc = not has_analytic_kl(q, pz)

    def terms(key_):
        z, log_q = q.sample_and_log_prob(seed=key_, sample_shape=(num_samples,))  # [S, B, D]
        log_px_z = apply(params, z, method=VAE.decode).log_prob(x)              # [S, B]
        log_pz = pz.log_prob(z)
        return log_px_z, log_pz, log_q, log_px_z + beta * (log_pz - log_q)

    log_px_z, log_pz, log_q, raw = terms(k_z)
    ctx = CVContext(x=x, fresh_signal=lambda: _sg(terms(k_fresh)[3]), mask=mask)
    centred, cv_state, cv_loss, cv_aux = cv.apply(est.params, est.state, _sg(raw), ctx)
    distortion = -jnp.mean(log_px_z, axis=0)                                    # [B]
    rate = jnp.mean(log_q - log_pz, axis=0) if mc else q.kl_divergence(pz)
    surrogate = -(distortion + beta * rate)
    total, (aux, new_est) = _result(distortion, rate, beta, surrogate, raw, centred, cv_loss,
                                    cv_aux, est, cv_state, mask)
    return total, ({**aux, "sfe": jnp.zeros((), jnp.float32)}, new_est)


def make_mixture_objective(model: VAE, *, num_samples: int = 1, beta: float = 1.0,
                           control_variates: Sequence[ControlVariate] | ControlVariate = ()
                           ) -> Objective:
    """The mixture estimator for a mixture-of-diagonal-Gaussians posterior.

    With ``c ~ Cat(w(x))`` and ``z = mu_c(x) + sigma_c(x) eps`` and
    ``f = log p(x|z) + beta (log p(z) - log q(z|x))`` (``log q`` the full mixture density):
    ``grad E[f] = E[(f - b) grad log w_c] + E[grad f]``, the first term by the score function
    (only the mixing weights receive it), the second by reparameterisation (path derivatives
    through ``z`` to ``mu``, ``sigma`` and the decoder, plus the direct dependence of
    ``log q`` on all of q's parameters). Unbiased; the rate is Monte Carlo (no closed-form KL
    exists for mixtures).

    The arguments are those of :func:`make_sfe_objective`; the posterior must be a
    :class:`jvae.models.heads.MixtureGaussianHead`.
    """
    num_samples = check_bound_args(num_samples, beta)
    cv = _as_chain(control_variates)
    if cv.rescales:
        raise ValueError(
            "The mixture estimator cannot take a rescaling control variate (scaled_reward): "
            "only the component choice's score term would be divided, not the path "
            "derivatives, which would reweight the gradient's parts. Use centred, "
            "self_critic, baseline or leave_one_out.")

    def body(params, est, key, x, mask, beta):
        k_z, k_fresh = jax.random.split(key)
        apply = training_apply(model, key)
        q = apply(params, x, method=VAE.encode)
        try:
            logits = mixture_parts(q)[0]
        except TypeError as e:
            raise ValueError("objective 'mixture' needs a mixture posterior "
                             "(model.posterior='mixture').") from e
        pz = apply(params, method=VAE.prior_distribution)

        def terms(key_):
            c, z = sample_mixture(q, key_, (num_samples,))                     # [S,B], [S,B,D]
            log_px_z = apply(params, z, method=VAE.decode).log_prob(x)         # [S, B]
            log_pz, log_q = pz.log_prob(z), q.log_prob(z)
            return c, log_px_z, log_pz, log_q, log_px_z + beta * (log_pz - log_q)

        c, log_px_z, log_pz, log_q, f = terms(k_z)
        ctx = CVContext(x=x, fresh_signal=lambda: _sg(terms(k_fresh)[4]), mask=mask)
        centred, cv_state, cv_loss, cv_aux = cv.apply(est.params, est.state, _sg(f), ctx)
        log_w_c = jnp.take_along_axis(jax.nn.log_softmax(logits)[None], c[..., None],
                                      axis=-1)[..., 0]                          # [S, B]
        surrogate = jnp.mean(f + score_surrogate(log_w_c, centred), axis=0)     # [B]
        distortion = -jnp.mean(log_px_z, axis=0)
        rate = jnp.mean(log_q - log_pz, axis=0)
        return _result(distortion, rate, beta, surrogate, f, centred, cv_loss, cv_aux, est,
                       cv_state, mask)

    return Objective(estimator_init(cv), _with_schedule(beta, body))


def _with_schedule(beta, body):
    """The :class:`Objective` loss of ``body(params, est, key, x, mask, beta)``: with a
    number ``beta``, ``loss(params, est, key, x, mask=None)``; with a schedule ``step ->
    beta`` (:func:`jvae.objectives.kl_schedule.kl_warmup`), ``loss(params, est, key, x,
    mask=None, *, step)``, its ``aux`` gaining ``beta``, the weight used."""
    if not callable(beta):
        def loss(params, est, key, x, mask=None):
            return body(params, est, key, x, mask, beta)

        return loss

    def scheduled_loss(params, est, key, x, mask=None, *, step):
        weight = jnp.asarray(beta(step), jnp.float32)
        total, (aux, new_est) = body(params, est, key, x, mask, weight)
        return total, ({**aux, "beta": weight}, new_est)

    return scheduled_loss
