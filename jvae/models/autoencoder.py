"""The deterministic autoencoder: a :class:`~jvae.models.vae.VAE` whose posterior is a point mass.

An autoencoder maps ``x`` to one code ``z = g(x)`` and decodes it, ``x_hat = f(z)``; it is
trained by the reconstruction error alone (the lecture's ``BCEWithLogitsLoss`` summed over
pixels, i.e. ``-log p(x|z)`` of a Bernoulli likelihood with logits ``f(z)``). In jvae it is
the same container as a VAE, with the posterior head replaced by :class:`PointHead`, which
returns the point mass ``q(z|x) = delta(z - g(x))`` as a distrax distribution. So everything
written for VAEs applies unchanged: :func:`~jvae.models.vae.init_params`,
:func:`~jvae.models.vae.reconstruct` (the code is both the posterior mean and its "sample"), the
jitted epoch :func:`~jvae.training.make_train_epoch` with
:func:`~jvae.objectives.autoencoder.make_autoencoder_loss`, checkpoints, ``train_and_evaluate``
(``config.model.kind = "autoencoder"``) and the standard figures.

The prior is not part of the autoencoder's loss; it stays in the container only so that the
VAE functions that need one (``sample_prior``, the figures' prior samples) run: for an
autoencoder those decode ``N(0, I)`` codes, which need not resemble its training codes. There
is no ELBO or ``log p(x)`` (the point mass has no density), so the evaluator reports
reconstruction errors instead (:func:`jvae.evaluation.make_evaluator`).

    model = make_autoencoder((28, 28, 1), latent_dim=2)      # the lecture's 784-128-128-2
    params = init_params(model, key, x[:1])
    loss_fn = make_autoencoder_loss(model)                   # loss(params, key, x)
    codes = model.apply(params, x, method=VAE.encode).mean() # [B, 2]
"""

from __future__ import annotations

from typing import Sequence

import distrax
import flax.linen as nn
import jax

from jvae.models.heads import BernoulliHead
from jvae.models.vae import VAE
from jvae.models.nets import MLP, dense
from jvae.models.priors import StandardNormalPrior
from jvae.models.fields import CheckedModule
from jvae.data.arguments import check_count

__all__ = ["PointHead", "make_autoencoder", "is_autoencoder"]


class PointHead(CheckedModule, nn.Module):
    """Deterministic code head: ``q(z|x) = delta(z - W h - b)`` from features ``[..., F]``.

    Returns ``distrax.Independent(distrax.Deterministic(loc), 1)``: batch shape ``[...]``,
    event shape ``[D]``. Its ``mean()`` and ``sample()`` are the code ``loc`` (the sample is
    differentiable in it); its ``log_prob`` is 0 at the code and ``-inf`` elsewhere, so it has
    no KL to a Gaussian prior and the ELBO does not apply.

    Attributes:
      latent_dim: D, the size of the code.
      weight_init: initialisation of the output layer (see :func:`jvae.models.nets.dense`).
      compute_dtype: ``"float32"`` or ``"bfloat16"`` (the layer's product; the code is
        float32 either way, :mod:`jvae.models.precision`).
    """

    latent_dim: int
    weight_init: str = "lecun"
    compute_dtype: str = "float32"

    @nn.compact
    def __call__(self, h: jax.Array) -> distrax.Distribution:
        if int(self.latent_dim) <= 0:
            raise ValueError(f"latent_dim must be a positive integer, got {self.latent_dim!r}.")
        loc = dense(int(self.latent_dim), h.shape[-1], self.weight_init, name="code",
                    compute_dtype=self.compute_dtype)(h)
        return distrax.Independent(distrax.Deterministic(loc=loc), 1)


def make_autoencoder(data_shape: Sequence[int], latent_dim: int = 2,
                     hidden: Sequence[int] = (128, 128), activation: str = "softplus",
                     weight_init: str = "torch", likelihood: nn.Module | None = None) -> VAE:
    """The lecture's autoencoder: MLP encoder ``prod(data_shape)-hidden-latent_dim`` and MLP
    decoder ``latent_dim-hidden-prod(data_shape)`` with the same widths and activation.

    Args:
      data_shape: shape of one observation, e.g. ``(28, 28, 1)``.
      latent_dim: size of the code (2 in the lecture).
      hidden: widths of the hidden layers of both networks (the lecture: ``(128, 128)``).
      activation: hidden activation (the lecture: softplus).
      weight_init: dense-layer initialisation (``"torch"``: PyTorch's ``nn.Linear``, as the
        lecture's model).
      likelihood: the decoder's output head; default ``BernoulliHead(data_shape)``, whose
        ``-log_prob`` is the binary cross-entropy with logits summed over pixels.

    Returns:
      A :class:`~jvae.models.vae.VAE` with a :class:`PointHead` posterior
      (:func:`is_autoencoder` is true).
    """
    if isinstance(data_shape, (int, str)) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in data_shape) \
            or not len(data_shape):
        raise ValueError(f"data_shape must be a non-empty tuple of positive integers such as "
                         f"(28, 28, 1), got {data_shape!r}.")
    shape = tuple(int(s) for s in data_shape)
    latent_dim = check_count(latent_dim, "latent_dim")
    if likelihood is None:
        likelihood = BernoulliHead(shape, weight_init=weight_init)
    return VAE(shape, StandardNormalPrior(latent_dim),
               MLP(tuple(hidden), activation, in_event_ndims=len(shape),
                   weight_init=weight_init),
               PointHead(latent_dim, weight_init=weight_init),
               MLP(tuple(hidden), activation, weight_init=weight_init),
               likelihood)


def is_autoencoder(model) -> bool:
    """Whether ``model`` is a deterministic autoencoder (a VAE with a :class:`PointHead`)."""
    return isinstance(getattr(model, "posterior", None), PointHead)
