"""Reference models with exact answers, for testing gradient estimators.

Probabilistic PCA (Tipping & Bishop, 1999) as a jvae :class:`~jvae.models.vae.VAE`:

    p(z) = N(0, I_k),   p(x|z) = N(W z + mu, sigma2 I_D),   q(z|x) = N(m(x), S(x)),

has, for every Gaussian ``q``, a closed-form ELBO

    ELBO(x) = -(|x - W m - mu|^2 + tr(W^T W S)) / (2 sigma2) - D/2 log(2 pi sigma2)
              - 1/2 (tr S + |m|^2 - k - log det S),

and so a closed-form gradient: :func:`exact_elbo` and :func:`exact_elbo_gradient` (the
derivatives with respect to ``m``, ``S``, ``W``, ``mu`` and ``sigma2`` written out, pulled back
to the VAE's parameters through the encoder's Jacobian). ``log p(x) - ELBO(x) = KL(q ||
p(z|x))`` with the exact marginal and posterior of :mod:`jvae.classic.ppca`.

:func:`ppca_reference` builds the model with orthogonal columns of ``W`` (the exact posterior
is diagonal, a ``DiagGaussianHead`` represents it and the ELBO is tight) or with correlated
columns (the exact posterior is not diagonal; the best diagonal ``q`` is strictly below
``log p(x)``). :func:`mixture_reference` is the same linear-Gaussian decoder with a
mixture-of-Gaussians posterior, whose ELBO has no closed form (the mixture's entropy);
:func:`enumerated_mixture_gradient` is a low-variance unbiased reference for it.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jvae.classic.linear_vae import linear_vae_to_ppca
from jvae.classic.ppca import PPCA, ppca_log_likelihood, ppca_posterior, ppca_sample
from jvae.data.arguments import check_count

__all__ = ["PPCAReference", "ppca_reference", "exact_elbo", "exact_elbo_gradient",
           "gaussian_elbo", "MixtureReference", "mixture_reference",
           "enumerated_mixture_gradient"]


class PPCAReference(NamedTuple):
    """Probabilistic PCA as a jvae VAE with exact answers (built by :func:`ppca_reference`).

    Attributes:
      model: the VAE: ``MLP(hidden=())`` encoder and decoder, ``DiagGaussianHead(k,
        scale="softplus")`` posterior, ``GaussianHead((D,), scale="fixed")`` likelihood.
      ppca: its generative model, :class:`jvae.classic.PPCA` (float64 numpy arrays).
      orthogonal: whether the columns of ``W`` are orthogonal (then the exact posterior is
        diagonal and ``params()`` is exactly it).
      min_scale: the posterior head's floor on its standard deviations.
      template: the structure of the VAE's parameters (``jax.ShapeDtypeStruct`` leaves).
    """

    model: Any
    ppca: PPCA
    orthogonal: bool
    min_scale: float
    template: Any

    @property
    def data_dim(self) -> int:
        return int(self.ppca.W.shape[0])

    @property
    def latent_dim(self) -> int:
        return int(self.ppca.W.shape[1])

    @property
    def posterior_sd(self) -> np.ndarray:
        """``[k]`` standard deviations of the best diagonal Gaussian ``q``:
        ``sqrt(sigma2 / M_jj)``, ``M = W^T W + sigma2 I`` (the exact posterior's marginal ones
        when ``W``'s columns are orthogonal)."""
        W, _, s2 = self.ppca
        return np.sqrt(s2 / (np.sum(W * W, axis=0) + s2))

    def params(self, loc_shift: float = 0.0, scale_factor: float = 1.0) -> Any:
        """VAE variables whose ``q(z|x)`` is the best diagonal Gaussian, changed on purpose.

        ``q(z|x) = N(E[z|x] + loc_shift * sd, diag((scale_factor * sd)^2))`` with ``E[z|x]``
        the exact posterior mean and ``sd`` :attr:`posterior_sd`; the decoder is exactly
        the PPCA. With the defaults and orthogonal columns, ``q`` is the exact posterior.

        Args:
          loc_shift: shift of every posterior mean, in posterior standard deviations.
          scale_factor: factor on every posterior standard deviation (> 0).

        Returns:
          ``{"params": ...}`` (float32), the structure of ``init_params(model, ...)``.
        """
        if not scale_factor > 0:
            raise ValueError(f"scale_factor must be positive, got {scale_factor!r}.")
        W, mu, s2 = self.ppca
        if self.orthogonal:
            A = W.T / (np.sum(W * W, axis=0) + s2)[:, None]           # M^-1 W^T, [k, D]
        else:
            A = np.linalg.solve(W.T @ W + s2 * np.eye(W.shape[1]), W.T)
        sd = self.posterior_sd * scale_factor
        if not np.all(sd > self.min_scale):
            raise ValueError(f"scale_factor={scale_factor!r} puts a posterior sd at or below the "
                             f"head's min_scale {self.min_scale:g}.")
        new = {
            "posterior": {
                "loc": {"kernel": A.T, "bias": -A @ mu + loc_shift * self.posterior_sd},
                "raw_scale": {"kernel": np.zeros_like(A.T),
                              "bias": np.log(np.expm1(sd - self.min_scale))},  # softplus^-1
            },
            "likelihood": {"out": {"kernel": W.T, "bias": mu}},
        }
        if jax.tree.structure(self.template) != jax.tree.structure(new):
            raise ValueError("The VAE's parameter structure is not that of a linear PPCA VAE: "
                             f"{jax.tree.structure(self.template)}")
        return {"params": jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), new)}

    def log_px(self, x: jax.Array) -> jax.Array:
        """Exact ``log p(x)`` ``[N]`` of ``x [N, D]`` (:func:`jvae.classic.ppca_log_likelihood`)."""
        return ppca_log_likelihood(self.ppca, jnp.asarray(x))

    def posterior(self, x: jax.Array):
        """The exact ``p(z|x)``: a distrax full-covariance Gaussian, batch ``[N]``, event ``[k]``."""
        return ppca_posterior(self.ppca, jnp.asarray(x))

    def sample(self, key: jax.Array, n: int) -> jax.Array:
        """``[n, D]`` float32 observations drawn from the model."""
        p = PPCA(*(jnp.asarray(a, jnp.float32) for a in self.ppca))
        return ppca_sample(p, key, n)[1]


def ppca_reference(data_dim: int = 5, latent_dim: int = 2, *, sigma: float = 0.5,
                   scales=None, orthogonal: bool = True, seed: int = 0,
                   min_scale: float = 1e-5) -> PPCAReference:
    """Probabilistic PCA as a jvae VAE with a closed-form ELBO and gradient.

    ``W = Q diag(scales)`` with ``Q`` the orthonormal factor of a standard-normal ``[D, k]``
    matrix (``orthogonal=True``), or ``W`` itself standard normal times ``scales``
    (``orthogonal=False``: correlated columns, a non-diagonal exact posterior); ``mu``
    standard normal; both drawn by ``numpy.random.default_rng(seed)``.

    Args:
      data_dim: D >= 2.
      latent_dim: k, ``1 <= k <= D``.
      sigma: the observation noise's standard deviation (> 0).
      scales: ``[k]`` column norms (orthogonal) or column factors; default ``(2.0, 0.7,
        0.7^2, ..., 0.7^(k-1))``.
      orthogonal: see above.
      seed: numpy seed of ``W`` and ``mu``.
      min_scale: floor of the posterior head's standard deviations.

    Returns:
      A :class:`PPCAReference`.
    """
    from jvae.models.heads import DiagGaussianHead, GaussianHead
    from jvae.models.vae import VAE, init_params
    from jvae.models.nets import MLP
    from jvae.models.priors import StandardNormalPrior

    d, k = check_count(data_dim, "data_dim"), check_count(latent_dim, "latent_dim")
    if not (d >= 2 and 1 <= k <= d):
        raise ValueError(f"need data_dim >= 2 and 1 <= latent_dim <= data_dim, got {data_dim!r}, "
                         f"{latent_dim!r}.")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}.")
    if scales is None:
        scales = [2.0] + [0.7**j for j in range(1, k)]
    scales = np.asarray(scales, np.float64)
    if scales.shape != (k,) or not np.all(scales > 0):
        raise ValueError(f"scales must be {k} positive numbers, got {scales.tolist()}.")
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(d, k))
    W = (np.linalg.qr(g)[0] if orthogonal else g) * scales
    mu = rng.normal(size=d)
    model = VAE(data_shape=(d,), prior=StandardNormalPrior(k), encoder=MLP(hidden=()),
                posterior=DiagGaussianHead(k, scale="softplus", min_scale=min_scale),
                decoder=MLP(hidden=()),
                likelihood=GaussianHead((d,), scale="fixed", fixed_scale=float(sigma)))
    # Only the structure of the parameters is needed: eval_shape compiles nothing.
    template = jax.eval_shape(lambda: init_params(model, jax.random.PRNGKey(0),
                                                  jnp.zeros((1, d))))["params"]
    return PPCAReference(model, PPCA(W, mu, np.float64(sigma) ** 2), bool(orthogonal),
                         float(min_scale), template)


def gaussian_elbo(ppca: PPCA, x: jax.Array, mean: jax.Array, cov: jax.Array) -> jax.Array:
    """The ELBO of ``q = N(mean, cov)`` under PPCA, in closed form, per example.

    Args:
      ppca: ``W [D, k]``, ``mu [D]``, ``sigma2``.
      x: ``[B, D]``.
      mean: ``[B, k]``.
      cov: ``[B, k, k]`` (positive definite) or ``[B, k]`` (a diagonal's variances).

    Returns:
      ``[B]`` ELBOs (nats); ``log p(x) - ELBO = KL(q || p(z|x))``.
    """
    W, mu, s2 = (jnp.asarray(a) for a in ppca)
    cov = jnp.asarray(cov)
    if cov.ndim == mean.ndim:
        cov = cov[..., :, None] * jnp.eye(cov.shape[-1], dtype=cov.dtype)
    d, k = W.shape
    resid = x - mean @ W.T - mu
    trace = jnp.einsum("ij,...ji->...", W.T @ W, cov)
    logdet = jnp.linalg.slogdet(cov)[1]
    expected = -0.5 * (jnp.sum(resid**2, -1) + trace) / s2 - 0.5 * d * jnp.log(
        2 * math.pi * s2)
    kl = 0.5 * (jnp.trace(cov, axis1=-2, axis2=-1) + jnp.sum(mean**2, -1) - k - logdet)
    return expected - kl


def exact_elbo(model: Any, params: Any, x: jax.Array) -> jax.Array:
    """The closed-form ELBO ``[B]`` of a linear-Gaussian VAE with any Gaussian posterior.

    The decoder must be PPCA's (:func:`jvae.classic.linear_vae_to_ppca`: a standard-normal
    prior, ``MLP(hidden=())`` and a projecting ``GaussianHead``, fixed or shared learned
    noise); ``q(z|x)`` any distribution with ``mean()`` and ``covariance()`` (a diagonal or
    full-covariance distrax Gaussian). This is what :func:`jvae.make_elbo_loss` estimates.
    """
    return _exact_elbo(model, params, jnp.asarray(x))


@functools.partial(jax.jit, static_argnums=0)
def _exact_elbo(model, params, x):
    from jvae.models.vae import VAE

    q = model.apply(params, x, method=VAE.encode)
    mean, cov = _gaussian_moments(q)
    return gaussian_elbo(linear_vae_to_ppca(model, params), x, mean, cov)


def exact_elbo_gradient(model: Any, params: Any, x: jax.Array) -> jax.Array:
    """Gradient of the loss ``-mean_B ELBO`` in closed form, flattened ``[P]``.

    The sign and layout of :func:`jvae.testing.gradient_draws` (``ravel_pytree`` of the
    model's parameters). Per example, with ``r = x - W m - mu`` and ``q = N(m, S)``:

        dELBO/dm = W^T r / sigma2 - m,
        dELBO/dS = -W^T W / (2 sigma2) - I / 2 + S^-1 / 2,
        dELBO/dW = (r m^T - W S) / sigma2,      dELBO/dmu = r / sigma2,
        dELBO/dsigma2 = (|r|^2 + tr(W^T W S)) / (2 sigma2^2) - D / (2 sigma2);

    these are pulled back to the parameters through the Jacobian of ``params -> (m, S, W,
    mu, sigma2)`` (``jax.vjp`` of the encoder and of reading the decoder's weights). Jittable.

    Args:
      model: a VAE accepted by :func:`exact_elbo`.
      params: its variables.
      x: ``[B, D]``.

    Returns:
      ``[P]`` float32 (the dtype of the parameters).
    """
    return _exact_elbo_gradient(model, params, jnp.asarray(x))


@functools.partial(jax.jit, static_argnums=0)
def _exact_elbo_gradient(model, params, x):
    from jvae.models.vae import VAE

    def moments(p):
        mean, cov = _gaussian_moments(model.apply(p, x, method=VAE.encode))
        W, mu, s2 = linear_vae_to_ppca(model, p)
        return mean, cov, W, mu, s2

    (m, S, W, mu, s2), pullback = jax.vjp(moments, params)
    b, d = x.shape[0], W.shape[0]
    r = x - m @ W.T - mu                                                     # [B, D]
    wtw = W.T @ W
    g_m = r @ W / s2 - m
    g_S = -0.5 * wtw / s2 - 0.5 * jnp.eye(wtw.shape[0], dtype=S.dtype) + 0.5 * jnp.linalg.inv(S)
    g_W = (r.T @ m - W @ jnp.sum(S, 0)) / s2
    g_mu = jnp.sum(r, 0) / s2
    sq = jnp.sum(r**2, -1) + jnp.einsum("ij,bji->b", wtw, S)
    g_s2 = jnp.sum(0.5 * sq / s2**2 - 0.5 * d / s2)
    scale = -1.0 / b                                   # the loss is -mean_B ELBO
    cot = tuple(scale * g for g in (g_m, g_S, g_W, g_mu, g_s2))
    return ravel_pytree(pullback(cot)[0])[0]


class MixtureReference(NamedTuple):
    """A linear-Gaussian decoder with a mixture-of-Gaussians posterior.

    Attributes:
      model: VAE with a ``MixtureGaussianHead(k, components)`` posterior and PPCA's decoder.
      params: its variables: the PPCA's decoder, the posterior's initial parameters scaled
        down (a non-trivial mixture that is not the exact posterior).
    """

    model: Any
    params: Any


def mixture_reference(reference: PPCAReference, key: jax.Array, x: jax.Array, *,
                      components: int = 3, init_spread: float = 0.7,
                      scale: float = 0.3) -> MixtureReference:
    """The PPCA reference's generative model with a mixture posterior.

    Args:
      reference: a :class:`PPCAReference` (its decoder and noise).
      key: initialisation key of the posterior head.
      x: ``[B, D]`` example observations (shapes only).
      components: C >= 2 mixture components.
      init_spread: the head's spread of initial component means.
      scale: factor on every initial non-decoder parameter.

    Returns:
      A :class:`MixtureReference`; :func:`enumerated_mixture_gradient` gives its gradient.
    """
    from jvae.models.heads import GaussianHead, MixtureGaussianHead
    from jvae.models.vae import VAE, init_params
    from jvae.models.nets import MLP
    from jvae.models.priors import StandardNormalPrior

    components = check_count(components, "components", minimum=2)
    lik = reference.model.likelihood
    model = VAE(data_shape=(reference.data_dim,), prior=StandardNormalPrior(reference.latent_dim),
                encoder=MLP(hidden=()),
                posterior=MixtureGaussianHead(reference.latent_dim, int(components),
                                              init_spread=init_spread),
                decoder=MLP(hidden=()),
                likelihood=GaussianHead((reference.data_dim,), scale="fixed",
                                        fixed_scale=lik.fixed_scale))
    params = init_params(model, key, x)
    decoder = reference.params()["params"]["likelihood"]["out"]
    params = jax.tree_util.tree_map_with_path(
        lambda path, v: (jnp.asarray(decoder[path[-1].key])
                         if getattr(path[1], "key", "") == "likelihood" else scale * v), params)
    return MixtureReference(model, params)


def enumerated_mixture_gradient(model: Any, params: Any, x: jax.Array, key: jax.Array, *,
                                chunks: int = 64, per_chunk: int = 500
                                ) -> tuple[np.ndarray, np.ndarray]:
    """A low-variance unbiased reference for the ELBO gradient of a mixture posterior.

    ``grad sum_c w_c E_eps[f(mu_c + sigma_c eps)]``, ``f = log p(x, z) - log q(z|x)``, with
    the components enumerated (no score term) and a common ``eps`` for all of them, averaged
    over ``chunks * per_chunk`` draws of ``eps``; the chunk means give the standard error.

    Args:
      model: a VAE with a :class:`jvae.models.heads.MixtureGaussianHead` posterior.
      params: its variables.
      x: ``[B, D]``.
      key: key of the ``eps`` draws.
      chunks: independent chunks (the standard error's sample).
      per_chunk: draws of ``eps`` per chunk.

    Returns:
      ``(mean [P], standard_error [P])`` of the loss's gradient (``-mean_B ELBO``), float64.
    """
    from jvae.models.distributions import mixture_parts
    from jvae.models.vae import VAE

    latent = int(model.posterior.latent_dim)

    def neg_elbo(p, eps):                                          # eps [M, B, 1, k]
        q = model.apply(p, x, method=VAE.encode)
        logits, loc, scale = mixture_parts(q)
        z = loc + scale * eps                                      # [M, B, C, k]
        zt = jnp.moveaxis(z, -2, 0)                                # [C, M, B, k]
        f = (model.apply(p, x, zt, method=VAE.log_joint) - q.log_prob(zt))   # [C, M, B]
        w = jax.nn.softmax(logits)                                 # [B, C]
        return -jnp.mean(jnp.sum(w.T * f.mean(1), 0))

    eps = jax.random.normal(key, (int(chunks), int(per_chunk), x.shape[0], 1, latent))
    grads = jax.jit(jax.vmap(lambda e: ravel_pytree(jax.grad(neg_elbo)(params, e))[0]))(eps)
    grads = np.asarray(grads, np.float64)
    return grads.mean(0), grads.std(0) / np.sqrt(int(chunks))


def _gaussian_moments(q) -> tuple[jax.Array, jax.Array]:
    try:
        return q.mean(), q.covariance()
    except (AttributeError, NotImplementedError, TypeError) as e:
        raise ValueError(f"The exact ELBO needs a Gaussian posterior with mean() and "
                         f"covariance(); got {type(q).__name__}.") from e
