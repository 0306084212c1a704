"""Minimal reproduction of an XLA CPU miscompilation in jaxlib 0.10.2 (JAX only, no jvae).

A compiled ``jnp.sum(w * z, -1) + b``, with ``w`` broadcast over ``z``'s leading axis, comes
back with whole slices of the output holding other slices' values at some shapes
(``[100, 500, 2]``: the last 35 of the 100 rows are wrong), while the same function run op by
op is right. The optimised HLO is one YNNPACK fusion (``__ynn_fusion``: multiply, reduce,
add); every output is right with ``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-reduce``
(or ``=``, no YNN fusion at all), and with jaxlib 0.12.1. The sum alone, or ``sum(z * z)``,
or a product with no broadcast operand, compiles correctly: the bug needs a broadcast operand
in the product and an elementwise operation after the reduction.

    python tests/tools/xla_reduce_fusion_repro.py             # exit status 1: outputs wrong
    XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-reduce \\
        python tests/tools/xla_reduce_fusion_repro.py         # exit status 0

Reported counts are of outputs whose compiled value differs from a float64 numpy reference by
more than ``1e-4 (1 + |ref|)`` (rounding differences are ~1e-6).
"""

import os
import sys

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

#: (z's shape [S, B, D]; w is [B, D], b is [B]). The first four are wrong on jaxlib 0.10.2.
SHAPES = ((5, 7000, 2), (100, 500, 2), (64, 1000, 2), (5, 7000, 20), (5, 6000, 2),
          (100, 50, 2))


def planar_pre_activation(w, z, b):
    """``w^T z + b`` per row: the planar flow's ``a = sum(w * z, -1) + b``."""
    return jnp.sum(w * z, -1) + b


def wrong_outputs(shape, seed: int = 0) -> tuple[int, int, bool]:
    """(wrong outputs, outputs, whether the compiled program holds a YNN fusion) at ``shape``."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=shape).astype(np.float32)
    w = rng.normal(size=shape[1:]).astype(np.float32)
    b = rng.normal(size=shape[1:-1]).astype(np.float32)
    reference = np.sum(w.astype(np.float64) * z, -1) + b
    compiled = jax.jit(planar_pre_activation).lower(w, z, b).compile()
    out = np.asarray(compiled(w, z, b), np.float64)
    wrong = int(np.sum(np.abs(out - reference) > 1e-4 * (1.0 + np.abs(reference))))
    return wrong, out.size, "__ynn_fusion" in compiled.as_text()


def main() -> int:
    """Prints one line per shape; returns the total number of wrong outputs."""
    print(f"jax {jax.__version__}, jaxlib {jaxlib.__version__}, "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    total = 0
    for shape in SHAPES:
        wrong, size, ynn = wrong_outputs(shape)
        total += wrong
        print(f"z {list(shape)}: {wrong} of {size} outputs wrong (YNN fusion: {ynn})")
    return total


if __name__ == "__main__":
    sys.exit(1 if main() else 0)
