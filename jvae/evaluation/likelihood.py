"""Evaluation over a whole split: distortion, rate, ELBO and importance-sampled log p(x).

The importance-sampled estimate (Burda et al., 2016)

    log p(x) ~ log (1/K) sum_k exp(log p(x, z_k) - log q(z_k|x)),   z_k ~ q(z|x)

is a stochastic lower bound that tightens as K grows. It is computed in chunks of samples
with a streaming ``logsumexp`` inside ``lax.scan``, so memory is ``O(chunk * B)`` whatever K.
A whole split is evaluated in one jitted call: the data is padded to full batches, batches
are visited with ``lax.map`` and padded rows are masked out.

Concrete data is checked first (:func:`jvae.data.check_data`: a float array of shape
``[N, *data_shape]`` with N > 0, finite, inside the likelihood's support), so integer
0..255 images or NaN pixels raise a one-line ``ValueError`` instead of returning a
meaningless number; inside ``jit``/``vmap`` tracing nothing is checked. ``validate=False``
skips the check.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jvae.models.autoencoder import is_autoencoder
from jvae.data.validate import check_data
from jvae.models.precision import with_compute_dtype
from jvae.models.vae import VAE
from jvae.objectives.autoencoder import reconstruction_terms
from jvae.objectives.elbo import elbo_terms
from jvae.data.arguments import check_count

__all__ = ["importance_log_likelihood", "make_evaluator", "evaluate"]


def importance_log_likelihood(model: VAE, params: Any, key: jax.Array, x: jax.Array,
                              num_samples: int, chunk_size: int = 100, *,
                              validate: bool = True) -> jax.Array:
    """Importance-sampled ``log p(x)`` with ``q(z|x)`` as proposal.

    Args:
      x: ``[B, *data_shape]`` (any leading axes), within the likelihood's support.
      num_samples: K >= 1 importance samples per example (K = 1 gives a one-sample ELBO).
      chunk_size: samples drawn at once; memory grows with ``chunk_size * B``.
      validate: check a concrete ``x`` with :func:`jvae.data.check_data`.

    Returns:
      ``[B]`` estimates ``logmeanexp_k [log p(x, z_k) - log q(z_k|x)]``.

    Raises:
      ValueError: bad ``num_samples``/``chunk_size``, or invalid data.
    """
    k_total = check_count(num_samples, "num_samples")
    chunk_size = check_count(chunk_size, "chunk_size")
    if validate:
        check_data(x, model=model, name="x", batch_ndim=None)
    chunk = min(int(chunk_size), k_total)
    num_chunks = math.ceil(k_total / chunk)
    q = model.apply(params, x, method=VAE.encode)
    batch_shape = q.batch_shape

    def body(carry, i):
        running_max, running_sum = carry
        z = q.sample(seed=jax.random.fold_in(key, i), sample_shape=(chunk,))     # [c, B, D]
        log_w = model.apply(params, x, z, method=VAE.log_joint) - q.log_prob(z)  # [c, B]
        valid = (i * chunk + jnp.arange(chunk)) < k_total
        log_w = jnp.where(valid.reshape((chunk,) + (1,) * len(batch_shape)), log_w, -jnp.inf)
        new_max = jnp.maximum(running_max, jnp.max(log_w, axis=0))
        running_sum = (running_sum * jnp.exp(running_max - new_max)
                       + jnp.sum(jnp.exp(log_w - new_max), axis=0))
        return (new_max, running_sum), None

    init = (jnp.full(batch_shape, -jnp.inf), jnp.zeros(batch_shape))
    (m, s), _ = jax.lax.scan(body, init, jnp.arange(num_chunks))
    return m + jnp.log(s) - jnp.log(float(k_total))


def make_evaluator(model: VAE, *, batch_size: int = 500, elbo_samples: int = 1,
                   ll_samples: int = 0, ll_chunk: int = 100, validate: bool = True,
                   compute_dtype: str | None = None
                   ) -> Callable[[Any, jax.Array, jax.Array], dict]:
    """Build a jitted ``evaluate(params, key, data) -> metrics`` over a whole split.

    Args:
      batch_size: examples per evaluation batch (the split is padded to full batches).
      elbo_samples: samples for distortion and rate (Monte Carlo; the rate is analytic where
        possible).
      ll_samples: K for the importance-sampled log-likelihood; 0 skips it.
      ll_chunk: samples per chunk of the log-likelihood estimate.
      validate: check concrete ``data`` with :func:`jvae.data.check_data` before evaluating
        (once per immutable array: a JAX array evaluated repeatedly is checked on the first
        call only); ``False`` skips it.
      compute_dtype: evaluate the model's networks in this precision (``"float32"`` or
        ``"bfloat16"``, :func:`jvae.models.precision.with_compute_dtype`); ``None`` (default)
        keeps the model's own. The densities and the importance weights' ``logsumexp`` are
        float32 either way; bfloat16 moves the estimates by the rounding of the networks'
        products (see the mixed-precision guide for measured differences).

    Returns:
      ``evaluate(params, key, data [N, *data_shape])`` returning a dict of per-example means:
      ``elbo``, ``distortion``, ``rate`` and, when ``ll_samples > 0``, ``log_likelihood``;
      for an autoencoder (:func:`jvae.models.autoencoder.is_autoencoder`), which has no ELBO,
      ``distortion`` and ``squared_error`` of its reconstructions
      (:func:`jvae.objectives.autoencoder.reconstruction_terms`).
      It raises a one-line ``ValueError`` for invalid data (non-float dtype such as uint8,
      wrong shape, no examples, NaN/Inf, values outside the likelihood's support). Its
      ``lower`` attribute is the jitted program's (for ahead-of-time compilation).
    """
    batch_size = check_count(batch_size, "batch_size")
    elbo_samples = check_count(elbo_samples, "elbo_samples")
    ll_chunk = check_count(ll_chunk, "ll_chunk")
    ll_samples = check_count(ll_samples, "ll_samples", minimum=0)
    if compute_dtype is not None:
        model = with_compute_dtype(model, compute_dtype)
    autoencoder = is_autoencoder(model)
    if autoencoder and ll_samples > 0:
        raise ValueError("An autoencoder defines no likelihood p(x) to importance-sample; "
                         "use ll_samples=0.")

    def batch_metrics(params, key, x):
        if autoencoder:
            distortion, squared = reconstruction_terms(model, params, x)
            return {"distortion": distortion, "squared_error": squared}
        k_elbo, k_ll = jax.random.split(key)
        distortion, rate = elbo_terms(model, params, k_elbo, x, int(elbo_samples))
        out = {"distortion": distortion, "rate": rate, "elbo": -(distortion + rate)}
        if ll_samples > 0:
            out["log_likelihood"] = importance_log_likelihood(
                model, params, k_ll, x, ll_samples, ll_chunk)
        return out

    @jax.jit
    def compiled(params, key, data):
        n = data.shape[0]
        if n == 0:
            raise ValueError("Cannot evaluate on an empty split.")
        bs = min(batch_size, n)
        num_batches = math.ceil(n / bs)
        pad = num_batches * bs - n
        padded = jnp.concatenate([data, jnp.zeros((pad,) + data.shape[1:], data.dtype)])
        batches = padded.reshape((num_batches, bs) + data.shape[1:])
        mask = (jnp.arange(num_batches * bs) < n).reshape(num_batches, bs)
        keys = jax.random.split(key, num_batches)

        def one(args):
            k, xb, mb = args
            metrics = batch_metrics(params, k, xb)
            return {name: jnp.sum(jnp.where(mb, v, 0.0)) for name, v in metrics.items()}

        sums = jax.lax.map(one, (keys, batches, mask))
        return {name: jnp.sum(v) / n for name, v in sums.items()}

    if not validate:
        return compiled

    def evaluate_fn(params, key, data):
        check_data(data, model=model, name="evaluation data")
        return compiled(params, key, data)

    evaluate_fn.lower = compiled.lower
    return evaluate_fn


def evaluate(model: VAE, params: Any, key: jax.Array, data: jax.Array, *,
             validate: bool = True, **kwargs) -> dict:
    """One-off evaluation (see :func:`make_evaluator` for the options); returns floats.

    ``data`` ``[N, *data_shape]`` is checked as in :func:`make_evaluator` unless
    ``validate=False``.
    """
    if validate:
        check_data(data, model=model, name="evaluation data")
    metrics = make_evaluator(model, validate=False, **kwargs)(params, key, jnp.asarray(data))
    return {k: float(v) for k, v in metrics.items()}
