"""Mixed precision: matrix products and convolutions in bfloat16, everything else in float32.

Every network of :mod:`jvae.models` takes a ``compute_dtype`` field, ``"float32"`` (the
default: the programs are exactly those of a model without the field) or ``"bfloat16"``.
With ``"bfloat16"``:

* parameters, their gradients and the optimiser's state stay float32 (checkpoints are those of
  a float32 run, and either restores into the other);
* the operands of every dense layer, convolution and MADE product are rounded to bfloat16 and
  the product is accumulated in float32 (``preferred_element_type=float32``): its output,
  the bias added to it and the activations after it are float32;
* the heads' outputs (logits, means, scales, mixture weights, flow parameters) are float32,
  so the likelihoods' log-probabilities, the KL terms, the importance weights' ``logsumexp``,
  the flows' log-determinants and the VampPrior's mixture are computed in float32 as before.

Rounding the operands loses precision (bfloat16 keeps 8 significant bits); on hardware with
bfloat16 products (GPUs, TPUs, CPUs with AVX-512 BF16) those products run faster.
:func:`with_compute_dtype` gives a copy of a whole model in another precision (the same
parameters apply to both).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["COMPUTE_DTYPES", "check_compute_dtype", "operand_dtype", "matmul", "MixedDense",
           "with_compute_dtype"]

#: The names ``compute_dtype`` (``config.model.compute_dtype``) takes.
COMPUTE_DTYPES = ("float32", "bfloat16")


def check_compute_dtype(name, what: str = "compute_dtype") -> str:
    """``name`` if it is one of :data:`COMPUTE_DTYPES`, else a one-line ``ValueError`` naming
    ``what`` and suggesting the closest name."""
    if isinstance(name, str) and name in COMPUTE_DTYPES:
        return name
    close = difflib.get_close_matches(str(name), COMPUTE_DTYPES, n=1, cutoff=0.4)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"Unknown {what} {name!r}{hint}; choose one of {list(COMPUTE_DTYPES)}.")


def operand_dtype(name: str):
    """The dtype products round their operands to: ``None`` for ``"float32"`` (operands are
    left as they are), ``jnp.bfloat16`` for ``"bfloat16"``."""
    return None if check_compute_dtype(name) == "float32" else jnp.bfloat16


def matmul(x: jax.Array, w: jax.Array, dtype=None) -> jax.Array:
    """``x @ w`` (``[..., K] @ [K, N] -> [..., N]``); with ``dtype`` (e.g. ``jnp.bfloat16``)
    both operands are rounded to it and the product is accumulated and returned in float32.
    ``dtype=None`` is exactly ``x @ w``.

    The gradient's two products take ``dtype`` operands too (the output's cotangent rounded
    to it; JAX's own rule would multiply it in float32 with the operand widened) and
    accumulate in float32: the gradients with respect to ``x`` and ``w`` have their dtypes."""
    if dtype is None:
        return x @ w
    return _low_matmul(x, w, jnp.dtype(dtype))


def _product(a, b, contract_a, contract_b):
    return lax.dot_general(a, b, ((contract_a, contract_b), ((), ())),
                           preferred_element_type=jnp.float32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _low_matmul(x, w, dtype):
    return _product(x.astype(dtype), w.astype(dtype), (x.ndim - 1,), (0,))


def _low_matmul_fwd(x, w, dtype):
    xc, wc = x.astype(dtype), w.astype(dtype)
    out = _product(xc, wc, (x.ndim - 1,), (0,))
    # zero-size markers carry the operands' dtypes (their cotangents must have them)
    return out, (xc, wc, jnp.zeros((0,), x.dtype), jnp.zeros((0,), w.dtype))


def _low_matmul_bwd(dtype, res, g):
    xc, wc, x_marker, w_marker = res
    gc = g.astype(dtype)
    dx = _product(gc, wc, (g.ndim - 1,), (1,))                        # [..., N] x [K, N]
    lead = tuple(range(xc.ndim - 1))
    dw = _product(xc, gc, lead, lead)                                  # [..., K] x [..., N]
    return dx.astype(x_marker.dtype), dw.astype(w_marker.dtype)


_low_matmul.defvjp(_low_matmul_fwd, _low_matmul_bwd)


class MixedDense(nn.Module):
    """``flax.linen.Dense`` with bfloat16 (or another ``dtype``) operands and float32
    accumulation: ``[..., F] -> [..., features]``, float32 output. Parameters ``kernel [F,
    features]`` and ``bias [features]`` are float32, named and initialised as Flax's, so a
    model's parameters are the same whatever its compute dtype."""

    features: int
    dtype: object = jnp.bfloat16
    kernel_init: nn.initializers.Initializer = nn.linear.default_kernel_init
    bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], int(self.features)),
                            jnp.float32)
        bias = self.param("bias", self.bias_init, (int(self.features),), jnp.float32)
        return matmul(x, kernel, self.dtype) + bias


def with_compute_dtype(module: nn.Module, name: str) -> nn.Module:
    """A copy of ``module`` (a :class:`~jvae.models.vae.VAE` or any part of one) with
    ``compute_dtype = name`` on it and on every module nested in its fields that has that
    field; parameters of the original apply to the copy unchanged.

    Raises a one-line ``ValueError`` for an unknown ``name``."""
    name = check_compute_dtype(name)
    changes = {}
    for f in dataclasses.fields(module):
        if f.name in ("parent", "name"):
            continue
        value = getattr(module, f.name, None)
        if isinstance(value, nn.Module):
            changes[f.name] = with_compute_dtype(value, name)
        elif f.name == "compute_dtype":
            changes[f.name] = name
    return module.clone(**changes) if changes else module
