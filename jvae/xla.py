"""Workarounds for known XLA compiler bugs, applied when jvae is imported.

jaxlib 0.10's CPU compiler miscompiles a reduction fused by YNNPACK: a compiled
``jnp.sum(w * z, -1) + b`` with ``w`` broadcast over ``z``'s leading axes (e.g. ``z [100, 500,
2]``, ``w [500, 2]``, exactly the planar flow's forward pass at the evaluator's shapes) comes
back with whole slices of the output holding another slice's values, silently
(``tests/tools/xla_reduce_fusion_repro.py`` reproduces it with JAX alone). Removing the
``reduce`` type from XLA's YNN fusions (``--xla_cpu_experimental_ynn_fusion_type=-reduce``)
makes every output correct and keeps YNNPACK's matrix products; jaxlib 0.12 (Python 3.12 or
newer) does not have the bug.

XLA reads ``XLA_FLAGS`` once, when JAX starts its CPU backend (at the first computation, not
at ``import jax``). On an affected jaxlib, importing jvae adds the flag to ``XLA_FLAGS``
unless the backend has already started, the user has set
``--xla_cpu_experimental_ynn_fusion_type`` themselves, or ``JVAE_XLA_WORKAROUND=off``; if the
backend started first it warns (``XLAWorkaroundWarning``), since the flag can no longer take
effect in this process. Subprocesses inherit the flag through the environment.
:func:`xla_workarounds` says what was done.
"""

from __future__ import annotations

import os
import warnings
from typing import NamedTuple

__all__ = ["XLAWorkaround", "XLAWorkaroundWarning", "xla_workarounds", "YNN_REDUCE_FLAG",
           "WORKAROUND_ENV"]

#: The XLA flag that removes reductions from YNNPACK fusions (the miscompiled ones).
YNN_REDUCE_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-reduce"
#: Set to ``off`` (or ``0``) to leave ``XLA_FLAGS`` alone (e.g. to reproduce the bug).
WORKAROUND_ENV = "JVAE_XLA_WORKAROUND"
_FLAG_NAME = YNN_REDUCE_FLAG.split("=")[0]
#: jaxlib versions ``[low, high)`` whose CPU compiler has the YNN reduce-fusion bug.
_AFFECTED = ((0, 10, 0), (0, 11, 0))


class XLAWorkaroundWarning(RuntimeWarning):
    """jvae could not apply a compiler workaround that this jaxlib needs."""


class XLAWorkaround(NamedTuple):
    """What jvae did about jaxlib's YNN reduce-fusion bug in this process.

    Attributes:
      jaxlib_version: the installed jaxlib.
      needed: this jaxlib has the bug (0.10.x).
      state: ``"not needed"``, ``"applied"`` (jvae added :data:`YNN_REDUCE_FLAG` to
        ``XLA_FLAGS`` before the CPU backend started), ``"user flag"`` (``XLA_FLAGS`` already
        set the YNN fusion types: kept as given), ``"disabled"`` (``JVAE_XLA_WORKAROUND=off``)
        or ``"too late"`` (the CPU backend started before jvae was imported: programs of this
        process may be miscompiled).
      flag: the flag that avoids the bug.
    """

    jaxlib_version: str
    needed: bool
    state: str
    flag: str = YNN_REDUCE_FLAG


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts + [0] * (3 - len(parts)))


def _cpu_backend_started() -> bool:
    try:
        from jax._src import xla_bridge
        return bool(xla_bridge.backends_are_initialized())
    except Exception:          # a JAX without this (private) query: assume it has not started
        return False


def _decide(version: str, flags: str, switch: str, backend_started: bool) -> tuple[str, str]:
    """The workaround's state and the ``XLA_FLAGS`` to use, from the jaxlib version, the
    current ``XLA_FLAGS``, the value of ``JVAE_XLA_WORKAROUND`` and whether JAX's backend
    has started (a pure function: :func:`xla_workarounds` reports what it decided)."""
    low, high = _AFFECTED
    if not low <= _version(version) < high:
        return "not needed", flags
    if switch.strip().lower() in ("off", "0", "false", "no"):
        return "disabled", flags
    if _FLAG_NAME in flags:
        return "user flag", flags
    if backend_started:
        return "too late", flags
    return "applied", f"{flags} {YNN_REDUCE_FLAG}".strip()


def _apply() -> XLAWorkaround:
    from jaxlib import version as jaxlib_version

    version = jaxlib_version.__version__
    state, flags = _decide(version, os.environ.get("XLA_FLAGS", ""),
                          os.environ.get(WORKAROUND_ENV, ""), _cpu_backend_started())
    if state == "applied":
        os.environ["XLA_FLAGS"] = flags
    elif state == "too late":
        warnings.warn(
            f"JAX's CPU backend started before jvae was imported, so jvae could not set "
            f"{YNN_REDUCE_FLAG}, which jaxlib {version} needs to compile some reductions "
            "correctly; import jvae before running any JAX computation, set that flag in "
            "XLA_FLAGS, or use Python 3.12+ with jax 0.12.", XLAWorkaroundWarning, stacklevel=3)
    return XLAWorkaround(version, state != "not needed", state)


_STATUS = _apply()


def xla_workarounds() -> XLAWorkaround:
    """What jvae did at import about the XLA CPU bug of this jaxlib (see the module doc).

    Returns:
      An :class:`XLAWorkaround`; its ``state`` is ``"applied"`` or ``"not needed"`` when
      every program of this process compiles without the known bug.
    """
    return _STATUS
