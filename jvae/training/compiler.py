"""Compiler options of jvae's training programs (the scanned epoch and its chunks).

On the CPU, XLA's copy insertion copies a loop-carried array at the start of every
iteration when it cannot prove that the iteration's last read of the old value comes before
the write of the new one: in a training ``lax.scan`` that is every weight matrix read by two
products (forward and input gradient), e.g. the ``pytorch_example`` decoder's 400x784 output
kernel, copied at every step. XLA's region analysis
(``xla_cpu_copy_insertion_use_region_analysis``) proves it and drops those copies; the
computation is unchanged. It is passed per program (``jax.jit(...,
compiler_options=...)``), so other JAX programs in the process are not affected, and only
where the backend is the CPU and the installed jaxlib knows the option. ``JVAE_XLA_REGION_ANALYSIS=0`` in the environment leaves it out.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp

__all__ = ["REGION_ANALYSIS", "training_compiler_options", "training_jit"]

#: The XLA debug option (a ``DebugOptions`` field) that the CPU training programs set.
REGION_ANALYSIS = "xla_cpu_copy_insertion_use_region_analysis"
_ENV = "JVAE_XLA_REGION_ANALYSIS"


@functools.cache
def training_compiler_options() -> dict:
    """``{REGION_ANALYSIS: True}`` on a CPU backend whose jaxlib accepts it, else ``{}``
    (another backend, an older or newer jaxlib without the option, or
    ``JVAE_XLA_REGION_ANALYSIS=0``)."""
    if os.environ.get(_ENV, "1").strip().lower() in ("0", "off", "false", "no"):
        return {}
    try:
        if jax.default_backend() != "cpu":
            return {}
        options = {REGION_ANALYSIS: True}
        jax.jit(lambda x: x + 1, compiler_options=options).lower(jnp.zeros(())).compile()
    except Exception:                      # noqa: BLE001 (an unknown option: leave it out)
        return {}
    return options


def training_jit(fn, **kwargs):
    """``jax.jit(fn, **kwargs)`` with :func:`training_compiler_options`."""
    return jax.jit(fn, compiler_options=training_compiler_options() or None, **kwargs)
