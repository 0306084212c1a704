"""Networks: MLP, convolutional encoder and transposed-convolutional decoder.

All networks accept structured batches: any number of leading batch/sample axes in front of
the ``in_event_ndims`` axes of one input (``[S, B, H, W, C]`` or ``[B, D]``), so callers never
reshape by hand (the role of ``MySequential`` in the DPM2 notebook). Images are NHWC.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["MLP", "ConvEncoder", "ConvDecoder", "get_activation", "dense"]

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "elu": nn.elu,
    "gelu": nn.gelu,
    "softplus": nn.softplus,
    "leaky_relu": lambda x: nn.leaky_relu(x, 0.2),
    "identity": lambda x: x,
}


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """Activation function by name (``relu``, ``tanh``, ``elu``, ``gelu``, ``softplus``,
    ``leaky_relu`` (slope 0.2), ``identity``)."""
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"Unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}.") from None


INITS = ("lecun", "torch", "glorot")


def dense(features: int, fan_in: int, init: str = "lecun", name: str | None = None) -> nn.Dense:
    """A dense layer with Flax's or PyTorch's default initialisation.

    Args:
      features: output width.
      fan_in: input width (needed by the PyTorch scheme's bias bound).
      init: ``"lecun"`` (Flax: LeCun-normal kernel, zero bias), ``"torch"`` (PyTorch's
        ``nn.Linear``: kernel and bias uniform in ``+-1/sqrt(fan_in)``) or ``"glorot"``
        (Glorot & Bengio's uniform kernel, zero bias; the IWAE paper's choice).
    """
    if init == "lecun":
        return nn.Dense(features, name=name)
    if init == "glorot":
        return nn.Dense(features, kernel_init=nn.initializers.glorot_uniform(), name=name)
    if init == "torch":
        bound = 1.0 / math.sqrt(max(int(fan_in), 1))

        def bias_init(key, shape, dtype=jnp.float32):
            return jax.random.uniform(key, shape, dtype, -bound, bound)

        kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
        return nn.Dense(features, kernel_init=kernel_init, bias_init=bias_init, name=name)
    raise ValueError(f"Unknown init {init!r}; choose one of {list(INITS)}.")


def _check_positive(name: str, values: Sequence[int]) -> None:
    if any(int(v) <= 0 for v in values):
        raise ValueError(f"{name} must be positive integers, got {tuple(values)}.")


class MLP(nn.Module):
    """Fully connected network ``[..., *in_event] -> [..., hidden[-1]]``.

    Attributes:
      hidden: widths of the layers, each followed by ``activation``.
      activation: name of the activation (see :func:`get_activation`).
      in_event_ndims: trailing input axes flattened into one feature axis (3 for images).
      activate_final: whether the last layer is followed by the activation too.
      weight_init: ``"lecun"`` (Flax default) or ``"torch"`` (PyTorch default), see :func:`dense`.
    """

    hidden: Sequence[int]
    activation: str = "relu"
    in_event_ndims: int = 1
    activate_final: bool = True
    weight_init: str = "lecun"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _check_positive("MLP hidden sizes", self.hidden)
        act = get_activation(self.activation)
        if self.in_event_ndims > 1:
            x = x.reshape(x.shape[: x.ndim - self.in_event_ndims] + (-1,))
        for i, width in enumerate(self.hidden):
            x = dense(int(width), x.shape[-1], self.weight_init, name=f"dense_{i}")(x)
            if i < len(self.hidden) - 1 or self.activate_final:
                x = act(x)
        return x


class ConvEncoder(nn.Module):
    """Strided convolutions ``[..., H, W, C] -> [..., F]`` for any image size.

    Each layer is a ``kernel x kernel`` convolution with stride 2 and ``SAME`` padding, so the
    spatial size halves (rounding up) per layer: 28 -> 14 -> 7 -> 4 -> 2, 32 -> ... -> 2,
    64 -> ... -> 4. The feature map is flattened and, when ``out_dim`` is set, projected by a
    dense layer followed by the activation. The default widths (32, 64, 128, 256), kernel 4
    and leaky ReLU (0.2) follow the DPM2 notebook's CNN encoder.
    """

    features: Sequence[int] = (32, 64, 128, 256)
    kernel: int = 4
    activation: str = "leaky_relu"
    out_dim: int | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _check_positive("ConvEncoder features", self.features)
        if x.ndim < 3:
            raise ValueError(f"ConvEncoder expects [..., H, W, C] images, got shape {x.shape}.")
        act = get_activation(self.activation)
        batch_shape = x.shape[:-3]
        h = x.reshape((-1,) + x.shape[-3:])
        for i, f in enumerate(self.features):
            h = act(nn.Conv(int(f), (self.kernel, self.kernel), strides=(2, 2),
                            padding="SAME", name=f"conv_{i}")(h))
        h = h.reshape(h.shape[0], -1)
        if self.out_dim is not None:
            h = act(nn.Dense(int(self.out_dim), name="proj")(h))
        return h.reshape(batch_shape + h.shape[-1:])


class ConvDecoder(nn.Module):
    """Dense projection then transposed convolutions ``[..., D] -> [..., H, W, out_channels]``.

    The latent code is mapped to a ``ceil(H / 2^n) x ceil(W / 2^n) x features[0]`` map; ``n =
    len(features)`` transposed convolutions (stride 2, ``SAME``) double it to at least
    ``H x W``; a final ``3 x 3`` convolution gives ``out_channels`` parameter maps, centre
    cropped to ``H x W``. Works for 28x28, 32x32, 64x64 or any other size.

    Attributes:
      image_shape: ``(H, W)`` of the output.
      out_channels: number of output channels (observation channels times parameters per
        pixel, e.g. 2 for a Gaussian with a predicted scale on grey images).
    """

    image_shape: Sequence[int]
    out_channels: int
    features: Sequence[int] = (128, 64, 32)
    kernel: int = 4
    activation: str = "relu"

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        _check_positive("ConvDecoder features", self.features)
        _check_positive("ConvDecoder image_shape", self.image_shape)
        height, width = (int(s) for s in self.image_shape)
        act = get_activation(self.activation)
        n = len(self.features)
        h0, w0 = math.ceil(height / 2**n), math.ceil(width / 2**n)
        batch_shape = z.shape[:-1]
        h = z.reshape(-1, z.shape[-1])
        h = act(nn.Dense(h0 * w0 * int(self.features[0]), name="proj")(h))
        h = h.reshape(-1, h0, w0, int(self.features[0]))
        for i, f in enumerate(self.features):
            h = act(nn.ConvTranspose(int(f), (self.kernel, self.kernel), strides=(2, 2),
                                     padding="SAME", name=f"deconv_{i}")(h))
        h = nn.Conv(int(self.out_channels), (3, 3), padding="SAME", name="out")(h)
        top = (h.shape[1] - height) // 2
        left = (h.shape[2] - width) // 2
        h = h[:, top:top + height, left:left + width, :]
        return h.reshape(batch_shape + h.shape[1:])
