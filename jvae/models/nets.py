"""Networks: the MLP and the layer helpers every network shares (activations, dense layers and
their initialisations, dropout); the convolutional networks are in :mod:`jvae.models.conv_nets`.

All networks accept structured batches: any number of leading batch/sample axes in front of
the ``in_event_ndims`` axes of one input (``[S, B, H, W, C]`` or ``[B, D]``), so callers never
reshape by hand (the role of ``MySequential`` in the DPM2 notebook). Images are NHWC.

Dropout (Srivastava et al., 2014; the DPM2 notebook's ``nn.Dropout(p_drop)`` before every
``nn.Linear``): ``dropout_rate`` drops the input of every dense layer, kept units scaled by
``1 / (1 - rate)``, only when ``apply`` gets a ``"dropout"`` stream (the training losses, via
:func:`jvae.models.vae.training_apply`); otherwise the networks are those of rate 0.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import flax.linen as nn
from flax.linen.linear import default_kernel_init
import jax
import jax.numpy as jnp

from jvae.models.fields import CheckedModule
from jvae.models.precision import MixedDense, operand_dtype

__all__ = ["MLP", "get_activation", "ACTIVATIONS", "INITS", "dense", "conv_init", "dropout",
           "check_dropout_rate"]

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "sigmoid": nn.sigmoid,
    "tanh": jnp.tanh,
    "elu": nn.elu,
    "gelu": nn.gelu,
    "softplus": nn.softplus,
    "leaky_relu": lambda x: nn.leaky_relu(x, 0.2),
    "identity": lambda x: x,
}
#: The activation names :func:`get_activation` knows (``config.model.activation`` takes one).
ACTIVATIONS = tuple(sorted(_ACTIVATIONS))


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """Activation function by name (``relu``, ``sigmoid`` (the logistic function, the
    activation of Kingma & Welling's original VAE that Lab 5's question compares with ReLU),
    ``tanh``, ``elu``, ``gelu``, ``softplus``, ``leaky_relu`` (slope 0.2), ``identity``)."""
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"Unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}.") from None


INITS = ("lecun", "torch", "glorot")


def dense(features: int, fan_in: int, init: str = "lecun", name: str | None = None,
          compute_dtype: str = "float32") -> nn.Module:
    """A dense layer with Flax's or PyTorch's default initialisation.

    Args:
      features: output width.
      fan_in: input width (needed by the PyTorch scheme's bias bound).
      init: ``"lecun"`` (Flax: LeCun-normal kernel, zero bias), ``"torch"`` (PyTorch's
        ``nn.Linear``: kernel and bias uniform in ``+-1/sqrt(fan_in)``) or ``"glorot"``
        (Glorot & Bengio's uniform kernel, zero bias; the IWAE paper's choice).
      compute_dtype: ``"float32"`` (``flax.linen.Dense``) or ``"bfloat16"``
        (:class:`jvae.models.precision.MixedDense`: same parameters, bfloat16 operands,
        float32 accumulation and output).
    """
    dtype = operand_dtype(compute_dtype)
    if init == "lecun":
        inits = {}
    elif init == "glorot":
        inits = dict(kernel_init=nn.initializers.glorot_uniform())
    elif init == "torch":
        bound = 1.0 / math.sqrt(max(int(fan_in), 1))

        def bias_init(key, shape, dtype=jnp.float32):
            return jax.random.uniform(key, shape, dtype, -bound, bound)

        kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
        inits = dict(kernel_init=kernel_init, bias_init=bias_init)
    else:
        raise ValueError(f"Unknown init {init!r}; choose one of {list(INITS)}.")
    if dtype is None:
        return nn.Dense(features, name=name, **inits)
    return MixedDense(features, dtype, name=name, **inits)


def _uniform(bound: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)
    return init


def conv_init(init: str, kernel_shape: Sequence[int], transpose: bool = False):
    """``(kernel_init, bias_init)`` of a convolution with a ``[kh, kw, C_in, C_out]`` kernel.

    Args:
      init: ``"lecun"`` (Flax's ``nn.Conv`` defaults: LeCun-normal kernel, zero bias),
        ``"torch"`` (PyTorch's ``nn.Conv2d`` / ``nn.ConvTranspose2d`` ``reset_parameters``:
        kernel and bias uniform in ``+-1/sqrt(fan_in)``) or ``"glorot"`` (Glorot-uniform
        kernel, zero bias).
      kernel_shape: ``(kh, kw, C_in, C_out)``.
      transpose: a transposed convolution. PyTorch stores its weight as ``[C_in, C_out, kh,
        kw]`` and takes ``fan_in`` from the second axis, so its bound is
        ``1/sqrt(C_out * kh * kw)``; a convolution's is ``1/sqrt(C_in * kh * kw)``.
    """
    kh, kw, c_in, c_out = (int(v) for v in kernel_shape)
    if init == "lecun":
        return default_kernel_init, nn.initializers.zeros_init()
    if init == "glorot":
        return nn.initializers.glorot_uniform(), nn.initializers.zeros_init()
    if init == "torch":
        bound = 1.0 / math.sqrt(kh * kw * (c_out if transpose else c_in))
        return _uniform(bound), _uniform(bound)
    raise ValueError(f"Unknown init {init!r}; choose one of {list(INITS)}.")


def check_dropout_rate(rate, what: str = "dropout_rate") -> float:
    """``float(rate)`` if it is in ``[0, 1)``, else a one-line ``ValueError`` naming ``what``."""
    try:
        value = float(rate)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number in [0, 1), got {rate!r}.") from None
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{what} must be in [0, 1) (the probability of dropping a unit), "
                         f"got {rate!r}.")
    return value


def dropout(module: nn.Module, x: jax.Array, rate: float, name: str) -> jax.Array:
    """Inverted dropout of ``x`` (one mask entry per element) inside ``module``'s compact
    method, active only with a ``"dropout"`` stream; rate 0 adds no module. ``name`` names the
    :class:`flax.linen.Dropout` submodule, whose path gives it a mask of its own."""
    rate = check_dropout_rate(rate, f"{type(module).__name__} dropout_rate")
    if rate == 0.0:
        return x
    return nn.Dropout(rate, deterministic=not module.has_rng("dropout"), name=name)(x)


def _check_positive(name: str, values: Sequence[int]) -> None:
    if any(int(v) <= 0 for v in values):
        raise ValueError(f"{name} must be positive integers, got {tuple(values)}.")


class MLP(CheckedModule, nn.Module):
    """Fully connected network ``[..., *in_event] -> [..., hidden[-1]]``.

    Attributes:
      hidden: widths of the layers, each followed by ``activation``.
      activation: name of the activation (see :func:`get_activation`).
      in_event_ndims: trailing input axes flattened into one feature axis (3 for images).
      activate_final: whether the last layer is followed by the activation too.
      weight_init: ``"lecun"`` (Flax default) or ``"torch"`` (PyTorch default), see :func:`dense`.
      dropout_rate: probability of dropping each input of every dense layer (the first
        layer's input included, as the notebook's ``nn.Dropout(p_drop)`` before every
        ``nn.Linear``); in ``[0, 1)``, active only with a ``"dropout"`` stream (see
        :func:`dropout`).
      compute_dtype: ``"float32"`` or ``"bfloat16"`` (products in bfloat16, accumulated and
        returned in float32: :mod:`jvae.models.precision`).
    """

    hidden: Sequence[int]
    activation: str = "relu"
    in_event_ndims: int = 1
    activate_final: bool = True
    weight_init: str = "lecun"
    dropout_rate: float = 0.0
    compute_dtype: str = "float32"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _check_positive("MLP hidden sizes", self.hidden)
        act = get_activation(self.activation)
        if self.in_event_ndims > 1:
            x = x.reshape(x.shape[: x.ndim - self.in_event_ndims] + (-1,))
        for i, width in enumerate(self.hidden):
            x = dropout(self, x, self.dropout_rate, name=f"dropout_{i}")
            x = dense(int(width), x.shape[-1], self.weight_init, name=f"dense_{i}",
                      compute_dtype=self.compute_dtype)(x)
            if i < len(self.hidden) - 1 or self.activate_final:
                x = act(x)
        return x
