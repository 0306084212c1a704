"""Samples for inspecting a trained VAE: the DPM2 notebook's ``inspect_lvm`` and its prior study.

The notebook looks at a trained model through *samples of the observation model*, not its
means: 16 latent draws ``z ~ p(z)`` with 4 observations ``x ~ p(x|z)`` each (``oversample``:
the spread of ``p(x|z)`` for one ``z`` shows how much the decoder explains and how much is
left to pixel noise), conditional samples ``x' ~ p(x|z)``, ``z ~ q(z|x)`` of held-out data,
and, for a learned mixture prior, the prior's coordinates and a t-SNE of its samples coloured
by the component that drew them; and Homework 2's interpolations between the codes of two
images (:func:`interpolate_latents`). These functions draw those arrays; the figures are in
:mod:`jvae.plotting` (:func:`~jvae.plotting.save_oversampled`,
:func:`~jvae.plotting.save_conditional_samples`, :mod:`jvae.plotting.mixture`).

All are pure functions of an explicit key, built on :class:`~jvae.models.vae.VAE`'s methods and
:func:`jvae.models.distributions.sample_mixture`, and vectorised (no Python loop over samples). Pass
the model and the integer arguments as static to ``jax.jit``::

    f = jax.jit(functools.partial(prior_observations, model), static_argnames=("num", "oversample"))
    z, x = f(params, key, num=16, oversample=4)

Observations are samples of the likelihood (Bernoulli: 0/1; continuous Bernoulli: values in
``[0, 1]``; Gaussian: unbounded reals), returned as drawn, in float32; image figures clip them
to ``[0, 1]`` for display only.
"""

from __future__ import annotations

import numbers
from typing import Any

import distrax
import jax
import jax.numpy as jnp

from jvae.data.validate import check_data
from jvae.models.distributions import sample_mixture
from jvae.models.vae import VAE

__all__ = ["prior_observations", "conditional_observations", "prior_samples_with_components",
           "interpolate_latents"]

Params = Any


def prior_observations(model: VAE, params: Params, key: jax.Array, num: int = 16,
                       oversample: int = 4) -> tuple[jax.Array, jax.Array]:
    """``num`` draws ``z ~ p(z)``, each with ``oversample`` observations ``x ~ p(x|z)``.

    The notebook's ``model.sample(16, 4, oversample=True)``: each ``z`` is decoded once and
    held fixed while its observations are drawn, so the observations of one row differ only
    by the likelihood's noise.

    Args:
      model: the VAE.
      params: its variables.
      key: ``jax.random`` key.
      num: number of latent draws (>= 1).
      oversample: observations per latent draw (>= 1).

    Returns:
      ``(z [num, D], x [num, oversample, *data_shape])``, ``x`` float32 samples of
      ``p(x|z)``.

    Raises:
      ValueError: ``num`` or ``oversample`` is not a positive integer.
    """
    num, oversample = _positive("num", num), _positive("oversample", oversample)
    kz, kx = jax.random.split(key)
    z = model.apply(params, method=VAE.prior_distribution).sample(seed=kz, sample_shape=(num,))
    x = _oversampled(model.apply(params, z, method=VAE.decode), kx, oversample)
    return z, x


def conditional_observations(model: VAE, params: Params, key: jax.Array, x: jax.Array,
                             oversample: int = 4, *, resample_latent: bool = False,
                             validate: bool = True) -> jax.Array:
    """Conditional samples: ``z ~ q(z|x)``, then ``oversample`` draws ``x' ~ p(x|z)``.

    With ``resample_latent=False`` (the notebook's ``cond_sample(x, oversample=True)``) one
    ``z`` is drawn per input and held fixed, so the ``oversample`` draws show the
    likelihood's noise around one decoding; with ``True`` each draw has its own ``z ~ q(z|x)``
    (the spread then also shows the posterior's uncertainty).

    Args:
      model: the VAE.
      params: its variables.
      key: ``jax.random`` key.
      x: ``[B, *data_shape]`` inputs within the likelihood's support.
      oversample: draws per input (>= 1).
      resample_latent: a fresh ``z`` for every draw instead of one per input.
      validate: check a concrete ``x`` with :func:`jvae.data.check_data`.

    Returns:
      ``[B, oversample, *data_shape]`` float32 samples.

    Raises:
      ValueError: ``oversample`` is not a positive integer, or ``x`` is not a valid
        ``[B, *data_shape]`` batch (one line naming the problem).
    """
    oversample = _positive("oversample", oversample)
    if validate:
        check_data(x, model=model, name="x", batch_ndim=1)
    kz, kx = jax.random.split(key)
    q = model.apply(params, x, method=VAE.encode)                        # batch [B]
    if resample_latent:
        z = jnp.moveaxis(q.sample(seed=kz, sample_shape=(oversample,)), 0, 1)   # [B, S, D]
        return model.apply(params, z, method=VAE.decode).sample(seed=kx).astype(jnp.float32)
    return _oversampled(model.apply(params, q.sample(seed=kz), method=VAE.decode), kx,
                        oversample)


def prior_samples_with_components(model: VAE, params: Params, key: jax.Array, num: int
                                  ) -> tuple[jax.Array, jax.Array | None]:
    """``num`` prior samples with the mixture component that drew each, for a mixture prior.

    For a mixture prior (:class:`~jvae.models.priors.MixturePrior`, a ``distrax.MixtureSameFamily``
    of diagonal Gaussians) the index is drawn from the mixing weights, ``c ~ Cat(softmax(
    logits))``, then ``z ~ N(mu_c, diag(sigma_c^2))`` (:func:`jvae.models.distributions.sample_mixture`):
    ancestral sampling, so ``z`` has exactly the mixture's distribution. For any other prior
    ``z ~ p(z)`` and no components.

    Args:
      model: the VAE.
      params: its variables.
      key: ``jax.random`` key.
      num: number of samples (>= 1).

    Returns:
      ``(z [num, D], component [num] int32)`` for a mixture prior, ``(z [num, D], None)``
      otherwise.

    Raises:
      ValueError: ``num`` is not a positive integer.
    """
    num = _positive("num", num)
    pz = model.apply(params, method=VAE.prior_distribution)
    if isinstance(pz, distrax.MixtureSameFamily):
        component, z = sample_mixture(pz, key, (num,))
        return z, component.astype(jnp.int32)
    return pz.sample(seed=key, sample_shape=(num,)), None


def interpolate_latents(model: VAE, params: Params, x1: jax.Array, x2: jax.Array,
                        num: int = 10, *, validate: bool = True) -> jax.Array:
    """Decodings along the segment between the codes of pairs of inputs (Homework 2, Task 3).

    ``z1`` and ``z2`` are the posterior means of ``q(z|x1)`` and ``q(z|x2)`` (the homework's
    ``z, _ = model.encoder(x)``); for each of ``num`` evenly spaced ``a`` in ``[0, 1]``
    (``np.linspace(0, 1, num)``) the code ``z1 (1 - a) + z2 a`` is decoded to the mean of
    ``p(x|z)``. No randomness is involved. Column 0 decodes ``z1``, the last column ``z2``.

    Args:
      model: the VAE (or autoencoder: its codes are interpolated the same way).
      params: its variables.
      x1: ``[P, *data_shape]`` first inputs of the pairs.
      x2: ``[P, *data_shape]`` second inputs.
      num: number of interpolation points (>= 2).
      validate: check concrete ``x1`` and ``x2`` with :func:`jvae.data.check_data`.

    Returns:
      ``[P, num, *data_shape]`` float32 decoder means (for centred data still centred).

    Raises:
      ValueError: ``num`` is not an integer >= 2, or ``x1``/``x2`` are not valid
        ``[P, *data_shape]`` batches of the same size.
    """
    num = _positive("num", num)
    if num < 2:
        raise ValueError(f"num must be at least 2 (the two ends), got {num!r}.")
    if validate:
        check_data(x1, model=model, name="x1", batch_ndim=1)
        check_data(x2, model=model, name="x2", batch_ndim=1)
    if x1.shape[0] != x2.shape[0]:
        raise ValueError(f"x1 and x2 must hold the same number of inputs, got {x1.shape[0]} "
                         f"and {x2.shape[0]}.")
    z1 = model.apply(params, x1, method=VAE.encode).mean()                   # [P, D]
    z2 = model.apply(params, x2, method=VAE.encode).mean()
    a = jnp.linspace(0.0, 1.0, num, dtype=z1.dtype)[None, :, None]           # [1, num, 1]
    z = z1[:, None] * (1.0 - a) + z2[:, None] * a                             # [P, num, D]
    return model.apply(params, z, method=VAE.decode).mean().astype(jnp.float32)


# ------------------------------------------------------------------------------------ helpers


def _oversampled(px: distrax.Distribution, key: jax.Array, oversample: int) -> jax.Array:
    """``oversample`` draws of ``p(x|z)`` (batch ``[B]``) as float32 ``[B, oversample, ...]``."""
    x = px.sample(seed=key, sample_shape=(oversample,))                  # [S, B, *data_shape]
    return jnp.moveaxis(x, 0, 1).astype(jnp.float32)


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)
