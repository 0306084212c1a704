"""Priors p(z) as Linen modules returning distrax distributions with batch shape ``[]``.

A prior's ``log_prob`` broadcasts over any leading axes of ``z`` (``[S, B, D] -> [S, B]``) and
``sample(seed=key, sample_shape=(S, B))`` gives ``[S, B, D]``.

A prior whose class sets ``conditions_on_posterior = True`` (:class:`VampPrior`) is called
with the VAE's inference network, ``prior(encode)`` with ``encode: u -> q(z|u)``; the others
are called with no argument (:meth:`jvae.models.vae.VAE.prior_distribution` does this).
"""

from __future__ import annotations

from typing import Callable, Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jvae.data.arguments import check_count
from jvae.models.fields import CheckedModule

__all__ = ["StandardNormalPrior", "MixturePrior", "VampPrior", "vamp_mixture"]


def _check_dim(name: str, value: int) -> int:
    return check_count(value, name)


class StandardNormalPrior(CheckedModule, nn.Module):
    """``p(z) = prod_k N(z_k | 0, 1)`` over ``latent_dim`` coordinates (no parameters)."""

    latent_dim: int

    @nn.compact
    def __call__(self) -> distrax.Distribution:
        d = _check_dim("latent_dim", self.latent_dim)
        return distrax.MultivariateNormalDiag(jnp.zeros((d,)), jnp.ones((d,)))


class MixturePrior(CheckedModule, nn.Module):
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


class VampPrior(CheckedModule, nn.Module):
    """The VampPrior (Tomczak & Welling, 2018, "VAE with a VampPrior", eq. 9):
    ``p(z) = 1/K sum_k q(z | u_k)``, a uniform mixture of the variational posterior at ``K``
    learned pseudo-inputs ``u_k`` of the data's shape.

    The prior needs the encoder and the posterior head, so it is called as
    ``prior(encode)`` with ``encode: u [K, *data_shape] -> q(z|u)`` (batch shape ``[K]``);
    :meth:`jvae.models.vae.VAE.prior_distribution` passes the VAE's own. ``log_prob`` is
    ``logsumexp_k log q(z|u_k) - log K`` (``[..., D] -> [...]``); ``sample`` picks a component
    uniformly and samples it (:func:`vamp_mixture`).

    Attributes:
      data_shape: shape of one observation (of one pseudo-input).
      num_components: K.
      init_mean, init_std: pseudo-inputs start as ``N(init_mean, init_std^2)`` draws (the
        paper's code uses 0.05 and 0.01 on binarised MNIST).
      clip: ``(low, high)`` the pseudo-inputs are clipped to (the paper's hard-tanh to
        ``[0, 1]`` for data in the unit interval), or ``None`` for real-valued data.
    """

    data_shape: Sequence[int]
    num_components: int = 500
    init_mean: float = 0.05
    init_std: float = 0.01
    clip: tuple | None = (0.0, 1.0)

    conditions_on_posterior = True     # a class attribute, not a dataclass field

    def pseudo_inputs(self) -> jax.Array:
        """``u [K, *data_shape]`` (after the clip)."""
        k = _check_dim("num_components", self.num_components)
        shape = (k,) + tuple(int(s) for s in self.data_shape)
        mean, std = float(self.init_mean), float(self.init_std)

        def init(key, shape, dtype=jnp.float32):
            return mean + std * jax.random.normal(key, shape, dtype)

        u = self.param("pseudo_inputs", init, shape)
        if self.clip is not None:
            u = jnp.clip(u, float(self.clip[0]), float(self.clip[1]))
        return u

    @nn.compact
    def __call__(self, encode: Callable[[jax.Array], distrax.Distribution]
                 ) -> distrax.Distribution:
        if not callable(encode):
            raise TypeError("VampPrior is called with the VAE's encoder, prior(encode) with "
                            "encode: u -> q(z|u); use VAE.prior_distribution().")
        return vamp_mixture(encode(self.pseudo_inputs()))


def vamp_mixture(q: distrax.Distribution) -> distrax.Distribution:
    """The uniform mixture ``1/K sum_k q_k`` of a posterior with batch shape ``[K]``.

    Returns a distribution with batch shape ``[]`` and ``q``'s event shape: for a
    diagonal-Gaussian ``q`` a ``distrax.MixtureSameFamily`` whose ``log_prob`` is accurate in
    float32 however narrow the components, with memory bounded by visiting the components in
    chunks (at most ``2^22`` elements of ``[..., chunk, D]``); for any other ``q`` (a flow) a plain
    ``distrax.Distribution`` (``log_prob`` by ``logsumexp_k q.log_prob(z[..., None, :])``,
    sampling by a uniform component choice), since its components are not Gaussians.
    """
    if len(q.batch_shape) != 1:
        raise ValueError(f"vamp_mixture needs a posterior with batch shape [K], got "
                         f"{tuple(q.batch_shape)}.")
    k = q.batch_shape[0]
    mixing = distrax.Categorical(logits=jnp.zeros((k,)))
    if type(q) is distrax.MultivariateNormalDiag:
        return _DiagGaussianMixture(mixing, q)
    return _UniformMixture(q)


class _DiagGaussianMixture(distrax.MixtureSameFamily):
    """A mixture of ``K`` diagonal Gaussians whose ``log_prob`` keeps memory bounded and is
    accurate in float32 for any component width.

    The log-density of every component is computed in the direct form
    ``-0.5 sum_d ((z_d - mu_kd) / s_kd)^2 - sum_d log s_kd - D/2 log(2 pi)``: expanding the
    square into matrix products (``z^2 . 1/s^2 - 2 z . mu/s^2 + mu^2 . 1/s^2``) would keep
    memory at ``[..., K]`` but cancels catastrophically when the components are narrow
    against ``|z|`` (in float32, 0.06 nats of error at sd 0.019 with ``|mu| ~ 1``, D = 50).
    The components are visited in chunks of :data:`_CHUNK_ELEMENTS` ``/ (N D)`` (``N`` the
    number of points) inside a ``lax.scan`` with a streaming ``logsumexp``, so memory is
    ``[..., chunk, D]`` at most (the importance-sampled log-likelihood evaluates thousands of
    samples against every pseudo-input). Sampling is distrax's."""

    def log_prob(self, value: jax.Array) -> jax.Array:
        comps = self.components_distribution
        loc, scale = comps.loc, comps.scale_diag                   # [K, D]
        k, d = loc.shape
        value = jnp.asarray(value, loc.dtype)
        log_c = (jax.nn.log_softmax(self.mixture_distribution.logits)
                 - jnp.sum(jnp.log(scale), -1) - 0.5 * d * np.log(2 * np.pi))     # [K]
        points = max(1, int(np.prod(value.shape[:-1])))
        chunk = int(min(k, max(1, _CHUNK_ELEMENTS // (points * d))))
        if chunk == k:
            return jax.nn.logsumexp(_component_log_probs(value, loc, scale, log_c), -1)
        pad = -k % chunk                      # padded components have weight zero
        loc = jnp.concatenate([loc, jnp.zeros((pad, d), loc.dtype)])
        scale = jnp.concatenate([scale, jnp.ones((pad, d), scale.dtype)])
        log_c = jnp.concatenate([log_c, jnp.full((pad,), -jnp.inf, log_c.dtype)])
        chunks = (loc.reshape(-1, chunk, d), scale.reshape(-1, chunk, d),
                  log_c.reshape(-1, chunk))

        def body(carry, comp):
            top, total = carry
            log_p = _component_log_probs(value, *comp)             # [..., chunk]
            new_top = jnp.maximum(top, jnp.max(log_p, -1))
            total = total * jnp.exp(top - new_top) + jnp.sum(jnp.exp(log_p - new_top[..., None]),
                                                              -1)
            return (new_top, total), None

        shape = value.shape[:-1]
        init = (jnp.full(shape, -jnp.inf, value.dtype), jnp.zeros(shape, value.dtype))
        (top, total), _ = jax.lax.scan(body, init, chunks)
        return top + jnp.log(total)


#: Elements ``[N, chunk, D]`` of one chunk of a VampPrior's components (4M floats: 16 MB).
_CHUNK_ELEMENTS = 1 << 22


def _component_log_probs(value, loc, scale, log_c):
    """``log c_k + log N(z | mu_k, diag(s_k^2))`` without the expanded square: ``value
    [..., D]``, ``loc, scale [k, D]``, ``log_c [k]`` (weight and normaliser) -> ``[..., k]``."""
    std = (value[..., None, :] - loc) / scale                      # [..., k, D]
    return log_c - 0.5 * jnp.sum(jnp.square(std), -1)


class _UniformMixture(distrax.Distribution):
    """``1/K sum_k q_k`` for a posterior ``q`` with batch shape ``[K]`` that is not a diagonal
    Gaussian (e.g. a :class:`jvae.models.flows.FlowPosterior`)."""

    def __init__(self, components: distrax.Distribution):
        self.components = components

    @property
    def event_shape(self):
        return self.components.event_shape

    @property
    def batch_shape(self):
        return ()

    def log_prob(self, value: jax.Array) -> jax.Array:
        value = jnp.asarray(value)
        log_q = self.components.log_prob(jnp.expand_dims(value, -2))          # [..., K]
        return jax.nn.logsumexp(log_q, -1) - np.log(log_q.shape[-1])

    def _sample_n(self, key: jax.Array, n: int) -> jax.Array:
        k_c, k_z = jax.random.split(key)
        z = self.components.sample(seed=k_z, sample_shape=(n,))                # [n, K, D]
        c = jax.random.randint(k_c, (n,), 0, z.shape[1])
        return jnp.take_along_axis(z, c[:, None, None], axis=1)[:, 0]
