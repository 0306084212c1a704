"""Heads: map network features to distrax distributions.

Likelihood heads give ``p(x|z)`` over an observation of shape ``event_shape`` (e.g.
``(28, 28, 1)``); the posterior head gives ``q(z|x)`` over ``R^D``. Every head accepts any
number of leading batch/sample axes.

With ``project=True`` (MLP decoders) a head owns its output layer: a dense map from the
features ``[..., F]`` to all distribution parameters. With ``project=False`` (convolutional
decoders) the features already are the parameter maps ``[..., H, W, C * num_params]``.

Every head with dense output layers takes a ``dropout_rate``: dropout of the features before
each of them (the DPM2 notebook's ``nn.Dropout(p_drop)`` before every ``nn.Linear``, one mask
per layer), active only when ``apply`` gets a ``"dropout"`` stream (:func:`jvae.models.nets.dropout`).

Every head takes a ``compute_dtype`` (``"float32"`` or ``"bfloat16"``) for its dense layers
(:mod:`jvae.models.precision`); whatever it is, the parameters of the distributions a head
returns (logits, means, scales, weights) are float32.

Every likelihood head class declares the ``support`` of its observations (a
:class:`jvae.data.Support`): :data:`~jvae.data.UNIT_INTERVAL` for Bernoulli and
ContinuousBernoulli, :data:`~jvae.data.REAL` for Gaussian. The data checks of the entry
points (:func:`jvae.data.check_data`) follow it, so data outside the support is refused
before training or evaluation; a head of your own may declare one the same way.
"""

from __future__ import annotations

import math
from typing import Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jvae.models import distributions as dists
from jvae.data.validate import REAL, UNIT_INTERVAL
from jvae.models.nets import dense, dropout
from jvae.models.fields import CheckedModule

__all__ = [
    "BernoulliHead",
    "ContinuousBernoulliHead",
    "GaussianHead",
    "DiagGaussianHead",
    "MixtureGaussianHead",
    "hidden_features",
    "positive_scale",
    "marginal_logits",
    "with_output_bias",
]


def hidden_features(module: nn.Module, h: jax.Array, width: int, weight_init: str = "lecun",
                    dropout_rate: float = 0.0, compute_dtype: str = "float32") -> jax.Array:
    """``relu(dense(dropout(h)))`` to ``width`` units inside a posterior head's compact method
    (``[..., F] -> [..., width]``), or ``h`` unchanged for ``width = 0``: the encoder of the
    DPM2 notebook's ``GaussianCPDNet`` / ``MoGCPDNet`` (``nn.Dropout(p_drop)``,
    ``nn.Linear(num_inputs, hidden_size)``, ``nn.ReLU()``). Its parameters are ``hidden``."""
    width = int(width)
    if width < 0:
        raise ValueError(f"{type(module).__name__} hidden must be >= 0 (0: none), got {width}.")
    if width == 0:
        return h
    h = dropout(module, h, dropout_rate, name="dropout_hidden")
    return nn.relu(dense(width, h.shape[-1], weight_init, name="hidden",
                         compute_dtype=compute_dtype)(h))


def positive_scale(raw: jax.Array, kind: str = "softplus", min_scale: float = 1e-5) -> jax.Array:
    """Numerically safe positive scale from an unconstrained network output.

    ``kind="softplus"``: ``softplus(raw) + min_scale``. ``kind="exp"``: ``raw`` is a
    log-variance (as in the PyTorch-examples VAE), ``exp(0.5 * raw) + min_scale``, with
    ``raw`` clipped to ``[-30, 30]`` so that neither underflow nor overflow can occur.
    ``kind="log_std"``: ``raw`` is a log standard deviation (the lecture's ``torch.exp`` of
    the encoder's scale output), ``exp(raw) + min_scale`` with ``raw`` clipped to ``[-15, 15]``.
    """
    if kind == "softplus":
        return jax.nn.softplus(raw) + min_scale
    if kind == "exp":
        return jnp.exp(0.5 * jnp.clip(raw, -30.0, 30.0)) + min_scale
    if kind == "log_std":
        return jnp.exp(jnp.clip(raw, -15.0, 15.0)) + min_scale
    raise ValueError(f"Unknown scale parameterisation {kind!r}; expected 'softplus', 'exp' or "
                     "'log_std'.")


class _LikelihoodHead(CheckedModule, nn.Module):
    """Shared parameter extraction: features -> ``[..., *event_shape, num_params]``.

    Subclasses set the class attribute ``support`` (values an observation may take; ``None``
    means undeclared, and then only finiteness is checked).
    """

    event_shape: Sequence[int]
    project: bool = True
    weight_init: str = "lecun"
    dropout_rate: float = 0.0        # before the output layer (project=True only)
    compute_dtype: str = "float32"   # of the output layer (project=True only)

    num_params = 1
    support = None  # a Support; a class attribute, not a dataclass field

    def _params(self, h: jax.Array) -> jax.Array:
        event = tuple(int(s) for s in self.event_shape)
        if any(s <= 0 for s in event):
            raise ValueError(f"event_shape must be positive, got {event}.")
        k = self.num_params
        if self.project:
            h = dropout(self, h, self.dropout_rate, name="dropout_out")
            h = dense(math.prod(event) * k, h.shape[-1], self.weight_init, name="out",
                      compute_dtype=self.compute_dtype)(h)
            return _float32(h.reshape(h.shape[:-1] + event + (k,)))
        expected = event[:-1] + (event[-1] * k,)
        if h.shape[h.ndim - len(event):] != expected:
            raise ValueError(
                f"{type(self).__name__}(project=False) expects features ending in {expected}, "
                f"got shape {h.shape}.")
        return _float32(h.reshape(h.shape[: h.ndim - len(event)] + event + (k,)))


def marginal_logits(x, eps: float = 1e-3) -> np.ndarray:
    """The log-odds of every pixel's training mean, ``logit(clip(mean_N x, eps, 1 - eps))``:
    ``x [N, *data_shape]`` in ``[0, 1]`` (uint8 read as ``x / 255``) -> float32
    ``[*data_shape]``. The starting bias of a Bernoulli head (Burda et al.'s IWAE code), so
    that the decoder does not have to learn the pixel marginals through its hidden layers
    (which saturates tanh units and leaves ``z`` unused for hundreds of steps)."""
    shape = tuple(getattr(x, "shape", np.shape(x)))
    if len(shape) < 2 or shape[0] == 0:
        raise ValueError(f"marginal_logits needs a non-empty batch [N, *data_shape], got shape "
                         f"{shape}.")
    # Summed in chunks of rows: a streamed (out-of-core) split is read, never held whole.
    total, uint8 = np.zeros(shape[1:], np.float64), False
    for start in range(0, shape[0], 65536):
        rows = np.asarray(x[start:start + 65536])
        uint8 = rows.dtype == np.uint8
        total += rows.sum(0, dtype=np.float64)
    mean = total / shape[0] / (255.0 if uint8 else 1.0)
    if not (np.all(mean >= 0) and np.all(mean <= 1)):
        raise ValueError("marginal_logits needs data in [0, 1] (or uint8 pixels).")
    p = np.clip(mean, eps, 1.0 - eps)
    return (np.log(p) - np.log1p(-p)).astype(np.float32)


def with_output_bias(params, logits):
    """``params`` with the Bernoulli head's output bias (``likelihood/out/bias``, an MLP
    decoder's projection) replaced by ``logits [*data_shape]`` (flattened)."""
    p = dict(params)
    inner = dict(p["params"])
    lik = dict(inner["likelihood"])
    out = dict(lik["out"])
    bias = jnp.asarray(logits, out["bias"].dtype).reshape(-1)
    if bias.shape != out["bias"].shape:
        raise ValueError(f"The output bias has shape {out['bias'].shape}, the logits "
                         f"{bias.shape} after flattening.")
    out["bias"] = jnp.broadcast_to(bias, out["bias"].shape)
    lik["out"], inner["likelihood"], p["params"] = out, lik, inner
    return p


class BernoulliHead(_LikelihoodHead):
    """``p(x|z) = prod_i Bernoulli(x_i | sigmoid(logit_i))`` (binary or grey-level data).

    Support: ``[0, 1]`` (grey levels are read as probabilities of a pixel being on).
    """

    support = UNIT_INTERVAL

    @nn.compact
    def __call__(self, h: jax.Array) -> distrax.Distribution:
        logits = self._params(h)[..., 0]
        return dists.bernoulli(logits, len(self.event_shape))


class ContinuousBernoulliHead(_LikelihoodHead):
    """``p(x|z) = prod_i CB(x_i | lambda_i)`` for grey levels in [0, 1] (TFP's JAX version).

    Support: ``[0, 1]``.
    """

    support = UNIT_INTERVAL

    @nn.compact
    def __call__(self, h: jax.Array) -> distrax.Distribution:
        logits = self._params(h)[..., 0]
        return dists.continuous_bernoulli(logits, len(self.event_shape))


class GaussianHead(_LikelihoodHead):
    """``p(x|z) = prod_i N(x_i | mu_i, sigma_i^2)``.

    Attributes:
      scale: ``"fixed"`` (``sigma = fixed_scale``), ``"learned"`` (one trainable scale per
        observed dimension, shared by all z), ``"learned_shared"`` (one trainable scalar
        scale for every dimension, the isotropic noise of probabilistic PCA and of Lucas et
        al.'s (2019) linear VAE) or ``"predicted"`` (the network outputs a scale per
        dimension, as the homework's 2-D VAE does).
      predicted_scale: how a ``"predicted"`` scale is read from the network's second output
        (:func:`positive_scale`): ``"softplus"`` (``softplus(raw) + min_scale``),
        ``"log_std"`` (a log standard deviation, ``exp(raw) + min_scale``: Homework 2's
        ``mu, log_std = decoder(z).chunk(2)``) or ``"exp"`` (a log-variance).
      fixed_scale: the scale for ``"fixed"`` and the initial scale for ``"learned"`` and
        ``"learned_shared"``.
      min_scale: floor added to learned/predicted scales.

    Support: any finite value.
    """

    support = REAL
    scale: str = "predicted"
    predicted_scale: str = "softplus"
    fixed_scale: float = 1.0
    min_scale: float = 1e-3

    @property
    def num_params(self) -> int:  # type: ignore[override]
        return 2 if self.scale == "predicted" else 1

    @nn.compact
    def __call__(self, h: jax.Array) -> distrax.Distribution:
        if self.scale not in ("fixed", "learned", "learned_shared", "predicted"):
            raise ValueError(
                f"Unknown Gaussian scale mode {self.scale!r}; expected 'fixed', 'learned', "
                "'learned_shared' or 'predicted'.")
        if self.fixed_scale <= 0:
            raise ValueError(f"fixed_scale must be positive, got {self.fixed_scale}.")
        p = self._params(h)
        loc = p[..., 0]
        event = tuple(int(s) for s in self.event_shape)
        if self.scale == "predicted":
            scale = positive_scale(p[..., 1], self.predicted_scale, self.min_scale)
        elif self.scale in ("learned", "learned_shared"):
            init = float(np.log(np.expm1(max(self.fixed_scale - self.min_scale, 1e-6))))
            shape = event if self.scale == "learned" else ()
            raw = self.param("raw_scale", nn.initializers.constant(init), shape)
            scale = jnp.broadcast_to(positive_scale(raw, "softplus", self.min_scale), loc.shape)
        else:
            scale = jnp.full(loc.shape, self.fixed_scale, loc.dtype)
        return dists.gaussian(loc, scale, len(event))


class DiagGaussianHead(CheckedModule, nn.Module):
    """``q(z|x) = N(mu(h), diag(sigma(h)^2))`` from encoder features ``[..., F]``.

    Attributes:
      latent_dim: D.
      scale: ``"softplus"`` (DPM2 notebook), ``"exp"`` (log-variance output, PyTorch
        example) or ``"log_std"`` (log-standard-deviation output, the lecture's VAE); see
        :func:`positive_scale`.
      min_scale: floor added to the scale.
      weight_init: initialisation scheme of the output layer (see :func:`jvae.models.nets.dense`).
      dropout_rate: dropout of ``h`` before each of the two output layers (own masks).
      hidden: width of a dense layer + ReLU between ``h`` and the output layers (0: none):
        the DPM2 notebook's ``GaussianCPDNet(hidden_size=2 * latent)``, ``Linear(1024, 20)``
        and ``ReLU`` (dropout before it too), see :func:`hidden_features`.
      compute_dtype: ``"float32"`` or ``"bfloat16"`` (the dense layers' products; the
        Gaussian's parameters are float32 either way).
    """

    latent_dim: int
    scale: str = "softplus"
    min_scale: float = 1e-5
    weight_init: str = "lecun"
    dropout_rate: float = 0.0
    hidden: int = 0
    compute_dtype: str = "float32"

    @nn.compact
    def __call__(self, h: jax.Array) -> distrax.Distribution:
        if int(self.latent_dim) <= 0:
            raise ValueError(f"latent_dim must be a positive integer, got {self.latent_dim!r}.")
        h = hidden_features(self, h, self.hidden, self.weight_init, self.dropout_rate,
                            self.compute_dtype)
        d, fan_in, cd = int(self.latent_dim), h.shape[-1], self.compute_dtype
        loc = dense(d, fan_in, self.weight_init, name="loc", compute_dtype=cd)(
            dropout(self, h, self.dropout_rate, name="dropout_loc"))
        raw = dense(d, fan_in, self.weight_init, name="raw_scale", compute_dtype=cd)(
            dropout(self, h, self.dropout_rate, name="dropout_raw_scale"))
        loc, raw = _float32(loc), _float32(raw)
        return dists.diag_gaussian(loc, positive_scale(raw, self.scale, self.min_scale))


class MixtureGaussianHead(CheckedModule, nn.Module):
    """``q(z|x) = sum_c w_c(h) N(mu_c(h), diag(sigma_c(h)^2))``: a mixture of ``C`` diagonal
    Gaussians from encoder features ``[..., F]`` (the DPM2 notebook's MoG posterior).

    Not reparameterisable as a whole (the component choice is discrete): train it with the
    score-function (``"sfe"``) or the mixture (``"mixture"``) estimator, not the
    reparameterised ELBO. The component means start apart (the ``loc`` layer's bias is drawn
    from ``N(0, init_spread^2)``) so the components do not collapse onto one another.

    Attributes:
      latent_dim: D.
      num_components: C.
      scale: ``"softplus"`` or ``"exp"``, see :func:`positive_scale`.
      min_scale: floor added to every scale.
      init_spread: standard deviation of the initial component-mean offsets.
      weight_init: initialisation scheme of the output layers.
      dropout_rate: dropout of ``h`` before each of the three output layers (own masks).
      hidden: width of a dense layer + ReLU before the output layers (0: none), the
        notebook's ``MoGCPDNet(hidden_size=2 * latent)``; see :func:`hidden_features`.
      compute_dtype: as :class:`DiagGaussianHead`'s.

    ``init_spread = 0`` gives the notebook's ``MoGCPDNet`` exactly (no ``loc_offset``
    parameter: the components differ only through the ``loc`` layer's initial weights and
    biases).
    """

    latent_dim: int
    num_components: int = 2
    scale: str = "softplus"
    min_scale: float = 1e-5
    init_spread: float = 1.0
    weight_init: str = "lecun"
    dropout_rate: float = 0.0
    hidden: int = 0
    compute_dtype: str = "float32"

    @nn.compact
    def __call__(self, h: jax.Array) -> distrax.Distribution:
        d, c = int(self.latent_dim), int(self.num_components)
        if d <= 0 or c <= 0:
            raise ValueError(f"latent_dim and num_components must be positive integers, got "
                             f"{self.latent_dim!r} and {self.num_components!r}.")
        h = hidden_features(self, h, self.hidden, self.weight_init, self.dropout_rate,
                            self.compute_dtype)
        fan_in = h.shape[-1]
        lead = h.shape[:-1]
        def drop(name):
            return dropout(self, h, self.dropout_rate, name=f"dropout_{name}")

        def layer(size, name):
            return _float32(dense(size, fan_in, self.weight_init, name=name,
                                  compute_dtype=self.compute_dtype)(drop(name)))

        loc = layer(c * d, "loc")
        loc = loc.reshape(*lead, c, d)
        if self.init_spread < 0:
            raise ValueError(f"init_spread must be >= 0, got {self.init_spread!r}.")
        offset = (self.param("loc_offset", nn.initializers.normal(self.init_spread), (c, d))
                  if self.init_spread > 0 else 0.0)
        raw = layer(c * d, "raw_scale").reshape(*lead, c, d)
        logits = layer(c, "logits")
        return dists.mixture_diag_gaussian(logits, loc + offset,
                                           positive_scale(raw, self.scale, self.min_scale))


def _float32(x: jax.Array) -> jax.Array:
    """``x`` as float32 (a distribution's parameters, whatever the compute dtype); float32
    and float64 arrays are returned unchanged."""
    return x if jnp.finfo(x.dtype).bits >= 32 else x.astype(jnp.float32)
