"""The Gaussian latent-variable model of Rainforth et al. (2018), with its closed-form optimum.

"Tighter variational bounds are not necessarily better" (Rainforth et al., 2018, section 4)
measures the signal-to-noise ratio of IWAE gradients on

    p(z) = N(z | mu, I_D),   p(x|z) = N(x | z, I_D),   q(z|x) = N(z | A x + b, 2/3 I_D),

in ``D = 20`` dimensions, with ``N = 1024`` observations drawn from the model at
``mu ~ N(0, I)``. The marginal is ``p(x) = N(x | mu, 2 I)`` and the exact posterior
``p(z|x) = N((x + mu) / 2, I / 2)``, so the maximum-likelihood ``mu* = mean_n x_n`` and the
best inference network (its variance fixed at 2/3) is ``A* = I / 2``, ``b* = mu* / 2``:
the posterior mean, which maximises every ``L_K`` since ``q``'s variance is fixed and the
model symmetric about it. The paper evaluates gradients at a point near this optimum, each
parameter perturbed by ``N(0, 0.01^2)`` noise (:meth:`GaussianLatentReference.perturbed`).

:func:`gaussian_latent_reference` builds it as a jvae :class:`~jvae.models.vae.VAE`
(parameter groups: ``prior`` = the generative ``mu``, ``posterior`` = the inference ``A, b``)
so that jvae's own estimators (:func:`jvae.objectives.make_iwae_loss`, VIMCO) run on it.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jvae.data.arguments import check_count
from jvae.models import distributions as dists
from jvae.models.vae import VAE

__all__ = ["GaussianLatentReference", "gaussian_latent_reference"]

#: The inference network's fixed variance in Rainforth et al. (2018).
POSTERIOR_VARIANCE = 2.0 / 3.0


class GaussianLatentReference(NamedTuple):
    """Rainforth et al.'s (2018) model as a jvae VAE (built by :func:`gaussian_latent_reference`).

    Attributes:
      model: the VAE; its variables are ``{"params": {"prior": {"loc": [D]}, "posterior":
        {"loc": {"kernel": [D, D] (= A^T), "bias": [D] (= b)}}}}``.
      data: ``[N, D]`` float32 observations drawn from the model at ``true_mu``.
      true_mu: ``[D]`` the mean the data were drawn with.
    """

    model: Any
    data: np.ndarray
    true_mu: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.data.shape[1])

    def optimum(self) -> dict:
        """The closed-form optimum: ``mu* = mean(data)``, ``A* = I / 2``, ``b* = mu* / 2``
        (float32 variables of :attr:`model`)."""
        mu = self.data.astype(np.float64).mean(axis=0)
        return _variables(mu, 0.5 * np.eye(self.dim), 0.5 * mu)

    def perturbed(self, key: jax.Array, scale: float = 0.01) -> dict:
        """The optimum with independent ``N(0, scale^2)`` noise added to every parameter
        (``mu``, every entry of ``A`` and of ``b``), as in Rainforth et al. (2018)."""
        if not scale >= 0:
            raise ValueError(f"scale must be non-negative, got {scale!r}.")
        opt = self.optimum()
        leaves, tree = jax.tree.flatten(opt)
        keys = jax.random.split(key, len(leaves))
        noisy = [leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype)
                 for leaf, k in zip(leaves, keys)]
        return jax.tree.unflatten(tree, noisy)

    def log_px(self, params: dict, x: jax.Array) -> jax.Array:
        """Exact ``log p(x) = log N(x | mu, 2 I)`` ``[N]`` of ``x [N, D]`` under ``params``."""
        mu = params["params"]["prior"]["loc"]
        d = x.shape[-1]
        return (-0.25 * jnp.sum((x - mu) ** 2, axis=-1) - 0.5 * d * math.log(4 * math.pi))


def gaussian_latent_reference(dim: int = 20, num_data: int = 1024, *,
                              seed: int = 0) -> GaussianLatentReference:
    """Rainforth et al.'s (2018) Gaussian model with ``num_data`` observations drawn from it.

    ``mu ~ N(0, I)``, ``z_n ~ N(mu, I)``, ``x_n ~ N(z_n, I)``, drawn by
    ``numpy.random.default_rng(seed)``.

    Args:
      dim: ``D``, the latent and data dimension (20 in the paper).
      num_data: ``N`` (1024 in the paper).
      seed: the data's seed.

    Returns:
      A :class:`GaussianLatentReference`.
    """
    d = check_count(dim, "dim")
    n = check_count(num_data, "num_data")
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal(d)
    z = mu + rng.standard_normal((n, d))
    x = (z + rng.standard_normal((n, d))).astype(np.float32)
    model = VAE(data_shape=(d,), prior=_LearnedMeanPrior(d), encoder=_Identity(),
                posterior=_FixedScaleLinearHead(d, math.sqrt(POSTERIOR_VARIANCE)),
                decoder=_Identity(), likelihood=_UnitGaussianLikelihood())
    return GaussianLatentReference(model, x, mu)


# ----------------------------------------------------------------------------- private


def _variables(mu, a, b) -> dict:
    f = lambda v: jnp.asarray(v, jnp.float32)                            # noqa: E731
    return {"params": {"prior": {"loc": f(mu)},
                       "posterior": {"loc": {"kernel": f(np.asarray(a).T), "bias": f(b)}}}}


class _LearnedMeanPrior(nn.Module):
    """``p(z) = N(z | loc, I)`` with a learned ``loc`` ``[latent_dim]``."""

    latent_dim: int

    @nn.compact
    def __call__(self) -> distrax.Distribution:
        loc = self.param("loc", nn.initializers.zeros, (self.latent_dim,))
        return distrax.MultivariateNormalDiag(loc, jnp.ones((self.latent_dim,)))


class _Identity(nn.Module):
    """``h -> h`` (no parameters)."""

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        return h


class _FixedScaleLinearHead(nn.Module):
    """``q(z|x) = N(z | A x + b, scale^2 I)``: a Dense ``loc`` layer, the scale fixed."""

    latent_dim: int
    scale: float

    @nn.compact
    def __call__(self, h: jax.Array) -> distrax.Distribution:
        loc = nn.Dense(self.latent_dim, name="loc")(h)
        return dists.diag_gaussian(loc, jnp.full(loc.shape, self.scale, loc.dtype))


class _UnitGaussianLikelihood(nn.Module):
    """``p(x|z) = N(x | z, I)`` (no parameters)."""

    @nn.compact
    def __call__(self, z: jax.Array) -> distrax.Distribution:
        return dists.gaussian(z, jnp.ones_like(z), 1)
