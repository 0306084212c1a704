"""Convolutions that run fast on XLA's CPU backend and are unchanged on accelerators.

XLA's CPU backend runs a stride-1 convolution well (Eigen's spatial convolution) but not a
convolution with a dilated input (``lhs_dilation``): that is what a transposed convolution
is, and what the gradient of a strided convolution with respect to its input is. Measured on
a 2-core CPU (``experiments/bench_conv.py``), a 64x64 decoder's gradient was 10-30x slower
than PyTorch's. The two modules here compute the same function as ``flax.linen.ConvTranspose``
and ``flax.linen.Conv`` (same parameter names, shapes and initialisers, so parameters,
checkpoints and inits are interchangeable) but, with ``impl="subpixel"``, only ever run
stride-1 convolutions:

* :class:`ConvTranspose`: a stride-``s`` transposed convolution is ``s*s`` sub-pixel phases,
  each a stride-1 correlation with the kernel taps of that phase. One stride-1 convolution
  to ``s_h * s_w * features`` channels with the rearranged kernel, a depth-to-space reshape
  and a crop give exactly ``lax.conv_transpose``'s output for any kernel size, stride and
  padding (``SAME``, ``VALID``, explicit) (Shi et al., 2016, "Real-time single image and
  video super-resolution using an efficient sub-pixel convolutional neural network";
  Dumoulin & Visin, 2016, "A guide to convolution arithmetic for deep learning"). Where
  that convolution's window would hold at least twice the kernel's taps (a 4x4 stride-2
  ``SAME`` kernel: 36 for 16), each phase runs as its own stride-1 convolution instead.
* :class:`Conv`: a stride-``s`` convolution is a space-to-depth reshape of the (padded)
  input followed by a stride-1 convolution with a ``ceil(k/s)`` kernel over ``s_h * s_w * C``
  channels; its gradient is then a stride-1 convolution too.

Inside, every stride-1 convolution's kernel gradient is one 2-D matrix product per kernel tap
(XLA's CPU backward-filter convolution measured 3-6x slower), and its forward pass is one
matrix product to every tap's output followed by shifted sums where that product is small.

``impl="auto"`` picks ``"subpixel"`` on the CPU backend and ``"native"`` (the Flax/lax
operation itself) elsewhere, where cuDNN/TPU kernels for the native form are fast. This holds
for a 1-channel output layer too: called alone, the native form of the DPM2 decoder's last
layer (6x6, stride 2, 32 -> 1 channels) takes its gradient faster at batch 256 (0.17-0.19 s
against 0.39-0.42 s), but inside a ``lax.scan`` body, where training runs, XLA gives its
kernel gradient another layout and it takes 1.34-1.51 s against the sub-pixel form's
0.20-0.26 s. The kernel is rearranged inside the call (a few pads and reshapes of
the parameter), so the parameter tree is the one ``flax.linen.ConvTranspose`` /
``flax.linen.Conv`` would create.
Images are NHWC with any number of leading batch axes.

``compute_dtype="bfloat16"`` rounds the input and the kernel to bfloat16 and accumulates every
product in float32 (``preferred_element_type``): outputs, bias and gradients with respect to
the (float32) parameters are float32 (:mod:`jvae.models.precision`).
"""

from __future__ import annotations

from typing import Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from flax.linen.linear import default_kernel_init

from jvae.models.precision import matmul, operand_dtype

__all__ = ["Conv", "ConvTranspose", "CONV_IMPLS", "resolve_conv_impl",
           "conv_output_size", "conv_transpose_output_size"]

CONV_IMPLS = ("auto", "subpixel", "native")
_FEW_IN_CHANNELS = 16  # a stride-1 conv over fewer input channels stays XLA's convolution
_ALL_TAPS_MAX = 512    # else one product to all taps when kh * kw * out_channels <= this
Padding = Union[str, int, Sequence[Union[int, Sequence[int]]]]
_DN = ("NHWC", "HWIO", "NHWC")


def resolve_conv_impl(impl: str) -> str:
    """``"auto"`` -> ``"subpixel"`` on the CPU backend, ``"native"`` on GPU/TPU; the other
    names are returned unchanged. Raises ``ValueError`` for an unknown name."""
    if impl not in CONV_IMPLS:
        raise ValueError(f"Unknown conv impl {impl!r}; choose one of {list(CONV_IMPLS)}.")
    if impl == "auto":
        return "subpixel" if jax.default_backend() == "cpu" else "native"
    return impl


def _pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        out = (int(value), int(value))
    else:
        out = tuple(int(v) for v in value)
    if len(out) != 2 or any(v <= 0 for v in out):
        raise ValueError(f"{name} must be one positive int or two, got {value!r}.")
    return out


def _explicit_pads(padding: Padding) -> list[tuple[int, int]] | None:
    """Explicit ``[(lo, hi), (lo, hi)]`` pads, or ``None`` for ``SAME``/``VALID``."""
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise ValueError(f"Unknown padding {padding!r}; use 'SAME', 'VALID', an int or "
                             "((lo, hi), (lo, hi)).")
        return None
    if isinstance(padding, (int, np.integer)):
        return [(int(padding), int(padding))] * 2
    pads = [(int(p), int(p)) if isinstance(p, (int, np.integer)) else tuple(int(v) for v in p)
            for p in padding]
    if len(pads) != 2 or any(len(p) != 2 for p in pads):
        raise ValueError(f"padding must be 'SAME', 'VALID', an int or two (lo, hi) pairs, "
                         f"got {padding!r}.")
    return pads


def _transpose_pads(kernel, strides, padding: Padding) -> list[tuple[int, int]]:
    """The pads ``lax.conv_transpose`` applies to the stride-dilated input, per axis."""
    pads = _explicit_pads(padding)
    if pads is not None:
        return pads
    mode = padding.upper()
    out = []
    for k, s in zip(kernel, strides):
        if mode == "SAME":
            pad_len = k + s - 2
            pad_a = k - 1 if s > k - 1 else int(np.ceil(pad_len / 2))
        else:
            pad_len = k + s - 2 + max(k - s, 0)
            pad_a = k - 1
        out.append((pad_a, pad_len - pad_a))
    return out


def _conv_pads(sizes, kernel, strides, padding: Padding) -> list[tuple[int, int]]:
    """The pads ``lax.conv_general_dilated`` applies to the input of a strided conv."""
    pads = _explicit_pads(padding)
    if pads is not None:
        return pads
    return list(lax.padtype_to_pads(tuple(sizes), tuple(kernel), tuple(strides),
                                    padding.upper()))


def conv_output_size(size: int, kernel: int, stride: int, padding: Padding) -> int:
    """Spatial output size of a convolution (``flax.linen.Conv`` semantics) along one axis;
    ``padding`` is ``"SAME"``, ``"VALID"`` or an int (both sides). May be <= 0 for an input
    smaller than the kernel (callers turn that into an error)."""
    if isinstance(padding, str) and padding.upper() == "SAME":
        return -(-int(size) // int(stride))
    lo, hi = (0, 0) if isinstance(padding, str) else _explicit_pads(padding)[0]
    return (int(size) + lo + hi - int(kernel)) // int(stride) + 1


def conv_transpose_output_size(size: int, kernel: int, stride: int, padding: Padding) -> int:
    """Spatial output size of ``flax.linen.ConvTranspose`` along one axis: ``size * stride``
    for ``SAME``; ``size * stride + max(kernel - stride, 0)`` for ``VALID`` (PyTorch's
    ``ConvTranspose2d`` without padding when ``kernel >= stride``)."""
    if isinstance(padding, (int, np.integer)):
        padding = [(int(padding), int(padding))] * 2
    (lo, hi), _ = _transpose_pads((int(kernel),) * 2, (int(stride),) * 2, padding)
    return (int(size) - 1) * int(stride) + 1 + lo + hi - int(kernel) + 1


class _ConvLayer(nn.Module):
    """The fields :class:`ConvTranspose` and :class:`Conv` share (Flax's names and defaults)."""

    features: int
    kernel_size: int | Sequence[int]
    strides: int | Sequence[int] = 1
    padding: Padding = "SAME"
    use_bias: bool = True
    impl: str = "auto"
    kernel_init: nn.initializers.Initializer = default_kernel_init
    bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()
    compute_dtype: str = "float32"

    def _images_and_kernel(self, x, kernel_size, name):
        """``x [..., H, W, C]`` as ``[N, H, W, C]`` with its leading shape, and the
        ``[kh, kw, C, features]`` kernel parameter, both rounded to the compute dtype."""
        if x.ndim < 3:
            raise ValueError(f"{name} expects [..., H, W, C] inputs, got {x.shape}.")
        batch_shape = x.shape[:-3]
        x = x.reshape((-1,) + x.shape[-3:])
        kernel = self.param("kernel", self.kernel_init,
                            kernel_size + (x.shape[-1], int(self.features)), jnp.float32)
        dtype = operand_dtype(self.compute_dtype)
        if dtype is not None:
            x, kernel = x.astype(dtype), kernel.astype(dtype)
        return batch_shape, x, kernel


class ConvTranspose(_ConvLayer):
    """``flax.linen.ConvTranspose`` (2-D, NHWC, ``transpose_kernel=False``, no dilation)
    with a CPU-fast sub-pixel implementation.

    ``[..., H, W, C] -> [..., H', W', features]`` with ``H' = (H-1)*s + 1 + pad_lo + pad_hi
    - k + 1`` (``H*s`` for ``SAME``). Parameters ``kernel`` ``[kh, kw, C, features]`` and
    ``bias`` ``[features]``, as in Flax.

    Attributes:
      features: output channels.
      kernel_size: ``k`` or ``(kh, kw)``.
      strides: ``s`` or ``(sh, sw)``.
      padding: ``"SAME"``, ``"VALID"``, an int or ``((lo, hi), (lo, hi))`` (the pads of the
        dilated input, ``lax.conv_transpose``'s meaning).
      impl: ``"auto"`` (subpixel on CPU, native elsewhere), ``"subpixel"`` or ``"native"``.
      compute_dtype: ``"float32"`` or ``"bfloat16"`` (bfloat16 operands, float32 output).
    """

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel_size = _pair(self.kernel_size, "ConvTranspose kernel_size")
        strides = _pair(self.strides, "ConvTranspose strides")
        impl = resolve_conv_impl(self.impl)
        batch_shape, x, kernel = self._images_and_kernel(x, kernel_size, "ConvTranspose")
        pads = _transpose_pads(kernel_size, strides, self.padding)
        if impl == "native":
            y = lax.conv_general_dilated(x, kernel, (1, 1), pads, lhs_dilation=strides,
                                         dimension_numbers=_DN,
                                         preferred_element_type=_accumulation(x))
        elif strides == (1, 1):
            y = _valid_conv(_pad_images(x, pads), kernel)
        elif x.shape[1:3] == (1, 1):
            y = _pixel_conv_transpose(x, kernel, pads)
        elif _subpixel_window(kernel_size, strides, pads) >= 2 * kernel_size[0] * kernel_size[1]:
            y = _phase_conv_transpose(x, kernel, strides, pads)
        else:
            y = _subpixel_conv_transpose(x, kernel, strides, pads)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (int(self.features),), jnp.float32)
        return y.reshape(batch_shape + y.shape[1:])


class Conv(_ConvLayer):
    """``flax.linen.Conv`` (2-D, NHWC, no dilation, one group) whose strided case runs as
    space-to-depth followed by a stride-1 convolution (``impl="subpixel"``), so that its
    gradient with respect to the input is a stride-1 convolution too.

    ``[..., H, W, C] -> [..., H', W', features]`` with ``H' = ceil(H/s)`` for ``SAME`` and
    ``floor((H + pad_lo + pad_hi - k)/s) + 1`` otherwise. Attributes as in
    :class:`ConvTranspose` (``padding`` has ``flax.linen.Conv``'s meaning).
    """

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel_size = _pair(self.kernel_size, "Conv kernel_size")
        strides = _pair(self.strides, "Conv strides")
        impl = resolve_conv_impl(self.impl)
        batch_shape, x, kernel = self._images_and_kernel(x, kernel_size, "Conv")
        pads = _conv_pads(x.shape[1:3], kernel_size, strides, self.padding)
        out = [(n + lo + hi - k) // s + 1
               for n, (lo, hi), k, s in zip(x.shape[1:3], pads, kernel_size, strides)]
        if min(out) <= 0:
            raise ValueError(f"Conv: a {x.shape[1]}x{x.shape[2]} input is smaller than the "
                             f"{kernel_size[0]}x{kernel_size[1]} kernel with padding "
                             f"{self.padding!r}.")
        if impl == "native":
            y = lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=_DN,
                                         preferred_element_type=_accumulation(x))
        elif strides == (1, 1):
            y = _valid_conv(_pad_images(x, pads), kernel)
        else:
            y = _space_to_depth_conv(x, kernel, strides, pads, out)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (int(self.features),), jnp.float32)
        return y.reshape(batch_shape + y.shape[1:])


# ----------------------------------------------------------------------------- helpers

def _accumulation(x):
    """The accumulation dtype of a product of ``x``'s dtype: float32 for operands of fewer
    bits (bfloat16), ``None`` (the operands' own) otherwise."""
    return jnp.float32 if jnp.finfo(x.dtype).bits < 32 else None


def _pad_images(x, pads):
    """``x [N, H, W, C]`` padded (negative pads crop) by ``[(lo, hi), (lo, hi)]``."""
    (a, b), (c, d) = pads
    return lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (a, b, 0), (c, d, 0), (0, 0, 0)])


def _subpixel_conv_transpose(x, kernel, strides, pads):
    """``lax.conv_transpose(x, kernel, strides, pads)`` (pads of the dilated input) as one
    stride-1 convolution to ``sh*sw*C_out`` channels, depth-to-space and a crop.

    Along one axis (stride ``s``, kernel ``k``, pads ``(pa, pb)``, input length ``n``):
    ``y[o] = sum_t K[t] x[(o + t - pa) / s]`` over taps where the index is an integer. For
    ``o = s*q + r`` the taps of phase ``r`` are ``t = s*m + base - r`` with ``base = pa mod
    s``, reading ``x[q + m - floor(pa / s)]``: a stride-1 correlation over ``m`` with
    ``M = (k + s - 2 - base) // s + 1`` taps, the same input window for every phase.
    """
    b, _, _, c_in = x.shape
    c_out = kernel.shape[-1]
    x_pads, k_pads, q_sizes, m_sizes, lengths = [], [], [], [], []
    for n, k, s, (pa, pb) in zip(x.shape[1:3], kernel.shape[:2], strides, pads):
        length = (n - 1) * s + 1 + pa + pb - k + 1
        if length <= 0:
            raise ValueError(f"ConvTranspose: pads {pads} leave no output for a length-{n} "
                             f"input and a length-{k} kernel.")
        base = pa % s
        c_min = -(pa // s)
        m = (k + s - 2 - base) // s + 1
        q = -(-length // s)
        off = base - s + 1              # kernel tap held by row 0 of the padded kernel
        k_pads.append((-off, m * s + off - k, 0))
        x_pads.append((-c_min, (q + m - 2 + c_min) - (n - 1), 0))
        q_sizes.append(q)
        m_sizes.append(m)
        lengths.append(length)
    (mh, mw), (sh, sw) = m_sizes, strides
    # kernel [kh, kw, I, O] -> [mh*sh, mw*sw, I, O] (tap s*m + s-1-r at row (m, s-1-r))
    kp = lax.pad(kernel, jnp.zeros((), kernel.dtype), [k_pads[0], k_pads[1], (0, 0, 0),
                                                        (0, 0, 0)])
    kp = kp.reshape(mh, sh, mw, sw, c_in, c_out)[:, ::-1, :, ::-1]
    kp = kp.transpose(0, 2, 4, 1, 3, 5).reshape(mh, mw, c_in, sh * sw * c_out)
    xp = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), x_pads[0], x_pads[1], (0, 0, 0)])
    y = _valid_conv(xp, kp)
    qh, qw = q_sizes
    y = y.reshape(b, qh, qw, sh, sw, c_out).transpose(0, 1, 3, 2, 4, 5)
    y = y.reshape(b, qh * sh, qw * sw, c_out)
    return y[:, :lengths[0], :lengths[1], :]


def _subpixel_window(kernel_size, strides, pads) -> int:
    """Kernel taps the single sub-pixel convolution multiplies per output pixel group
    (``M_h * M_w * s_h * s_w``, see :func:`_subpixel_conv_transpose`); at least twice the
    kernel's own taps (e.g. 36 for a 4x4 stride-2 ``SAME`` kernel's 16), the phases run as
    separate convolutions instead (:func:`_phase_conv_transpose`), which measured faster
    there (batch 256: 0.86 s against 1.23 s for the gradient of jvae's default decoder's
    16x16x128 -> 32x32x64 layer) and slower for the DPM2 decoder's ``VALID`` 5x5 and 6x6."""
    taps = 1
    for k, s, (pa, _) in zip(kernel_size, strides, pads):
        taps *= ((k + s - 2 - pa % s) // s + 1) * s
    return taps


def _phase_conv_transpose(x, kernel, strides, pads):
    """``lax.conv_transpose(x, kernel, strides, pads)`` as ``sh*sw`` stride-1 convolutions,
    one per sub-pixel phase, each with only that phase's kernel taps, interleaved.

    Along one axis (notation of :func:`_subpixel_conv_transpose`): output ``o = s*q + r``
    reads the taps ``t = t0 + s*m`` with ``t0 = (pa - r) mod s`` at inputs ``q + m + c``,
    ``c = (r + t0 - pa) / s``: a correlation with ``ceil((k - t0) / s)`` taps. Unlike the
    single sub-pixel convolution, whose window must cover every phase's taps (a 4x4 stride-2
    ``SAME`` kernel becomes 3x3 per phase, 36 taps for 16), no product multiplies a zero.
    """
    b, _, _, c_in = x.shape
    c_out = kernel.shape[-1]
    axes = []
    for n, k, s, (pa, pb) in zip(x.shape[1:3], kernel.shape[:2], strides, pads):
        length = (n - 1) * s + 1 + pa + pb - k + 1
        if length <= 0:
            raise ValueError(f"ConvTranspose: pads {pads} leave no output for a length-{n} "
                             f"input and a length-{k} kernel.")
        q_all = -(-length // s)
        phases = []
        for r in range(s):
            t0 = (pa - r) % s
            m = -(-(k - t0) // s)
            c = (r + t0 - pa) // s
            # inputs q' + m' + c for q' < q_all (padded phases are cropped), m' < m
            lo, hi = -c, (q_all - 1 + m - 1 + c) - (n - 1)
            phases.append((t0, m, (lo, hi)))
        axes.append((phases, q_all, length))
    (ph_h, qh, len_h), (ph_w, qw, len_w) = axes
    rows = []
    for t0h, mh, pad_h in ph_h:
        cols = []
        for t0w, mw, pad_w in ph_w:
            if mh <= 0 or mw <= 0:                          # a phase with no taps: zeros
                cols.append(jnp.zeros((b, qh, qw, c_out), _accumulation(x) or x.dtype))
                continue
            kp = kernel[t0h::strides[0], t0w::strides[1]][:mh, :mw]
            # lax.conv_transpose correlates the dilated input with the kernel as given
            xp = _pad_images(x, [pad_h, pad_w])
            cols.append(_valid_conv(xp, kp))
        rows.append(jnp.stack(cols, axis=3))                # [B, qh, qw, sw, O]
    y = jnp.stack(rows, axis=2)                             # [B, qh, sh, qw, sw, O]
    y = y.reshape(b, qh * strides[0], qw * strides[1], c_out)
    return y[:, :len_h, :len_w, :]


def _pixel_conv_transpose(x, kernel, pads):
    """A transposed convolution of a 1x1 input (a dense bottleneck viewed as a map, as in
    the DPM2 decoder) as one matrix product: ``y[o] = K[pa - o]``, the flipped kernel
    padded or cropped to the output size. The sub-pixel form would convolve mostly zeros."""
    kh, kw = kernel.shape[:2]
    (pa_h, pb_h), (pa_w, pb_w) = pads
    out_h, out_w = 1 + pa_h + pb_h - kh + 1, 1 + pa_w + pb_w - kw + 1
    if min(out_h, out_w) <= 0:
        raise ValueError(f"ConvTranspose: pads {pads} leave no output for a 1x1 input.")
    kf = kernel[::-1, ::-1]
    lo_h, lo_w = pa_h - kh + 1, pa_w - kw + 1
    kf = lax.pad(kf, jnp.zeros((), kf.dtype), [(lo_h, out_h - kh - lo_h, 0),
                                               (lo_w, out_w - kw - lo_w, 0), (0, 0, 0),
                                               (0, 0, 0)])
    if _accumulation(x) is None:
        return jnp.einsum("bi,hwio->bhwo", x[:, 0, 0, :], kf)
    oh, ow, c_in, c_out = kf.shape        # bfloat16: a product with a bfloat16 gradient too
    kmat = kf.transpose(2, 0, 1, 3).reshape(c_in, oh * ow * c_out)
    return matmul(x[:, 0, 0, :], kmat, x.dtype).reshape(x.shape[0], oh, ow, c_out)


def _space_to_depth_conv(x, kernel, strides, pads, out):
    """A stride-``s`` convolution as space-to-depth then a stride-1 convolution.

    Along one axis: ``y[q] = sum_t K[t] xp[s*q + t]``; with ``t = s*m + r`` this is
    ``sum_m sum_r K[s*m + r] xp[s*(q + m) + r]``, a stride-1 correlation over ``m`` (``M =
    ceil(k/s)`` taps) of the input reshaped to ``[n/s, s*C]``.
    """
    b, _, _, c_in = x.shape
    c_out = kernel.shape[-1]
    x_pads, k_pads, m_sizes, blocks = [], [], [], []
    for n, k, s, (lo, hi), q in zip(x.shape[1:3], kernel.shape[:2], strides, pads, out):
        m = -(-k // s)
        total = s * (q + m - 1)           # padded length read by the stride-1 conv
        x_pads.append((lo, total - n - lo, 0))
        k_pads.append((0, m * s - k, 0))
        m_sizes.append(m)
        blocks.append(q + m - 1)
    (mh, mw), (sh, sw), (bh, bw) = m_sizes, strides, blocks
    xp = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), x_pads[0], x_pads[1], (0, 0, 0)])
    xp = xp.reshape(b, bh, sh, bw, sw, c_in).transpose(0, 1, 3, 2, 4, 5)
    xp = xp.reshape(b, bh, bw, sh * sw * c_in)
    kp = lax.pad(kernel, jnp.zeros((), kernel.dtype), [k_pads[0], k_pads[1], (0, 0, 0),
                                                        (0, 0, 0)])
    kp = kp.reshape(mh, sh, mw, sw, c_in, c_out).transpose(0, 2, 1, 3, 4, 5)
    kp = kp.reshape(mh, mw, sh * sw * c_in, c_out)
    return _valid_conv(xp, kp)


def _conv_strategy(c_in: int, kh: int, kw: int, c_out: int) -> str:
    """How :func:`_stride1_conv` computes a stride-1 ``VALID`` convolution's forward pass
    (measured on a 2-core CPU at batch 256, ``experiments/bench_conv.py``): one matrix
    product to every tap's output, then shifted sums, when the product's output is small
    (``kh * kw * c_out <= 512``) and there are enough input channels for a product to run
    well (``c_in >= 16``); XLA's convolution otherwise. One product per tap, accumulated,
    and the all-taps product for larger outputs both measured slower than XLA's
    convolution inside the networks' gradients."""
    if c_in >= _FEW_IN_CHANNELS and kh * kw * c_out <= _ALL_TAPS_MAX:
        return "all_taps"
    return "xla"


def _stride1_conv(x, kernel):
    """``[B, H, W, I] * [kh, kw, I, O] -> [B, H-kh+1, W-kw+1, O]`` (correlation, ``VALID``),
    by the strategy :func:`_conv_strategy` picks."""
    b, h, w, c_in = x.shape
    kh, kw, _, c_out = kernel.shape
    if _conv_strategy(c_in, kh, kw, c_out) == "xla":
        return _lax_valid_conv(x, kernel)
    oh, ow = h - kh + 1, w - kw + 1
    # z[b, h, w, i, j] = x[b, h, w] @ K[i, j]; y[b, h, w] = sum_ij z[b, h + i, w + j, i, j]
    kmat = kernel.transpose(2, 0, 1, 3).reshape(c_in, kh * kw * c_out)
    z = jnp.dot(x.reshape(-1, c_in), kmat, preferred_element_type=_accumulation(x))
    z = z.reshape(b, h, w, kh, kw, c_out)
    y = None
    for i in range(kh):
        for j in range(kw):
            t = z[:, i:i + oh, j:j + ow, i, j, :]
            y = t if y is None else y + t
    return y


@jax.custom_vjp
def _valid_conv(x, kernel):
    """A stride-1 ``VALID`` convolution ``[B, H, W, I] * [kh, kw, I, O] -> [B, H-kh+1,
    W-kw+1, O]``: the forward pass by :func:`_stride1_conv`; the input gradient is XLA's
    stride-1 convolution (of the zero-padded output gradient with the flipped, transposed
    kernel), the kernel gradient one 2-D matrix product per tap (the shifted input window,
    ``[B*H'*W', I]``, by the output gradient, ``[B*H'*W', O]``). XLA's CPU backward-filter
    convolution, and even a ``tensordot`` over the three batch-like axes of the same
    operands, measured 3-6x slower than those 2-D products."""
    return _stride1_conv(x, kernel)


def _lax_valid_conv(x, kernel):
    return lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=_DN,
                                    preferred_element_type=_accumulation(x))


def _valid_conv_fwd(x, kernel):
    return _stride1_conv(x, kernel), (x, kernel)


def _valid_conv_bwd(res, dy):
    x, kernel = res
    kh, kw, c_in, c_out = kernel.shape
    oh, ow = dy.shape[1:3]
    dy = dy.astype(x.dtype)        # a bfloat16 forward pass: bfloat16 products here too
    dy_pad = lax.pad(dy, jnp.zeros((), dy.dtype),
                     [(0, 0, 0), (kh - 1, kh - 1, 0), (kw - 1, kw - 1, 0), (0, 0, 0)])
    dx = _lax_valid_conv(dy_pad, kernel[::-1, ::-1].transpose(0, 1, 3, 2))
    dy_mat = dy.reshape(-1, c_out)
    taps = [lax.dot_general(x[:, i:i + oh, j:j + ow, :].reshape(-1, c_in), dy_mat,
                            (((0,), (0,)), ((), ())), preferred_element_type=_accumulation(x))
            for i in range(kh) for j in range(kw)]
    dk = jnp.stack(taps).reshape(kernel.shape).astype(kernel.dtype)
    return dx.astype(x.dtype), dk


_valid_conv.defvjp(_valid_conv_fwd, _valid_conv_bwd)
