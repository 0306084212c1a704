"""Convolutional networks: the encoder, the transposed-convolutional decoder, their layer
sizes and the named presets (the DPM2 notebook's and Homework 2's CNNs).

Like the MLP (:mod:`jvae.models.nets`), both accept structured batches: any number of leading
batch/sample axes in front of one ``[H, W, C]`` image (NHWC).
"""

from __future__ import annotations

import difflib
import math
from typing import Sequence

import flax.linen as nn
import jax

from jvae.models.conv import Conv, ConvTranspose, conv_output_size, conv_transpose_output_size
from jvae.models.fields import CheckedModule
from jvae.models.nets import _check_positive, conv_init, dense, dropout, get_activation

__all__ = ["ConvEncoder", "ConvDecoder", "conv_preset", "CONV_PRESETS", "conv_encoder_sizes",
           "conv_decoder_start"]


def _per_layer(value, n: int, name: str) -> tuple:
    """One value for every layer, or one per layer (a list or tuple of length ``n``)."""
    if isinstance(value, (str, int)):
        return (value,) * n
    value = tuple(value)
    if len(value) != n:
        raise ValueError(f"{name} needs one value or {n} (one per layer), got {value!r}.")
    return value


class ConvEncoder(CheckedModule, nn.Module):
    """Strided convolutions ``[..., H, W, C] -> [..., F]`` for any image size.

    Layer ``i`` is a ``kernel[i] x kernel[i]`` convolution to ``features[i]`` channels with
    stride ``strides[i]`` and ``padding[i]``, each followed by the activation. With the
    defaults (stride 2, ``SAME``) the spatial size halves (rounding up) per layer: 28 -> 14
    -> 7 -> 4 -> 2, 64 -> ... -> 4; with the DPM2 notebook's ``VALID`` 4x4 layers
    (:data:`CONV_PRESETS`) 64 -> 31 -> 14 -> 6 -> 2. The feature map is flattened and, when
    ``out_dim`` is set, projected by a dense layer followed by the activation.

    Attributes:
      features: channels per layer (default 32, 64, 128, 256, the notebook's).
      kernel, strides: one int for all layers or one per layer.
      padding: ``"SAME"``, ``"VALID"`` or an int (both sides), for all layers or per layer.
      activation: see :func:`get_activation` (default leaky ReLU 0.2, the notebook's).
      out_dim: width of the dense projection (``None``: the flattened map).
      impl: convolution implementation, ``"auto"`` | ``"subpixel"`` | ``"native"``
        (:class:`jvae.models.conv.Conv`; ``auto`` is space-to-depth on the CPU).
      dropout_rate: dropout of the flattened map before the dense projection (only with
        ``out_dim``; the notebook's CNN encoder has no dense layer), see :func:`dropout`.
      activate_last: whether the last convolution is followed by the activation (Homework 2's
        encoder, ``conv(256) -> fc``, has none there).
      weight_init: ``"lecun"`` (Flax's defaults), ``"torch"`` (PyTorch's ``nn.Conv2d`` and
        ``nn.Linear``) or ``"glorot"``, for every layer (:func:`conv_init`, :func:`dense`).
      compute_dtype: ``"float32"`` or ``"bfloat16"`` (every layer; see :class:`MLP`).

    Raises ``ValueError`` when the input is too small for the layers.
    """

    features: Sequence[int] = (32, 64, 128, 256)
    kernel: int | Sequence[int] = 4
    strides: int | Sequence[int] = 2
    padding: str | int | Sequence = "SAME"
    activation: str = "leaky_relu"
    out_dim: int | None = None
    impl: str = "auto"
    dropout_rate: float = 0.0
    activate_last: bool = True
    weight_init: str = "lecun"
    compute_dtype: str = "float32"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _check_positive("ConvEncoder features", self.features)
        if x.ndim < 3:
            raise ValueError(f"ConvEncoder expects [..., H, W, C] images, got shape {x.shape}.")
        n = len(self.features)
        layers = list(zip(self.features, _per_layer(self.kernel, n, "ConvEncoder kernel"),
                          _per_layer(self.strides, n, "ConvEncoder strides"),
                          _per_layer(self.padding, n, "ConvEncoder padding")))
        conv_encoder_sizes(x.shape[-3:-1], layers)          # raises for too small an input
        act = get_activation(self.activation)
        batch_shape = x.shape[:-3]
        h = x.reshape((-1,) + x.shape[-3:])
        for i, (f, k, s, pad) in enumerate(layers):
            k_init, b_init = conv_init(self.weight_init, (k, k, h.shape[-1], f))
            h = Conv(int(f), int(k), int(s), pad, impl=self.impl, kernel_init=k_init,
                     bias_init=b_init, compute_dtype=self.compute_dtype, name=f"conv_{i}")(h)
            h = act(h) if self.activate_last or i < n - 1 else h
        h = h.reshape(h.shape[0], -1)
        if self.out_dim is not None:
            h = dropout(self, h, self.dropout_rate, name="dropout_proj")
            h = act(dense(int(self.out_dim), h.shape[-1], self.weight_init, name="proj",
                          compute_dtype=self.compute_dtype)(h))
        return h.reshape(batch_shape + h.shape[-1:])


class ConvDecoder(CheckedModule, nn.Module):
    """Dense bottleneck then transposed convolutions ``[..., D] -> [..., H, W, out_channels]``.

    The latent code is mapped by a dense layer to an ``h0 x w0 x start_features`` map; the
    transposed convolutions (``kernel[i]``, ``strides[i]``, ``padding[i]``, each followed by
    the activation) grow it; ``final="conv"`` ends with a ``3 x 3`` convolution to
    ``out_channels``, ``final="transpose"`` makes the last transposed convolution output
    ``out_channels`` itself (the DPM2 notebook's decoder, no activation after it). The start
    size ``h0 x w0`` is computed: the smallest for which the layers reach at least ``H x W``;
    the result is centre cropped to ``H x W``. With the defaults (stride 2, ``SAME``)
    ``h0 = ceil(H / 2^n)``; the notebook's 5, 5, 6, 6 ``VALID`` layers turn 1x1 into 64x64.

    Attributes:
      image_shape: ``(H, W)`` of the output.
      out_channels: number of output channels (observation channels times parameters per
        pixel, e.g. 2 for a Gaussian with a predicted scale on grey images).
      features: channels of the transposed convolutions (``final="transpose"`` adds one
        more layer, to ``out_channels``).
      kernel, strides, padding: one for all transposed layers or one per layer
        (``len(features)``, plus one with ``final="transpose"``); ``padding`` is ``"SAME"``,
        ``"VALID"`` or an int (``flax.linen.ConvTranspose``'s meaning).
      activation: see :func:`get_activation`.
      start_features: channels of the dense bottleneck's map (``None``: ``features[0]``).
      activate_start: whether the dense bottleneck is followed by the activation.
      final: ``"conv"`` or ``"transpose"``.
      impl: ``"auto"`` | ``"subpixel"`` | ``"native"`` (:class:`jvae.models.conv.ConvTranspose`;
        ``auto`` is the sub-pixel form on the CPU, ``flax.linen.ConvTranspose`` elsewhere).
      dropout_rate: dropout of the latent code before the dense bottleneck (the notebook's
        ``build_cnn_decoder``: ``nn.Dropout(p_drop)`` before its one ``nn.Linear``), see
        :func:`dropout`.
      weight_init: ``"lecun"`` (Flax's defaults), ``"torch"`` (PyTorch's ``nn.Linear`` and
        ``nn.ConvTranspose2d``/``nn.Conv2d``) or ``"glorot"``, for every layer.
      compute_dtype: ``"float32"`` or ``"bfloat16"`` (every layer; see :class:`MLP`).

    Raises ``ValueError`` when the layers cannot produce ``H x W`` (a 1x1 start map already
    overshoots by a crop of at least the product of the strides).
    """

    image_shape: Sequence[int]
    out_channels: int
    features: Sequence[int] = (128, 64, 32)
    kernel: int | Sequence[int] = 4
    strides: int | Sequence[int] = 2
    padding: str | int | Sequence = "SAME"
    activation: str = "relu"
    start_features: int | None = None
    activate_start: bool = True
    final: str = "conv"
    impl: str = "auto"
    dropout_rate: float = 0.0
    weight_init: str = "lecun"
    compute_dtype: str = "float32"

    def layers(self) -> list[tuple]:
        """``(features, kernel, stride, padding)`` of each transposed convolution."""
        if self.final not in ("conv", "transpose"):
            raise ValueError(f"ConvDecoder final must be 'conv' or 'transpose', got "
                             f"{self.final!r}.")
        widths = tuple(self.features) + ((self.out_channels,) if self.final == "transpose"
                                         else ())
        n = len(widths)
        return list(zip(widths, _per_layer(self.kernel, n, "ConvDecoder kernel"),
                        _per_layer(self.strides, n, "ConvDecoder strides"),
                        _per_layer(self.padding, n, "ConvDecoder padding")))

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        _check_positive("ConvDecoder features", self.features)
        _check_positive("ConvDecoder image_shape", self.image_shape)
        height, width = (int(s) for s in self.image_shape)
        layers = self.layers()
        (h0, w0), _ = conv_decoder_start(self.image_shape, layers)
        act = get_activation(self.activation)
        start = int(self.start_features or self.features[0])
        batch_shape = z.shape[:-1]
        h = z.reshape(-1, z.shape[-1])
        h = dropout(self, h, self.dropout_rate, name="dropout_proj")
        h = dense(h0 * w0 * start, h.shape[-1], self.weight_init, name="proj",
                  compute_dtype=self.compute_dtype)(h)
        h = act(h) if self.activate_start else h
        h = h.reshape(-1, h0, w0, start)
        for i, (f, k, s, pad) in enumerate(layers):
            k_init, b_init = conv_init(self.weight_init, (k, k, h.shape[-1], f), transpose=True)
            h = ConvTranspose(int(f), int(k), int(s), pad, impl=self.impl, kernel_init=k_init,
                              bias_init=b_init, compute_dtype=self.compute_dtype,
                              name=f"deconv_{i}")(h)
            if self.final == "conv" or i < len(layers) - 1:
                h = act(h)
        if self.final == "conv":
            k_init, b_init = conv_init(self.weight_init, (3, 3, h.shape[-1], self.out_channels))
            h = Conv(int(self.out_channels), 3, 1, "SAME", impl=self.impl, kernel_init=k_init,
                     bias_init=b_init, compute_dtype=self.compute_dtype, name="out")(h)
        top = (h.shape[1] - height) // 2
        left = (h.shape[2] - width) // 2
        h = h[:, top:top + height, left:left + width, :]
        return h.reshape(batch_shape + h.shape[1:])


def conv_encoder_sizes(image_shape: Sequence[int], layers) -> list[tuple[int, int]]:
    """Spatial sizes after each ``(features, kernel, stride, padding)`` layer of a
    :class:`ConvEncoder` for an ``(H, W)`` input; ``ValueError`` when one is below 1."""
    size = tuple(int(v) for v in image_shape)
    sizes = []
    for i, (_, k, s, pad) in enumerate(layers):
        new = tuple(conv_output_size(v, int(k), int(s), pad) for v in size)
        if min(new) < 1:
            raise ValueError(
                f"ConvEncoder: a {image_shape[0]}x{image_shape[1]} input is {size[0]}x"
                f"{size[1]} at layer {i}, smaller than its {k}x{k} kernel with padding "
                f"{pad!r}; use fewer layers, smaller kernels or padding 'SAME'.")
        sizes.append(new)
        size = new
    return sizes


def conv_decoder_start(image_shape: Sequence[int], layers):
    """``((h0, w0), (H', W'))``: the smallest start map for which the transposed
    ``(features, kernel, stride, padding)`` layers of a :class:`ConvDecoder` reach at least
    ``image_shape``, and the size they reach (centre cropped to ``image_shape``).

    Raises ``ValueError`` when the size cannot be produced: a 1x1 start already overshoots
    by at least the product of the strides (the crop would discard whole start cells)."""
    start, reached = [], []
    for axis, target in enumerate(int(v) for v in image_shape):
        def grow(n):
            for _, k, s, pad in layers:
                n = conv_transpose_output_size(n, int(k), int(s), pad)
            return n
        stride = math.prod(int(layer[2]) for layer in layers)
        h0 = 1
        while grow(h0) < target:
            h0 += 1
        if h0 == 1 and grow(1) - target >= stride:
            name = "height" if axis == 0 else "width"
            raise ValueError(
                f"ConvDecoder cannot produce {name} {target}: its layers (kernels "
                f"{[int(l[1]) for l in layers]}, strides {[int(l[2]) for l in layers]}, "
                f"padding {[l[3] for l in layers]}) turn a 1-pixel start into {grow(1)}; "
                f"use fewer layers, smaller kernels or padding 'SAME'.")
        start.append(h0)
        reached.append(grow(h0))
    return tuple(start), tuple(reached)


CONV_PRESETS = ("dpm2", "hw2")


def conv_preset(name: str, image_shape: Sequence[int]) -> tuple[dict, dict]:
    """Keyword arguments ``(encoder, decoder)`` of :class:`ConvEncoder` and
    :class:`ConvDecoder` (less ``image_shape``/``out_channels``) for a named architecture
    at an ``(H, W)`` image size.

    ``"dpm2"``: the DPM2 notebook's CNN VAE (``build_cnn_encoder``/``build_cnn_decoder``).
    Encoder: 4x4 convolutions of stride 2 without padding to 32, 64, 128, 256 channels,
    leaky ReLU 0.2, flattened (2x2x256 = 1024 at 64x64). Decoder: a dense layer to a
    1x1x1024 map (no activation), transposed convolutions 5x5, 5x5, 6x6, 6x6 of stride 2
    without padding to 128, 64, 32 and ``out_channels`` channels, ReLU between them (1 -> 5
    -> 13 -> 30 -> 64). The notebook hard-codes 64x64; here the number of layers is
    computed: the most of the notebook's layers (the first ones of the encoder, the last
    ones of the decoder) that fit the image, so 28x28 and 32x32 use three (encoder 28 -> 13
    -> 5 -> 1, 32 -> 15 -> 6 -> 2; decoder 1 -> 5 -> 14 -> 32, cropped to 28). When the
    flattened encoder output is not 1024 wide, a dense layer (with the activation) projects
    it to 1024, the notebook's bottleneck.

    ``"hw2"``: Homework 2's convolutional beta-VAE (Task 3's suggested ``ConvEncoder`` /
    ``ConvDecoder``). Encoder: ``conv(32) -> relu -> conv(64) -> relu -> conv(128) -> relu ->
    conv(256)``, 3x3 kernels with padding 1 (``SAME``), the first of stride 1 and the others
    of stride 2, no activation after the last (32 -> 32 -> 16 -> 8 -> 4, flattened to
    4x4x256 = 4096); the posterior head is the ``fc(2 * latent)``. Decoder: ``fc`` to a
    ``128 x H/8 x W/8`` map (no activation), then ``conv2dtranspose(128) -> relu ->
    conv2dtranspose(64) -> relu -> conv2dtranspose(32) -> relu -> conv2dtranspose(C)``: 4x4
    transposed convolutions of stride 2 (``SAME``: each doubles the size, 4 -> 8 -> 16 -> 32)
    and a last 3x3 one of stride 1 to the output channels. The notebook leaves kernel sizes
    and strides to the student; these are the usual choice that reaches ``H/8`` and back. For
    sizes not divisible by 8 the start map is ``ceil(H/8)`` and the output is centre cropped.

    Raises ``ValueError`` for an unknown name or an image too small for one layer.
    """
    if name not in CONV_PRESETS:
        close = difflib.get_close_matches(str(name), CONV_PRESETS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"Unknown conv preset {name!r}{hint}; choose one of "
                         f"{list(CONV_PRESETS)}.")
    if name == "hw2":
        encoder = dict(features=(32, 64, 128, 256), kernel=3, strides=(1, 2, 2, 2),
                       padding="SAME", activation="relu", out_dim=None, activate_last=False)
        decoder = dict(features=(128, 64, 32), kernel=(4, 4, 4, 3), strides=(2, 2, 2, 1),
                       padding="SAME", activation="relu", start_features=128,
                       activate_start=False, final="transpose")
        return encoder, decoder
    enc = [(32, 4, 2, "VALID"), (64, 4, 2, "VALID"), (128, 4, 2, "VALID"),
           (256, 4, 2, "VALID")]
    dec = [(128, 5, 2, "VALID"), (64, 5, 2, "VALID"), (32, 6, 2, "VALID"),
           (1, 6, 2, "VALID")]                       # the last width is out_channels
    bottleneck = 1024
    image_shape = tuple(int(v) for v in image_shape)
    n_enc = _most_layers(lambda n: conv_encoder_sizes(image_shape, enc[:n]), len(enc))
    n_dec = _most_layers(lambda n: conv_decoder_start(image_shape, dec[-n:]), len(dec))
    if not n_enc or not n_dec:
        part = "encoder" if not n_enc else "decoder"
        raise ValueError(f"conv preset {name!r}: a {image_shape[0]}x{image_shape[1]} image is "
                         f"too small for one layer of the notebook's {part}.")
    enc, dec = enc[:n_enc], dec[-n_dec:]
    h, w = conv_encoder_sizes(image_shape, enc)[-1]
    flat = h * w * enc[-1][0]

    def unzip(layers):
        return tuple(zip(*layers))
    e_feat, e_kernel, e_strides, e_pad = unzip(enc)
    d_feat, d_kernel, d_strides, d_pad = unzip(dec)
    encoder = dict(features=e_feat, kernel=e_kernel, strides=e_strides, padding=e_pad,
                   activation="leaky_relu", out_dim=None if flat == bottleneck else bottleneck)
    decoder = dict(features=d_feat[:-1], kernel=d_kernel, strides=d_strides, padding=d_pad,
                   activation="relu", start_features=bottleneck, activate_start=False,
                   final="transpose")
    return encoder, decoder


def _most_layers(check, most: int) -> int:
    """The largest ``n <= most`` for which ``check(n)`` does not raise ``ValueError``."""
    for n in range(most, 0, -1):
        try:
            check(n)
            return n
        except ValueError:
            continue
    return 0
