"""The linear VAE of Lucas et al. (2019) and its exact marginal likelihood.

Lucas, Tucker, Grosse and Norouzi (2019), "Don't blame the ELBO! A linear VAE perspective on
posterior collapse" (NeurIPS), study the VAE whose decoder is linear-Gaussian with isotropic
noise and whose encoder is linear with a diagonal-Gaussian posterior:

    p(z) = N(0, I_k),   p(x|z) = N(W z + mu, sigma2 I_D),   q(z|x) = N(V x + b, diag(s^2)).

Its generative model is probabilistic PCA (:mod:`jvae.classic.ppca`), so its marginal is
exact, ``p(x) = N(mu, W W^T + sigma2 I)``, and its global ELBO optimum is the PPCA maximum
likelihood solution with the columns of ``W`` orthogonal, where the ELBO is tight (their
Theorem 1 and Corollary 1). Directions whose sample-covariance eigenvalue does not exceed
``sigma2`` get a zero column of ``W`` and a posterior equal to the prior: posterior collapse
is a property of the marginal likelihood, not an artefact of the ELBO.

- :func:`make_linear_vae` builds that VAE in jvae terms (``MLP(hidden=())`` encoder and
  decoder, :class:`~jvae.models.heads.DiagGaussianHead`, and a
  :class:`~jvae.models.heads.GaussianHead` whose scale is one learned scalar,
  ``scale="learned_shared"``, or fixed).
- :func:`linear_vae_to_ppca` reads ``W``, ``mu`` and ``sigma2`` off its (trained) parameters;
  :func:`linear_vae_log_likelihood` is then the exact ``log p(x)``, in ``O(N D k)`` by the
  matrix determinant lemma and a completed square (:func:`jvae.classic.ppca_log_likelihood`;
  no ``D x D`` matrix).
- :func:`linear_vae_elbo` is the ELBO of any diagonal-Gaussian encoder with this decoder in
  closed form (no Monte Carlo noise); :func:`latent_usage` gives, per latent dimension, the
  mean posterior variance, the squared norm of the decoder column and the KL to the prior,
  the signs of a collapsed dimension.
- :func:`fit_linear_vae` trains it by jvae's reparameterised ELBO
  (:func:`jvae.make_elbo_loss`, :func:`jvae.make_train_epoch`, Adam), recording the exact
  log-likelihood and ELBO every epoch; :func:`ppca_fixed_noise` is PPCA's
  maximum-likelihood ``W`` for a fixed ``sigma2`` (Tipping & Bishop, 1999, eq. 7), the
  stationary point the paper compares the VAE with when ``sigma2`` is not learned.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jvae.classic.ppca import PPCA, ppca_log_likelihood
from jvae.data.arguments import check_count

__all__ = ["LinearVAEFit", "make_linear_vae", "fit_linear_vae", "linear_vae_to_ppca",
           "linear_vae_log_likelihood", "linear_vae_elbo", "latent_usage", "ppca_fixed_noise"]


class LinearVAEFit(NamedTuple):
    """A trained linear VAE and its training curve.

    Attributes:
      model: the VAE (:func:`make_linear_vae`).
      params: its trained variables ``{"params": ...}``.
      steps: ``[E]`` optimiser steps taken after each epoch.
      train_elbo: ``[E]`` mean training ELBO after each epoch, in closed form
        (:func:`linear_vae_elbo`).
      train_log_likelihood: ``[E]`` mean exact ``log p(x)`` of the training data after each
        epoch (:func:`linear_vae_log_likelihood`).
    """

    model: Any
    params: Any
    steps: jax.Array
    train_elbo: jax.Array
    train_log_likelihood: jax.Array


def make_linear_vae(data_dim: int, latent_dim: int, *, noise: str = "learned",
                    noise_scale: float = 1.0, min_scale: float = 1e-3) -> Any:
    """The linear VAE of Lucas et al. (2019) as a jvae :class:`~jvae.models.vae.VAE`.

    Encoder ``MLP(hidden=())`` (the identity) and ``DiagGaussianHead(k, scale="softplus")``:
    a posterior mean linear in ``x`` and a scale ``softplus(linear(x))`` (at the ELBO's
    optimum the scale's kernel is zero, as in the paper's ``x``-independent ``D``). Decoder
    ``MLP(hidden=())`` and ``GaussianHead((D,))``: ``p(x|z) = N(W z + mu, sigma2 I)`` with
    ``W`` the transposed kernel and ``mu`` the bias of the head's ``out`` layer.

    Args:
      data_dim: D (flat observations ``[..., D]``).
      latent_dim: k.
      noise: ``"learned"``: one trainable scalar ``sigma`` (``scale="learned_shared"``,
        starting at ``noise_scale``), as PPCA's maximum likelihood; ``"fixed"``: ``sigma =
        noise_scale``, as in the paper's study of collapse against ``sigma2``.
      noise_scale: the initial or fixed ``sigma`` (not the variance).
      min_scale: floor of the learned ``sigma``.

    Returns:
      The (uninitialised) VAE; initialise it with :func:`jvae.init_params`.
    """
    from jvae.models.heads import DiagGaussianHead, GaussianHead
    from jvae.models.vae import VAE
    from jvae.models.nets import MLP
    from jvae.models.priors import StandardNormalPrior

    if noise not in ("learned", "fixed"):
        raise ValueError(f"noise must be 'learned' or 'fixed', got {noise!r}.")
    d, k = check_count(data_dim, "data_dim"), check_count(latent_dim, "latent_dim")
    if d <= 0 or k <= 0:
        raise ValueError(f"data_dim and latent_dim must be positive, got {data_dim!r}, "
                         f"{latent_dim!r}.")
    if not noise_scale > 0:
        raise ValueError(f"noise_scale must be positive, got {noise_scale!r}.")
    likelihood = GaussianHead((d,), scale="learned_shared" if noise == "learned" else "fixed",
                              fixed_scale=float(noise_scale), min_scale=float(min_scale))
    return VAE(data_shape=(d,), prior=StandardNormalPrior(k), encoder=MLP(hidden=()),
               posterior=DiagGaussianHead(k, scale="softplus"), decoder=MLP(hidden=()),
               likelihood=likelihood)


def linear_vae_to_ppca(model: Any, params: Any) -> PPCA:
    """The generative model ``p(z) p(x|z)`` of a linear-Gaussian VAE as :class:`PPCA`.

    Works for :func:`make_linear_vae` and :func:`jvae.classic.ppca_to_vae` models: a
    standard-normal prior, a decoder ``MLP(hidden=())`` and a projecting
    ``GaussianHead((D,))`` with ``scale="fixed"`` or ``"learned_shared"``. Jittable in
    ``params``.

    Args:
      model: the VAE.
      params: its variables ``{"params": ...}``.

    Returns:
      ``PPCA(W [D, k], mu [D], sigma2 [])``.

    Raises:
      ValueError: the decoder is not linear, or the noise is not isotropic (a per-dimension
        scale gives factor analysis, whose marginal this does not cover).
    """
    from jvae.models.heads import GaussianHead
    from jvae.models.nets import MLP
    from jvae.models.priors import StandardNormalPrior

    lik, dec = model.likelihood, model.decoder
    if not (isinstance(dec, MLP) and tuple(dec.hidden) == () and isinstance(lik, GaussianHead)
            and lik.project and len(tuple(lik.event_shape)) == 1
            and isinstance(model.prior, StandardNormalPrior)):
        raise ValueError("linear_vae_to_ppca needs a standard-normal prior, a decoder "
                         "MLP(hidden=()) and a GaussianHead((D,), project=True): a "
                         "linear-Gaussian decoder.")
    out = params["params"]["likelihood"]["out"]
    W, mu = jnp.asarray(out["kernel"]).T, jnp.asarray(out["bias"])
    if lik.scale == "fixed":
        sigma2 = jnp.asarray(float(lik.fixed_scale) ** 2, W.dtype)
    elif lik.scale == "learned_shared":
        raw = params["params"]["likelihood"]["raw_scale"]
        sigma2 = (jax.nn.softplus(raw) + lik.min_scale) ** 2
    else:
        raise ValueError(f"GaussianHead(scale={lik.scale!r}) is not isotropic noise; use "
                         "scale='learned_shared' or 'fixed'.")
    return PPCA(W=W, mu=mu, sigma2=sigma2)


def linear_vae_log_likelihood(model: Any, params: Any, x: jax.Array) -> jax.Array:
    """Exact ``log p(x) = log N(x; mu, W W^T + sigma2 I)`` of a linear-Gaussian VAE.

    ``W`` need not have orthogonal columns (a VAE mid-training); the computation is that of
    :func:`jvae.classic.ppca_log_likelihood`, ``O(N D k)``, with ``log det C = (D - k) log
    sigma2 + log det(W^T W + sigma2 I_k)`` and no ``D x D`` matrix.

    Args:
      model: a VAE accepted by :func:`linear_vae_to_ppca`.
      params: its variables.
      x: ``[N, D]`` (any leading axes).

    Returns:
      ``[N]`` log-densities (nats).
    """
    return ppca_log_likelihood(linear_vae_to_ppca(model, params), x)


def linear_vae_elbo(model: Any, params: Any, x: jax.Array) -> jax.Array:
    """The ELBO ``E_q[log p(x|z)] - KL(q(z|x) || N(0, I))`` in closed form, per example.

    With ``q(z|x) = N(m, diag(s^2))`` (any encoder with a diagonal-Gaussian posterior) and
    ``p(x|z) = N(W z + mu, sigma2 I)``:

        E_q[log p(x|z)] = log N(x; W m + mu, sigma2 I) - sum_j s_j^2 |w_j|^2 / (2 sigma2),
        KL = 1/2 sum_j (m_j^2 + s_j^2 - 1 - log s_j^2).

    The difference ``log p(x) - ELBO`` is ``KL(q(z|x) || p(z|x)) >= 0``. This is what
    :func:`jvae.make_elbo_loss` estimates by sampling.

    Args:
      model: a VAE accepted by :func:`linear_vae_to_ppca`.
      params: its variables.
      x: ``[N, D]`` (any leading axes).

    Returns:
      ``[N]`` ELBOs (nats).
    """
    from jvae.models.vae import VAE

    W, mu, s2 = linear_vae_to_ppca(model, params)
    q = model.apply(params, x, method=VAE.encode)
    m, var = q.mean(), q.variance()
    d = W.shape[0]
    resid = x - m @ W.T - mu
    expected = (-0.5 * (jnp.sum(resid**2, -1) + var @ jnp.sum(W**2, 0)) / s2
                - 0.5 * d * (jnp.log(s2) + math.log(2.0 * math.pi)))
    kl = 0.5 * jnp.sum(m**2 + var - 1.0 - jnp.log(var), -1)
    return expected - kl


def latent_usage(model: Any, params: Any, x: jax.Array
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per latent dimension: mean posterior variance, ``|w_j|^2`` and the KL to the prior.

    A collapsed dimension has ``q(z_j|x) = p(z_j)`` (posterior variance 1, mean 0, so
    ``KL(q(z_j|x) || N(0, 1)) = 0`` for every ``x``) and a zero decoder column. Lucas et
    al. (2019, Definition 1) call dimension ``j`` (epsilon, delta)-collapsed when
    ``P_x[KL_j(x) < epsilon] >= 1 - delta``; count it with ``jnp.mean(kl < eps, 0) >= 1 -
    delta``. At PPCA's optimum with orthogonal columns the posterior variance of dimension
    ``j`` is ``sigma2 / (|w_j|^2 + sigma2)``.

    Args:
      model: a VAE accepted by :func:`linear_vae_to_ppca` with a diagonal-Gaussian posterior.
      params: its variables.
      x: ``[N, D]``.

    Returns:
      ``(posterior_variance [k], column_sq_norm [k], kl [N, k])``: the variance averaged
      over ``x``, the squared decoder column norms and the per-example, per-dimension KL.
    """
    from jvae.models.vae import VAE

    W = linear_vae_to_ppca(model, params).W
    q = model.apply(params, x, method=VAE.encode)
    m, var = q.mean(), q.variance()
    kl = 0.5 * (m**2 + var - 1.0 - jnp.log(var))
    return jnp.mean(var.reshape(-1, var.shape[-1]), 0), jnp.sum(W**2, 0), kl


def fit_linear_vae(key: jax.Array, x: jax.Array, latent_dim: int, *, noise: str = "learned",
                   noise_scale: float = 1.0, num_epochs: int = 100, batch_size: int = 100,
                   learning_rate: float = 1e-2, cosine_decay: bool = True) -> LinearVAEFit:
    """Train :func:`make_linear_vae` by the reparameterised ELBO with Adam.

    jvae's own machinery: :func:`jvae.init_params`, :func:`jvae.make_elbo_loss` (one sample,
    analytic KL), :func:`jvae.make_optimizer` and the scanned :func:`jvae.make_train_epoch`.
    With ``cosine_decay`` the learning rate falls from ``learning_rate`` to 0 along a cosine
    over the ``num_epochs * (N // batch_size)`` steps, which removes most of the gradient
    noise that otherwise keeps the iterate a few hundredths of a nat from the optimum.

    Args:
      key: ``jax.random`` key (initialisation, batch order, samples).
      x: ``[N, D]`` training data (finite).
      latent_dim: k.
      noise: ``"learned"`` or ``"fixed"``, see :func:`make_linear_vae`.
      noise_scale: the initial (learned) or fixed ``sigma``.
      num_epochs: passes over ``x``.
      batch_size: examples per step.
      learning_rate: Adam's (peak) learning rate.
      cosine_decay: decay the learning rate to 0 over training.

    Returns:
      A :class:`LinearVAEFit`.
    """
    from jvae.models.vae import init_params
    from jvae.objectives import make_elbo_loss
    from jvae.training import TrainState, make_optimizer, make_train_epoch

    x = jnp.asarray(x, jnp.float32)
    if x.ndim != 2:
        raise ValueError(f"x must be [N, D], got shape {tuple(x.shape)}.")
    num_epochs = check_count(num_epochs, "num_epochs")
    model = make_linear_vae(x.shape[1], latent_dim, noise=noise, noise_scale=noise_scale)
    init_key, train_key = jax.random.split(key)
    params = init_params(model, init_key, x[:1])
    total = int(num_epochs) * (x.shape[0] // int(batch_size))
    schedule = None
    if cosine_decay:
        def schedule(count):
            return 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.minimum(count / total, 1.0)))
    optimizer = make_optimizer(learning_rate, schedule=schedule)
    epoch = make_train_epoch(make_elbo_loss(model), optimizer, batch_size)
    state = TrainState.create(params, optimizer, train_key)
    @jax.jit
    def bounds(p):
        return (jnp.mean(linear_vae_elbo(model, p, x)),
                jnp.mean(linear_vae_log_likelihood(model, p, x)))

    steps, elbos, lls = [], [], []
    for _ in range(int(num_epochs)):
        state, _, _ = epoch(state, x)
        elbo, log_lik = bounds(state.params)
        steps.append(state.step)
        elbos.append(elbo)
        lls.append(log_lik)
    return LinearVAEFit(model, state.params, jnp.stack(steps), jnp.stack(elbos),
                        jnp.stack(lls))


def ppca_fixed_noise(ppca: PPCA, sigma2: float) -> PPCA:
    """PPCA's maximum-likelihood ``W`` for a fixed noise variance ``sigma2``.

    Tipping & Bishop (1999, eq. 7) with ``R = I``: ``W = U_k (Lambda_k - sigma2 I)_+^{1/2}``,
    the leading eigenvectors ``U_k`` of the sample covariance scaled by the excess of their
    eigenvalues over ``sigma2``; a direction with ``lambda_j <= sigma2`` gets a zero column
    (the likelihood's own posterior collapse, Lucas et al., 2019, sec. 4). The eigenvectors
    and eigenvalues are read off a maximum-likelihood fit (:func:`jvae.classic.fit_ppca`),
    whose columns are ``u_j (lambda_j - sigma2_ML)^{1/2}``.

    Args:
      ppca: the output of :func:`jvae.classic.fit_ppca` (orthogonal columns, all with
        ``lambda_j > sigma2_ML``).
      sigma2: the fixed noise variance (> 0).

    Returns:
      ``PPCA(W, mu, sigma2)``.
    """
    if not isinstance(sigma2, jax.core.Tracer) and not float(sigma2) > 0:
        raise ValueError(f"sigma2 must be positive, got {sigma2!r}.")
    W = jnp.asarray(ppca.W)
    norms2 = jnp.sum(W**2, 0)
    lam = norms2 + ppca.sigma2
    u = W / jnp.sqrt(jnp.where(norms2 > 0, norms2, 1.0))
    s2 = jnp.asarray(sigma2, W.dtype)
    return PPCA(W=u * jnp.sqrt(jnp.maximum(lam - s2, 0.0)), mu=ppca.mu, sigma2=s2)
