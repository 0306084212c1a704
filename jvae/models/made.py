"""MADE: masked autoencoder for distribution estimation (Germain et al., 2015), for IAF layers.

A MADE maps ``x [..., D]`` to outputs ``[..., D]`` (here two of them, ``m`` and ``s``) such
that output ``i`` depends only on the inputs before ``i`` in an ordering of the coordinates,
by masking the weights of an MLP: each hidden unit gets a degree in ``1 .. D-1`` and sees the
inputs of degree at most its own; output ``i`` sees the hidden units of degree less than
``degree(i)``. A context ``h [..., F]`` (the encoder's features, Kingma et al., 2016) enters
the first hidden layer through an unmasked linear map, so it never breaks the ordering.

The :class:`MADE` module returns its masked arrays (:class:`MADEParams`, the context term
already computed); :func:`made_apply` is a pure function of them. That split lets an IAF layer
(:class:`jvae.models.flows.IAF`) evaluate the network outside ``Module.apply``, e.g. inside the
evaluator's ``lax.map``.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jvae.models.nets import dense
from jvae.models.precision import matmul, operand_dtype

__all__ = ["MADE", "MADEParams", "made_apply", "made_masks"]


class MADEParams(NamedTuple):
    """Masked arrays of a :class:`MADE`.

    Attributes:
      kernels: hidden kernels, already multiplied by their masks, ``[D, H_1]``, ``[H_1, H_2]``...
        (in the MADE's compute dtype: bfloat16 kernels make :func:`made_apply`'s products
        bfloat16 with float32 accumulation)
      biases: hidden biases ``[H_l]``.
      context: the context's contribution to the first hidden layer, ``[..., H_1]``.
      out_kernel: masked output kernel ``[H_L, 2 D]`` (``m`` then ``s``), in the compute dtype.
      out_bias: ``[2 D]``.
    """

    kernels: tuple
    biases: tuple
    context: jax.Array
    out_kernel: jax.Array
    out_bias: jax.Array


def made_masks(dim: int, hidden: Sequence[int], reverse: bool = False) -> list[np.ndarray]:
    """The binary masks of a MADE with inputs ordered ``1..D`` (or ``D..1`` if ``reverse``).

    Hidden degrees cycle through ``1 .. D-1`` (deterministic, so every degree is used when the
    width is at least ``D - 1``). Returns ``[M_1 [D, H_1], ..., M_L [H_{L-1}, H_L],
    M_out [H_L, D]]``; ``M_out`` is to be tiled for several outputs per coordinate.
    Output ``i`` then depends only on inputs of lower degree: the Jacobian of every output
    with respect to ``x`` is strictly triangular in the ordering.
    """
    dim = int(dim)
    degrees_in = np.arange(1, dim + 1)
    if reverse:
        degrees_in = degrees_in[::-1]
    masks, prev = [], degrees_in
    for width in hidden:
        deg = np.arange(int(width)) % max(dim - 1, 1) + 1
        masks.append((deg[None, :] >= prev[:, None]).astype(np.float32))
        prev = deg
    masks.append((degrees_in[None, :] > prev[:, None]).astype(np.float32))
    return masks


class MADE(nn.Module):
    """Builds the masked arrays of a MADE with ``2`` outputs per coordinate from a context.

    Attributes:
      latent_dim: D.
      hidden: hidden widths (each at least ``D - 1``, so every ordering is reachable).
      reverse: use the ordering ``D..1``.
      weight_init: initialisation of the kernels (:func:`jvae.models.nets.dense` schemes); the
        output kernel starts at zero (outputs start at their biases, ``m = s = 0``).
      compute_dtype: ``"float32"`` or ``"bfloat16"`` (:mod:`jvae.models.precision`): the
        products' operands; the parameters, the context and the outputs are float32.

    Call with the context ``h [..., F]``; returns :class:`MADEParams`.
    """

    latent_dim: int
    hidden: Sequence[int] = (100,)
    reverse: bool = False
    weight_init: str = "lecun"
    compute_dtype: str = "float32"

    @nn.compact
    def __call__(self, h: jax.Array) -> MADEParams:
        d, hidden = int(self.latent_dim), tuple(int(w) for w in self.hidden)
        if not hidden or min(hidden) < max(d - 1, 1):
            raise ValueError(f"The MADE's hidden widths (model.flow_hidden) must be at least "
                             f"latent_dim - 1 = {max(d - 1, 1)}, got {hidden}.")
        masks = made_masks(d, hidden, self.reverse)
        dtype = operand_dtype(self.compute_dtype)
        cast = (lambda a: a) if dtype is None else (lambda a: a.astype(dtype))
        kernels, biases, fan_in = [], [], d
        for i, (width, mask) in enumerate(zip(hidden, masks[:-1])):
            k = self.param(f"kernel_{i}", nn.initializers.lecun_normal(), (fan_in, width))
            kernels.append(cast(k * jnp.asarray(mask)))
            biases.append(self.param(f"bias_{i}", nn.initializers.zeros, (width,)))
            fan_in = width
        context = dense(hidden[0], h.shape[-1], self.weight_init, name="context",
                        compute_dtype=self.compute_dtype)(h)
        out_mask = jnp.asarray(np.concatenate([masks[-1], masks[-1]], axis=1))
        out_kernel = cast(self.param("out_kernel", nn.initializers.zeros, (fan_in, 2 * d))
                          * out_mask)
        out_bias = self.param("out_bias", nn.initializers.zeros, (2 * d,))
        return MADEParams(tuple(kernels), tuple(biases), context, out_kernel, out_bias)


def made_apply(params: MADEParams, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(m, s)``, each ``[..., D]``, of a MADE at ``x [..., D]``; the context ``[B, H_1]``
    broadcasts against ``x``'s leading axes (``[S, B, D]`` works). Products take the kernels'
    dtype (float32 accumulation for bfloat16 kernels); the outputs are float32."""
    hid = x
    for i, (k, b) in enumerate(zip(params.kernels, params.biases)):
        hid = matmul(hid, k, _low(k)) + b
        if i == 0:
            hid = hid + params.context
        hid = jax.nn.elu(hid)
    out = matmul(hid, params.out_kernel, _low(params.out_kernel)) + params.out_bias
    d = x.shape[-1]
    return out[..., :d], out[..., d:]


def _low(kernel: jax.Array):
    """``kernel``'s dtype if it is narrower than float32 (products then accumulate in
    float32), else ``None`` (a plain ``@``)."""
    return kernel.dtype if jnp.finfo(kernel.dtype).bits < 32 else None
