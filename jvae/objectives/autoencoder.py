"""The deterministic autoencoder's loss: the reconstruction error of the code.

For a Bernoulli likelihood with logits ``l = f(g(x))`` the distortion

    D(x) = -log p(x | g(x)) = sum_i [softplus(l_i) - x_i l_i]

is the binary cross-entropy with logits summed over pixels (PyTorch's
``BCEWithLogitsLoss(reduction="sum")``, per image), for grey levels ``x_i`` in [0, 1] too. The
loss minimised is its mean over the batch (the lecture sums over the batch as well; with Adam
the two differ only through Adam's epsilon). For another likelihood head the distortion is its
``-log_prob``, e.g. a squared error for a fixed-scale Gaussian.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from jvae.models.autoencoder import is_autoencoder
from jvae.models.vae import VAE, training_apply
from jvae.objectives.base import batch_mean

__all__ = ["reconstruction_terms", "make_autoencoder_loss"]

LossFn = Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, dict]]


def reconstruction_terms(model: VAE, params: Any, x: jax.Array, key: jax.Array | None = None
                         ) -> tuple[jax.Array, jax.Array]:
    """Per-example reconstruction errors of the code ``z = E_q[z|x]``.

    Args:
      model: a VAE or an autoencoder (for a VAE the posterior mean is decoded).
      params: its parameters.
      x: ``[B, *data_shape]``.
      key: training mode: the model's dropout is on, with a stream derived from ``key``
        (:func:`jvae.models.vae.training_apply`); ``None`` (evaluation): no dropout.

    Returns:
      ``(distortion [B], squared_error [B])``: ``-log p(x|z)`` (for Bernoulli: the BCE with
      logits summed over pixels) and ``sum_i (x_i - E[x_i|z])^2``, both summed over the
      observation axes.
    """
    apply = training_apply(model, key)
    z = apply(params, x, method=VAE.encode).mean()
    px = apply(params, z, method=VAE.decode)
    distortion = -px.log_prob(x)
    event_axes = tuple(range(x.ndim - len(tuple(model.data_shape)), x.ndim))
    squared = jnp.sum((x - px.mean()) ** 2, axis=event_axes)
    return distortion, squared


def make_autoencoder_loss(model: VAE) -> LossFn:
    """Build ``loss(params, key, x) -> (loss, aux)`` for a deterministic autoencoder.

    Args:
      model: an autoencoder (:func:`jvae.models.autoencoder.make_autoencoder`, or any VAE whose
        posterior is a :class:`~jvae.models.autoencoder.PointHead`).

    Returns:
      A pure function; ``key`` only drives the model's dropout (without dropout the loss is
      deterministic and ``key`` is unused). ``loss`` is ``mean_B D(x)``; ``aux`` holds the batch means ``loss``,
      ``distortion`` (the same value) and ``squared_error``; ``loss(params, key, x,
      mask=None)``, a ``[B]`` mask (1 real, 0 padding) restricting the means to the real
      examples.

    Raises:
      ValueError: ``model`` is not an autoencoder (a VAE trains with an ELBO-type loss).
    """
    if not is_autoencoder(model):
        raise ValueError(
            "make_autoencoder_loss needs an autoencoder (a VAE whose posterior is a PointHead, "
            f"e.g. jvae.make_autoencoder); got posterior {type(model.posterior).__name__}. "
            "Train a VAE with make_elbo_loss.")

    def loss_fn(params, key, x, mask=None):
        distortion, squared = reconstruction_terms(model, params, x, key)
        loss = batch_mean(distortion, mask)
        return loss, {"loss": loss, "distortion": loss,
                      "squared_error": batch_mean(squared, mask)}

    return loss_fn
