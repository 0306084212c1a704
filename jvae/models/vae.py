"""The VAE: a prior, a decoder + likelihood head, and an encoder + posterior head.

The module only builds distributions; everything else is a pure function of
``(params, key, ...)`` so it can be jitted and vmapped:

    model = VAE(data_shape=(28, 28, 1), prior=StandardNormalPrior(20),
                encoder=MLP((400,), in_event_ndims=3), posterior=DiagGaussianHead(20),
                decoder=MLP((400,)), likelihood=BernoulliHead((28, 28, 1)))
    params = init_params(model, key, x[:1])
    q = model.apply(params, x, method=VAE.encode)       # q(z|x), batch shape [B]
    px = model.apply(params, z, method=VAE.decode)      # p(x|z), batch shape z.shape[:-1]

The functions that take data (:func:`init_params`, :func:`log_joint`, :func:`reconstruct`,
:func:`naive_lower_bound`) check concrete arrays with :func:`jvae.data.check_data` against the
model's ``data_shape`` and its likelihood's support, raising a one-line ``ValueError``; under
``jit``/``vmap`` tracing nothing is checked. ``validate=False`` skips the check.

Dropout: networks with a ``dropout_rate`` (:mod:`jvae.models.nets`, :mod:`jvae.models.heads`) drop units only
when ``apply`` gets a ``"dropout"`` stream. The training losses get their ``apply`` from
:func:`training_apply`, which adds one derived from the loss's key when (and only when) the
model has dropout; everything else here (sampling, reconstruction, evaluation) is
deterministic.
"""

from __future__ import annotations

from typing import Any, Sequence

import dataclasses

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

from jvae.data.validate import check_data
from jvae.data.arguments import check_count
from jvae.models.fields import CheckedModule

__all__ = ["VAE", "init_params", "sample_prior", "reconstruct", "naive_lower_bound",
           "log_joint", "dropout_rate", "training_apply"]

Params = Any

#: The dropout stream of a loss called with ``key`` is ``jax.random.fold_in(key, DROPOUT_FOLD)``
#: ("drop" in ASCII): a key of its own, so the loss's other draws (``split``/``sample`` of
#: ``key``) are those of a model without dropout.
DROPOUT_FOLD = 0x64726F70


class VAE(CheckedModule, nn.Module):
    """Joint ``p(z) p(x|z)`` with amortised posterior ``q(z|x)``.

    Attributes:
      data_shape: shape of one observation, e.g. ``(28, 28, 1)`` or ``(2,)``.
      prior: module ``() -> p(z)`` (batch shape ``[]``).
      encoder: network ``[..., *data_shape] -> [..., F]``.
      posterior: head ``[..., F] -> q(z|x)``.
      decoder: network ``[..., D] -> features``.
      likelihood: head ``features -> p(x|z)`` with event shape ``data_shape``.
    """

    data_shape: Sequence[int]
    prior: nn.Module
    encoder: nn.Module
    posterior: nn.Module
    decoder: nn.Module
    likelihood: nn.Module

    def _check_x(self, x: jax.Array) -> None:
        shape = tuple(int(s) for s in self.data_shape)
        n = len(shape)
        if x.ndim < n or tuple(x.shape[x.ndim - n:]) != shape:
            raise ValueError(
                f"This model expects observations of shape {shape} (with any leading batch "
                f"axes), got an array of shape {tuple(x.shape)}.")

    def encode(self, x: jax.Array) -> distrax.Distribution:
        """``q(z|x)`` for ``x`` of shape ``[..., *data_shape]``; batch shape ``x.shape[:-n]``."""
        self._check_x(x)
        q = self.posterior(self.encoder(x))
        batch = tuple(x.shape[: x.ndim - len(tuple(self.data_shape))])
        if tuple(q.batch_shape) != batch:
            raise ValueError(
                f"The encoder maps a batch of shape {batch} to a posterior with batch shape "
                f"{tuple(q.batch_shape)}: it must flatten the observation axes (e.g. "
                f"MLP(..., in_event_ndims={len(tuple(self.data_shape))}) for {tuple(self.data_shape)} "
                "observations).")
        return q

    def decode(self, z: jax.Array) -> distrax.Distribution:
        """``p(x|z)`` for ``z`` of shape ``[..., D]``; batch shape ``z.shape[:-1]``."""
        return self.likelihood(self.decoder(z))

    def prior_distribution(self) -> distrax.Distribution:
        """``p(z)`` with batch shape ``[]``.

        A prior with ``conditions_on_posterior`` (:class:`jvae.models.priors.VampPrior`) gets the
        inference network ``u -> posterior(encoder(u))`` to evaluate at its pseudo-inputs.
        """
        if getattr(self.prior, "conditions_on_posterior", False):
            return self.prior(lambda u: self.posterior(self.encoder(u)))
        return self.prior()

    def log_joint(self, x: jax.Array, z: jax.Array) -> jax.Array:
        """``log p(x, z) = log p(x|z) + log p(z)``; ``x [B, ...]``, ``z [..., B, D]`` -> ``[..., B]``."""
        self._check_x(x)
        return self.decode(z).log_prob(x) + self.prior_distribution().log_prob(z)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Touches every submodule (used by ``init``): ``log p(x, E_q[z])`` per example."""
        z = self.encode(x).mean()
        return self.log_joint(x, z)


def dropout_rate(module: nn.Module) -> float:
    """The largest ``dropout_rate`` of ``module`` and of the modules in its fields, searched
    recursively (a VAE's encoder, posterior, decoder and likelihood, and anything nested in
    them); 0.0 when none has dropout."""
    rates, seen = [0.0], set()

    def visit(m):
        if id(m) in seen:
            return
        seen.add(id(m))
        rates.append(float(getattr(m, "dropout_rate", 0.0) or 0.0))
        for f in dataclasses.fields(m):
            if f.name in ("parent", "name"):
                continue
            value = getattr(m, f.name, None)
            for v in (value if isinstance(value, (list, tuple)) else (value,)):
                if isinstance(v, nn.Module):
                    visit(v)

    visit(module)
    return max(rates)


def training_apply(model: nn.Module, key: jax.Array | None):
    """``model.apply`` in training mode: the one place the losses get their dropout from.

    When ``model`` has dropout (:func:`dropout_rate` > 0) and ``key`` is given, returns
    ``apply(params, *args, **kw) = model.apply(params, *args, rngs={"dropout": k}, **kw)`` with
    ``k = jax.random.fold_in(key, DROPOUT_FOLD)``; otherwise ``model.apply`` itself, so a
    model without dropout computes exactly what it did before dropout existed.

    Every call of the returned function uses the same ``k``, and Flax derives a mask from
    the stream, the module's path and its call count within one ``apply``: a network called
    in several ``apply`` calls of one loss (IWAE's STL and DReG evaluate ``q(z|x)`` twice,
    once with stopped parameters) sees the same mask each time for the same input shape,
    while different layers and different losses' keys get independent masks.

    Args:
      model: the VAE (or any Flax module).
      key: the loss's own key (a typed ``jax.random.key`` or a raw one), or ``None``
        (evaluation: no dropout).
    """
    if key is None or dropout_rate(model) == 0.0:
        return model.apply
    rngs = {"dropout": jax.random.fold_in(key, DROPOUT_FOLD)}

    def apply(params, *args, **kwargs):
        return model.apply(params, *args, rngs=rngs, **kwargs)

    return apply


def init_params(model: VAE, key: jax.Array, x_example: jax.Array, *,
                validate: bool = True) -> Params:
    """Initialise all parameters from an explicit key and an example batch.

    Compiled as one program (eager Flax initialisation dispatches every operation separately).

    Args:
      model: the VAE.
      key: ``jax.random`` key.
      x_example: ``[B, *data_shape]`` (any leading axes, at least one example); only its
        shape is used, so its values are not checked (integers are converted to float32).
      validate: check that ``x_example`` is a non-empty array of shape ``[..., *data_shape]``.

    Returns:
      The Flax variables ``{"params": ...}``.

    Raises:
      ValueError: ``x_example`` is not an array, is empty or has the wrong shape.
    """
    if validate:
        check_data(x_example, model=model, name="x_example", batch_ndim=None, values=False)
    return jax.jit(model.init)(key, jnp.asarray(x_example, jnp.float32))


def log_joint(model: VAE, params: Params, x: jax.Array, z: jax.Array, *,
              validate: bool = True) -> jax.Array:
    """Pure ``log p(x, z)``, see :meth:`VAE.log_joint`.

    Args:
      x: ``[B, *data_shape]`` observations (checked with :func:`jvae.data.check_data` when
        concrete and ``validate``).
      z: ``[..., B, D]`` latents.

    Returns:
      ``[..., B]``.
    """
    if validate:
        check_data(x, model=model, name="x", batch_ndim=None)
    return model.apply(params, x, z, method=VAE.log_joint)


def _observation(px: distrax.Distribution, key: jax.Array, mode: str) -> jax.Array:
    if mode == "mean":
        return px.mean()
    if mode == "sample":
        return px.sample(seed=key)
    raise ValueError(f"Unknown mode {mode!r}; expected 'mean' or 'sample'.")


def sample_prior(model: VAE, params: Params, key: jax.Array, num: int,
                 mode: str = "mean") -> tuple[jax.Array, jax.Array]:
    """Ancestral samples ``z ~ p(z)``, ``x ~ p(x|z)`` (or ``x = E[x|z]`` with ``mode="mean"``).

    Returns:
      ``(z [num, D], x [num, *data_shape])``.
    """
    num = check_count(num, "num")
    kz, kx = jax.random.split(key)
    z = model.apply(params, method=VAE.prior_distribution).sample(seed=kz, sample_shape=(num,))
    px = model.apply(params, z, method=VAE.decode)
    return z, _observation(px, kx, mode)


def reconstruct(model: VAE, params: Params, key: jax.Array, x: jax.Array,
                mode: str = "mean", latent: str = "mean", *, validate: bool = True
                ) -> jax.Array:
    """Conditional samples / reconstructions of ``x [B, *data_shape]``.

    Args:
      x: ``[B, *data_shape]`` (any leading axes), within the likelihood's support.
      latent: ``"mean"`` decodes ``E_q[z]``; ``"sample"`` decodes ``z ~ q(z|x)``.
      mode: ``"mean"`` returns ``E[x|z]``; ``"sample"`` draws ``x ~ p(x|z)``.
      validate: check a concrete ``x`` with :func:`jvae.data.check_data`.

    Returns:
      ``[B, *data_shape]``.

    Raises:
      ValueError: bad ``mode``/``latent``, or invalid data (one line naming the problem).
    """
    if validate:
        check_data(x, model=model, name="x", batch_ndim=None)
    kz, kx = jax.random.split(key)
    q = model.apply(params, x, method=VAE.encode)
    if latent == "mean":
        z = q.mean()
    elif latent == "sample":
        z = q.sample(seed=kz)
    else:
        raise ValueError(f"Unknown latent {latent!r}; expected 'mean' or 'sample'.")
    return _observation(model.apply(params, z, method=VAE.decode), kx, mode)


def naive_lower_bound(model: VAE, params: Params, key: jax.Array, x: jax.Array,
                      num_samples: int, *, validate: bool = True) -> jax.Array:
    """The DPM2 notebook's naive bound ``log p(x) >= 1/S sum_s log p(x|z_s)``, ``z_s ~ p(z)``.

    Jensen's inequality applied to ``p(x) = E_{p(z)}[p(x|z)]``: valid but loose, and needs no
    inference model. Vectorised over samples (no Python loop).

    Args:
      x: ``[B, *data_shape]`` (any leading axes), within the likelihood's support.
      num_samples: S >= 1 prior samples.
      validate: check a concrete ``x`` with :func:`jvae.data.check_data`.

    Returns:
      ``[B]`` per-example bounds.
    """
    num_samples = check_count(num_samples, "num_samples")
    if validate:
        check_data(x, model=model, name="x", batch_ndim=None)
    batch = x.shape[: x.ndim - len(tuple(model.data_shape))]
    pz = model.apply(params, method=VAE.prior_distribution)
    z = pz.sample(seed=key, sample_shape=(int(num_samples),) + tuple(batch))
    log_px_z = model.apply(params, z, method=VAE.decode).log_prob(x)
    return jnp.mean(log_px_z, axis=0)
