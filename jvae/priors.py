"""Priors p(z) as Linen modules returning distrax distributions with batch shape ``[]``.

A prior's ``log_prob`` broadcasts over any leading axes of ``z`` (``[S, B, D] -> [S, B]``) and
``sample(seed=key, sample_shape=(S, B))`` gives ``[S, B, D]``.
"""

from __future__ import annotations

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["StandardNormalPrior", "MixturePrior"]


def _check_dim(name: str, value: int) -> int:
    if int(value) <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


class StandardNormalPrior(nn.Module):
    """``p(z) = prod_k N(z_k | 0, 1)`` over ``latent_dim`` coordinates (no parameters)."""

    latent_dim: int

    @nn.compact
    def __call__(self) -> distrax.Distribution:
        d = _check_dim("latent_dim", self.latent_dim)
        return distrax.MultivariateNormalDiag(jnp.zeros((d,)), jnp.ones((d,)))


class MixturePrior(nn.Module):
    """Learnable mixture of ``C`` diagonal Gaussians (the DPM2 notebook's MoG prior).

    ``p(z) = sum_c w_c prod_k N(z_k | mu_ck, sigma_ck^2)`` with weights ``softmax(logits)``,
    means initialised from ``N(0, init_spread^2)`` (so components start apart) and scales
    ``softplus(raw) + min_scale`` initialised at 1.

    Attributes:
      latent_dim: D.
      num_components: C.
      init_spread: standard deviation of the initial component means.
      min_scale: floor added to every scale for numerical safety.
    """

    latent_dim: int
    num_components: int = 10
    init_spread: float = 1.0
    min_scale: float = 1e-4

    @nn.compact
    def __call__(self) -> distrax.Distribution:
        d = _check_dim("latent_dim", self.latent_dim)
        c = _check_dim("num_components", self.num_components)
        logits = self.param("logits", nn.initializers.zeros, (c,))
        locs = self.param("locs", nn.initializers.normal(self.init_spread), (c, d))
        raw = self.param("raw_scales", nn.initializers.constant(np.log(np.expm1(1.0))), (c, d))
        scales = jax.nn.softplus(raw) + self.min_scale
        return distrax.MixtureSameFamily(
            distrax.Categorical(logits=logits), distrax.MultivariateNormalDiag(locs, scales))
