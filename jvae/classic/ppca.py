"""Probabilistic PCA (Tipping & Bishop, 1999): a linear-Gaussian latent-variable model.

The generative model, with ``W [D, k]``, ``mu [D]`` and noise variance ``sigma2``:

    p(z) = N(0, I_k),    p(x|z) = N(W z + mu, sigma2 I_D),
    p(x) = N(mu, C),     C = W W^T + sigma2 I_D,
    p(z|x) = N(M^-1 W^T (x - mu), sigma2 M^-1),    M = W^T W + sigma2 I_k.

(The lecture writes the marginal covariance as ``W^T W + I sigma^2`` and the posterior
covariance as ``M sigma^-2``; the forms above are the correct ones, Bishop 2006, eqs.
12.35-12.36 and 12.42.) The maximum-likelihood fit is in closed form (Tipping & Bishop, 1999,
eqs. 7-8): with ``lambda_1 >= ... >= lambda_D`` the eigenvalues of the sample covariance and
``U_k`` the leading eigenvectors,

    mu = mean(x),   sigma2 = mean(lambda_{k+1}, ..., lambda_D),
    W = U_k (Lambda_k - sigma2 I)^{1/2} R,

with the arbitrary rotation ``R = I`` here, so the columns of ``W`` are orthogonal, ``M``
is diagonal and the posterior factorises. As ``sigma2 -> 0`` the columns of ``W`` span the
PCA subspace (:func:`jvae.classic.fit_pca`).

:func:`ppca_to_vae` turns the parameters into a jvae :class:`~jvae.models.vae.VAE` (linear
encoder and decoder, Gaussian likelihood with a fixed scale), so that the VAE machinery
(ELBO, importance-sampled log-likelihood, figures) can be checked against the exact
answers of :func:`ppca_log_likelihood` and :func:`ppca_posterior`.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import distrax
import jax
import jax.numpy as jnp
import numpy as np

from jvae.classic.pca import _check_num_components, _check_values, _svd
from jvae.data.arguments import check_count

__all__ = ["PPCA", "fit_ppca", "ppca_marginal", "ppca_log_likelihood", "ppca_posterior",
           "ppca_sample", "ppca_to_vae"]


class PPCA(NamedTuple):
    """Parameters of probabilistic PCA (a pytree).

    Attributes:
      W: ``[D, k]`` factor loadings.
      mu: ``[D]`` mean of ``x``.
      sigma2: scalar noise variance (positive).
    """

    W: jax.Array
    mu: jax.Array
    sigma2: jax.Array


def fit_ppca(x: jax.Array, latent_dim: int, *, ddof: int = 0) -> PPCA:
    """Closed-form maximum-likelihood PPCA (Tipping & Bishop, 1999, eqs. 7-8, with R = I).

    The eigenvalues come from the thin SVD of the centred data, ``lambda_j = S_j^2 / (N -
    ddof)``, so no ``D x D`` covariance is formed; ``sigma2`` averages the ``D - k``
    discarded eigenvalues (those beyond ``min(N, D)`` are zero). Jittable with
    ``latent_dim`` and ``ddof`` static.

    Args:
      x: ``[N, D]`` finite floating-point data.
      latent_dim: k, with ``1 <= k < D`` and ``k <= N``.
      ddof: ``0`` gives the maximum-likelihood estimate (the sample covariance divides by
        N); ``1`` divides by ``N - 1``, the convention of ``sklearn.decomposition.PCA``,
        whose ``score_samples`` is this model's log-likelihood.

    Returns:
      The :class:`PPCA`, with ``W``'s columns orthogonal and sorted by decreasing norm.

    Raises:
      ValueError: ``x`` is not a finite 2-D float array, k is out of range, ``ddof`` is not
        0 or 1, or the data lie in a k-dimensional affine subspace (``sigma2 = 0``: the ML
        model is degenerate; use a smaller ``latent_dim``).
    """
    x, k = _check_num_components(x, latent_dim, "latent_dim")
    if ddof not in (0, 1) or isinstance(ddof, bool):
        raise ValueError(f"ddof must be 0 or 1, got {ddof!r}.")
    if ddof == 1 and x.shape[0] < 2:
        raise ValueError("ddof=1 needs at least 2 examples.")
    ppca = _fit_ppca(jnp.asarray(x), k, ddof)
    if not isinstance(ppca.sigma2, jax.core.Tracer):
        s2, lam1 = float(ppca.sigma2), float(jnp.sum(ppca.W[:, 0] ** 2) + ppca.sigma2)
        if not s2 > float(jnp.finfo(ppca.W.dtype).eps) * lam1:
            raise ValueError(
                f"The data lie in a {k}-dimensional affine subspace (noise variance sigma2="
                f"{s2:.3g}): PPCA with latent_dim={k} is degenerate; use a smaller latent_dim.")
    return ppca


def ppca_marginal(ppca: PPCA) -> distrax.Distribution:
    """The exact marginal ``p(x) = N(mu, W W^T + sigma2 I)``.

    Returns:
      A distrax ``MultivariateNormalFullCovariance`` with batch shape ``[]`` and event shape
      ``[D]`` (it forms and factorises the ``D x D`` covariance; for log-likelihoods of
      high-dimensional data :func:`ppca_log_likelihood` is cheaper).
    """
    W, mu, s2 = _unpack(ppca)
    cov = W @ W.T + s2 * jnp.eye(W.shape[0], dtype=W.dtype)
    return distrax.MultivariateNormalFullCovariance(mu, cov)


def ppca_log_likelihood(ppca: PPCA, x: jax.Array) -> jax.Array:
    """Exact ``log p(x)`` per example, in ``O(N D k)`` (no ``D x D`` matrix).

    Uses ``log det C = (D - k) log sigma2 + log det M`` and the completed square
    ``(x - mu)^T C^-1 (x - mu) = |x - mu - W m|^2 / sigma2 + |m|^2`` with ``m`` the posterior
    mean ``M^-1 W^T (x - mu)``: a sum of non-negative terms, without the cancellation of the
    Woodbury form.

    Args:
      ppca: the parameters.
      x: ``[N, D]`` (any leading axes ``[..., D]``), finite.

    Returns:
      ``[N]`` (or ``[...]``) log-densities.
    """
    W, mu, s2 = _unpack(ppca)
    _check_points(x, W.shape[0])
    return _log_likelihood(W, mu, s2, jnp.asarray(x, W.dtype))


def ppca_posterior(ppca: PPCA, x: jax.Array) -> distrax.Distribution:
    """The exact posterior ``p(z|x) = N(M^-1 W^T (x - mu), sigma2 M^-1)`` (Bayes' rule).

    Args:
      ppca: the parameters.
      x: ``[N, D]`` (any leading axes ``[..., D]``), finite.

    Returns:
      A distrax ``MultivariateNormalFullCovariance`` with batch shape ``[N]`` and event shape
      ``[k]``; its covariance is the same for every ``x``.
    """
    W, mu, s2 = _unpack(ppca)
    _check_points(x, W.shape[0])
    mean, cov = _posterior_moments(W, mu, s2, jnp.asarray(x, W.dtype))
    return distrax.MultivariateNormalFullCovariance(mean, jnp.broadcast_to(
        cov, mean.shape[:-1] + cov.shape))


def ppca_sample(ppca: PPCA, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """Ancestral samples ``z ~ N(0, I)``, ``x = W z + mu + sqrt(sigma2) eps``.

    Args:
      ppca: the parameters.
      key: ``jax.random`` key.
      n: number of samples (static).

    Returns:
      ``(z [n, k], x [n, D])``.
    """
    n = check_count(n, "n")
    W, mu, s2 = _unpack(ppca)
    return _sample(W, mu, s2, key, n)


def ppca_to_vae(ppca: PPCA) -> tuple[Any, Any]:
    """A jvae :class:`~jvae.models.vae.VAE` whose generative model is exactly this PPCA.

    The VAE has the prior ``StandardNormalPrior(k)``; a linear decoder (``MLP(hidden=())``,
    the identity, followed by ``GaussianHead((D,), scale="fixed", fixed_scale=sqrt(sigma2))``
    whose output layer has kernel ``W^T`` and bias ``mu``), so ``p(x|z) = N(W z + mu,
    sigma2 I)`` and the exact ``log p(x)`` is :func:`ppca_log_likelihood`; and a linear
    encoder (``MLP(hidden=())`` and a ``DiagGaussianHead(k, scale="softplus")``) whose mean is
    the exact posterior mean ``M^-1 W^T (x - mu)`` and whose standard deviations are the exact
    posterior marginal ones, ``sqrt(sigma2 (M^-1)_jj)``, constant in ``x``.

    When the columns of ``W`` are orthogonal (the ML fit of :func:`fit_ppca`), ``M`` is
    diagonal and ``q(z|x)`` *is* the exact posterior: the ELBO equals ``log p(x)`` and every
    importance weight equals ``p(x)``. Otherwise the exact posterior has correlations a
    diagonal Gaussian cannot represent, and ``q`` is the diagonal Gaussian that matches its
    mean and marginal variances (the minimiser of ``KL(p(z|x) || q)`` over diagonal
    Gaussians). As an importance proposal this is wider than the ELBO-optimal diagonal
    Gaussian (variances ``sigma2 / M_jj``, the minimiser of ``KL(q || p(z|x))``, Bishop
    2006, sec. 10.1.2), and for ``k <= 2`` its importance weights always have finite
    variance, so :func:`jvae.importance_log_likelihood` converges to the exact ``log p(x)``;
    the ELBO is then strictly below it.

    Needs concrete parameters (the noise scale becomes a module attribute), so it is not
    jittable; the returned model and parameters are.

    Args:
      ppca: the parameters.

    Returns:
      ``(model, params)``: the VAE and its Flax variables ``{"params": ...}`` (float32).
    """
    from jvae.models.heads import DiagGaussianHead, GaussianHead
    from jvae.models.vae import VAE
    from jvae.models.nets import MLP
    from jvae.models.priors import StandardNormalPrior

    if any(isinstance(a, jax.core.Tracer) for a in ppca):
        raise ValueError("ppca_to_vae needs concrete parameters, not traced ones (call it "
                         "outside jit/vmap).")
    W = np.asarray(ppca.W, np.float64)
    mu = np.asarray(ppca.mu, np.float64)
    s2 = float(np.asarray(ppca.sigma2))
    if not (W.ndim == 2 and mu.shape == (W.shape[0],) and np.all(np.isfinite(W))
            and np.all(np.isfinite(mu)) and math.isfinite(s2) and s2 > 0):
        raise ValueError(f"Invalid PPCA parameters: W {W.shape}, mu {mu.shape}, sigma2 {s2}.")
    d, k = W.shape
    minv = np.linalg.inv(W.T @ W + s2 * np.eye(k))
    A = minv @ W.T                                               # M^-1 W^T, [k, D]
    sd = np.sqrt(s2 * np.diag(minv))
    min_scale = min(1e-5, 0.5 * float(sd.min()))
    model = VAE(data_shape=(d,), prior=StandardNormalPrior(k),
                encoder=MLP(hidden=()),
                posterior=DiagGaussianHead(k, scale="softplus", min_scale=min_scale),
                decoder=MLP(hidden=()),
                likelihood=GaussianHead((d,), scale="fixed", fixed_scale=math.sqrt(s2)))
    params = {
        "posterior": {
            "loc": {"kernel": A.T, "bias": -A @ mu},
            "raw_scale": {"kernel": np.zeros((d, k)),
                          "bias": np.log(np.expm1(sd - min_scale))},   # softplus^-1
        },
        "likelihood": {"out": {"kernel": W.T, "bias": mu}},
    }
    return model, {"params": jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), params)}


# ----------------------------------------------------------------------------- helpers

@jax.jit
def _m_matrix(W: jax.Array, s2: jax.Array) -> jax.Array:
    return W.T @ W + s2 * jnp.eye(W.shape[1], dtype=W.dtype)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _fit_ppca(x: jax.Array, k: int, ddof: int) -> PPCA:
    mean, s, vt = _svd(x)
    n, d = x.shape
    lam = s**2 / (n - ddof)
    sigma2 = jnp.sum(lam[k:]) / (d - k)
    scale = jnp.sqrt(jnp.maximum(lam[:k] - sigma2, 0.0))
    return PPCA(W=vt[:k].T * scale, mu=mean, sigma2=sigma2)



@jax.jit
def _log_likelihood(W, mu, s2, x):
    d, k = W.shape
    r = x - mu
    chol = jnp.linalg.cholesky(_m_matrix(W, s2))
    m = jax.scipy.linalg.cho_solve((chol, True), (r @ W)[..., None])[..., 0]      # [..., k]
    resid = r - m @ W.T
    quad = jnp.sum(resid**2, -1) / s2 + jnp.sum(m**2, -1)
    logdet = (d - k) * jnp.log(s2) + 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
    return -0.5 * (quad + logdet + d * math.log(2.0 * math.pi))


@jax.jit
def _posterior_moments(W, mu, s2, x):
    chol = jnp.linalg.cholesky(_m_matrix(W, s2))
    mean = jax.scipy.linalg.cho_solve((chol, True), ((x - mu) @ W)[..., None])[..., 0]
    cov = s2 * jax.scipy.linalg.cho_solve((chol, True), jnp.eye(W.shape[1], dtype=W.dtype))
    return mean, 0.5 * (cov + cov.T)


@functools.partial(jax.jit, static_argnums=4)
def _sample(W, mu, s2, key, n: int):
    kz, kx = jax.random.split(key)
    z = jax.random.normal(kz, (n, W.shape[1]), W.dtype)
    eps = jax.random.normal(kx, (n, W.shape[0]), W.dtype)
    return z, z @ W.T + mu + jnp.sqrt(s2) * eps


def _unpack(ppca: PPCA) -> tuple[jax.Array, jax.Array, jax.Array]:
    W = jnp.asarray(ppca.W)
    if W.ndim != 2:
        raise ValueError(f"PPCA.W must be [D, k], got shape {tuple(W.shape)}.")
    mu = jnp.asarray(ppca.mu, W.dtype)
    if mu.shape != W.shape[:1]:
        raise ValueError(f"PPCA.mu must be [D={W.shape[0]}], got shape {tuple(mu.shape)}.")
    return W, mu, jnp.asarray(ppca.sigma2, W.dtype)


def _check_points(x: Any, d: int) -> None:
    if isinstance(x, jax.core.Tracer):
        return
    _check_values(x, name="x", data_shape=(d,), batch_ndim=None)
